import numpy as np
import tensorflow as tf

from keras_lopt import features, rule

from reference import feature_matrix


def test_feature_names_match_the_code_that_builds_them():
    g = tf.constant([[0.5, -1.0], [2.0, 0.0]])
    state = rule.init_state(g)
    element = features.element_features(g, g, state.momenta, state.second_moment + 1.0, tf.constant(1.0))
    tensor = features.tensor_features(tf.constant(1.0), tf.constant(0.0), 4)
    assert len(element) == len(features.ELEMENT_FEATURE_NAMES)
    assert len(tensor) == len(features.TENSOR_FEATURE_NAMES)
    assert features.NUM_FEATURES == len(element) + len(tensor)
    assert len(set(features.FEATURE_NAMES)) == features.NUM_FEATURES
    assert all(t.shape.rank == 0 for t in tensor)
    assert all(e.shape == g.shape for e in element)


def test_features_match_numpy_reference():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 5)).astype("float32")
    p = rng.normal(size=(3, 5)).astype("float32")
    momenta = [rng.normal(size=(3, 5)).astype("float32") for _ in features.MOMENTUM_DECAYS]
    v = rng.uniform(0.1, 2.0, size=(3, 5)).astype("float32")
    t, total = 7.0, 50.0
    columns = features.element_features(
        tf.constant(g),
        tf.constant(p),
        tuple(tf.constant(m) for m in momenta),
        tf.constant(v),
        tf.constant(t),
    ) + features.tensor_features(tf.constant(t), tf.constant(total), g.size)
    got = np.stack([np.broadcast_to(c.numpy(), g.shape).ravel() for c in columns], axis=1)
    want = feature_matrix(g, p, momenta, v, t, total)
    # float32 1 - decay**t loses ~1e-5 relative to cancellation, as in Adam.
    np.testing.assert_allclose(got, want, rtol=3e-5, atol=1e-7)
    progress = features.FEATURE_NAMES.index("progress")
    assert got[0, progress] == np.float32(t / total)


def test_horizon_free_encoding_when_total_steps_unknown():
    values = features.tensor_features(tf.constant(20000.0), tf.constant(0.0), 10)
    named = dict(zip(features.TENSOR_FEATURE_NAMES, [float(v) for v in values]))
    assert named["progress"] == 0.0
    assert named["horizon_known"] == 0.0
    assert named["step_tanh_10000"] > 0.9
    assert named["log10_tensor_size"] == 1.0
    clipped = features.tensor_features(tf.constant(300.0), tf.constant(100.0), 10)
    assert float(clipped[features.TENSOR_FEATURE_NAMES.index("progress")]) == 1.0
