"""Feature sets: the "local" inputs (no whole-tensor statistics) end to end."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lopt
from keras_lopt import adam_equivalent, features, rule, savedmodel
from keras_lopt.layers import BoundNetwork, MLPNetwork
from keras_lopt.meta import config as config_lib
from keras_lopt.meta import trainer as trainer_lib

from conftest import classification_data, small_classifier, unroll_and_optimizer_losses

LOCAL = features.FEATURE_SETS["local"]
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _state(rng, shape):
    momenta = tuple(tf.constant(rng.normal(size=shape), tf.float32) for _ in features.MOMENTUM_DECAYS)
    second = tf.constant(rng.uniform(0.1, 2.0, size=shape), tf.float32)
    return rule.RuleState(momenta=momenta, second_moment=second)


def _random_network(names, seed=7):
    network = MLPNetwork(num_features=len(names), magnitude_scale=0.5, max_log_multiplier=2.0, name="net")
    rng = np.random.default_rng(seed)
    network.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in network.weights])
    return network


def test_feature_sets_are_ordered_subsets_and_configs_accept_them():
    for name in features.FEATURE_SETS:
        assert config_lib.NetworkConfig(feature_set=name).feature_set == name
    assert features.FEATURE_SETS["full"] == features.FEATURE_NAMES
    positions = [features.FEATURE_NAMES.index(n) for n in LOCAL]
    assert positions == sorted(positions)
    assert set(features.TENSOR_FEATURE_NAMES) <= set(LOCAL)
    assert not {"gradient_tensor_normalized", "parameter_tensor_normalized", "rms_tensor_normalized"} & set(LOCAL)
    for name, names in features.FEATURE_SETS.items():
        assert features.feature_set_of(list(names)) == name
    with pytest.raises(ValueError, match=r"feature_set='tiny'"):
        features.feature_names("tiny")
    with pytest.raises(ValueError, match=r"Received: \['gradient_normalized'\]"):
        features.feature_set_of(["gradient_normalized"])
    with pytest.raises(ValueError, match=r"Unknown element feature\(s\) \['gradient_sign'\]"):
        features.element_features(*([tf.ones([2])] * 2), (tf.ones([2]),) * 2, tf.ones([2]), 1.0, ["gradient_sign"])


def test_element_features_by_name_equal_the_full_set_columns():
    rng = np.random.default_rng(0)
    g, p = (tf.constant(rng.normal(size=(5, 3)), tf.float32) for _ in range(2))
    state = _state(rng, (5, 3))
    args = (g, p, state.momenta, state.second_moment, tf.constant(7.0))
    full = features.element_features(*args)
    assert len(full) == len(features.ELEMENT_FEATURE_NAMES)
    reversed_names = list(reversed(features.ELEMENT_FEATURE_NAMES))
    for name, column in zip(reversed_names, features.element_features(*args, reversed_names)):
        np.testing.assert_array_equal(column.numpy(), full[features.ELEMENT_FEATURE_NAMES.index(name)].numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
def test_local_rule_equals_full_rule_with_zero_rows(jit_compile):
    """A local network computes what a full one computes when its first-layer
    rows for the left-out features are zero (with the same other weights)."""
    local = _random_network(LOCAL)
    full = MLPNetwork(num_features=features.NUM_FEATURES, magnitude_scale=0.5, max_log_multiplier=2.0)
    weights = [w.numpy() for w in local.weights]
    kernel = np.zeros((features.NUM_FEATURES, weights[0].shape[1]), np.float32)
    kernel[[features.FEATURE_NAMES.index(n) for n in LOCAL]] = weights[0]
    full.set_weights([kernel, *weights[1:]])
    rng = np.random.default_rng(1)
    g, p = (tf.constant(rng.normal(size=(4, 6)), tf.float32) for _ in range(2))
    state = _state(rng, (4, 6))

    @tf.function(jit_compile=jit_compile)
    def both(g, p):
        out = []
        for network, names in ((local, LOCAL), (full, features.FEATURE_NAMES)):
            bound = BoundNetwork(network, [tf.convert_to_tensor(w) for w in network.weights])
            out.append(rule.step(bound, state, g, p, 12, 100, 1e-2, feature_names=names)[0])
        return out

    got, want = both(g, p)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-9)
    assert np.max(np.abs(got.numpy())) > 1e-4
    with pytest.raises(ValueError, match="feature sets"):
        rule.step(BoundNetwork(local, local.weights), state, g, p, 1, 0, 1e-2, feature_names=LOCAL[:-1])


def test_local_preset_round_trip_serving_function_and_metadata(local_preset):
    loaded = savedmodel.load(local_preset)
    assert loaded.feature_names == LOCAL and loaded.feature_set == "local"
    with open(os.path.join(local_preset, savedmodel.METADATA_FILE)) as f:
        assert json.load(f)["feature_names"] == list(LOCAL)
    x = np.random.default_rng(0).normal(size=(6, len(LOCAL))).astype("float32")
    served = tf.saved_model.load(local_preset).signatures["serving_default"](tf.constant(x))
    direction, magnitude = loaded.network(x)
    np.testing.assert_allclose(served["direction"].numpy(), direction.numpy(), rtol=1e-6)
    np.testing.assert_allclose(served["magnitude"].numpy(), magnitude.numpy(), rtol=1e-6)


def test_export_refuses_a_network_of_another_width():
    with pytest.raises(ValueError, match=r"takes 13 features but the feature set 'local' has 10"):
        savedmodel.export(
            _random_network(features.FEATURE_NAMES),
            "/tmp/unused",
            savedmodel.PresetInfo(name="x", learning_rate=1e-3, provenance={}, feature_set="local"),
        )
    with pytest.raises(ValueError, match=r"feature_set='wide'"):
        savedmodel.PresetInfo(name="x", learning_rate=1e-3, provenance={}, feature_set="wide")


def test_adam_equivalent_local_network_matches_adam(tmp_path):
    network = adam_equivalent.build_network(feature_set="local")
    path = tmp_path / "adam_local"
    savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(name="adam_local", learning_rate=1e-3, provenance={}, feature_set="local"),
    )
    x, y = classification_data(n=32 * 30)
    models = []
    for optimizer in (keras_lopt.LearnedOptimizer(preset=str(path)), keras.optimizers.Adam(1e-3)):
        model = small_classifier(0)
        model.compile(optimizer=optimizer, loss=LOSS, jit_compile=True)
        model.fit(x, y, batch_size=32, shuffle=False, verbose=0)
        models.append(model)
    for got, want, start in zip(models[0].get_weights(), models[1].get_weights(), small_classifier(0).get_weights()):
        assert np.max(np.abs(want - start)) > 1e-3
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"takes 10 features. Expected 13"):
        adam_equivalent.adam_equivalent_weights(network, features.FEATURE_NAMES)


def _reductions(preset):
    model = small_classifier(0)
    optimizer = keras_lopt.LearnedOptimizer(preset=preset)
    optimizer.build(model.trainable_variables)
    grads = [tf.ones_like(v) for v in model.trainable_variables]

    @tf.function(jit_compile=True)
    def apply(grads):
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    hlo = apply.experimental_get_compiler_ir(grads)(stage="optimized_hlo")
    return sum(line.count(" reduce(") for line in hlo.splitlines()), len(model.trainable_variables)


def test_local_step_makes_no_whole_tensor_pass_but_the_finiteness_check(local_preset, random_preset):
    """Only the full set's per-tensor statistics add reductions over a variable."""
    local, variables = _reductions(local_preset)
    full, _ = _reductions(random_preset)
    assert local == variables  # one finiteness check per variable
    assert full >= local + 3 * variables


def test_local_unroll_matches_the_optimizer(local_preset):
    got, expected = unroll_and_optimizer_losses(local_preset, steps=12)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_meta_training_starts_a_local_network_from_a_full_preset(tmp_path, random_preset, random_network):
    config = config_lib.MetaTrainConfig(
        network=config_lib.NetworkConfig(magnitude_scale=0.1, feature_set="local"),
        init_preset=random_preset,
    )
    trainer = trainer_lib.MetaTrainer(config, str(tmp_path))
    assert trainer.layer.num_features == len(LOCAL)
    from keras_lopt.meta import unroll

    kernel, *rest = unroll.unflatten_weights(trainer.theta, trainer.shapes)
    full = [w.numpy() for w in random_network.weights]
    np.testing.assert_array_equal(kernel, full[0][[features.FEATURE_NAMES.index(n) for n in LOCAL]])
    for got, want in zip(rest, full[1:]):
        np.testing.assert_array_equal(got, want)


def test_meta_training_refuses_a_preset_without_the_run_features(tmp_path, local_preset):
    config = config_lib.MetaTrainConfig(
        network=config_lib.NetworkConfig(magnitude_scale=0.5, max_log_multiplier=2.0),
        init_preset=local_preset,
    )
    with pytest.raises(ValueError, match=r"cannot start a network with the feature set 'full'"):
        trainer_lib.MetaTrainer(config, str(tmp_path))
    with pytest.raises(ValueError, match=r"feature_set='none'"):
        config_lib.NetworkConfig(feature_set="none")
