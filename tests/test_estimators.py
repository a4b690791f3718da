"""ES estimates agree with autodiff gradients on a quadratic task family.

Ground truth: the gradient of the meta-objective with respect to the
meta-weights, by autodiff through the (non-XLA) unroll, averaged over many
trajectory seeds. The network has random weights (smooth almost everywhere),
so for small sigma the gradient of the smoothed objective is close to it.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import features
from keras_lopt.layers import MLPNetwork
from keras_lopt.meta import estimators, tasks, unroll
from keras_lopt.meta.config import EstimatorConfig
from keras_lopt.meta.estimators import horizons

K, TRUNCATIONS, PAIRS, LR = 5, 4, 256, 0.05
HORIZON = K * TRUNCATIONS
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def setup():
    layer = MLPNetwork(features.NUM_FEATURES, magnitude_scale=0.5)
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in layer.weights])
    theta = unroll.flatten_weights(layer.get_weights())
    task = tasks.quadratic_task(dim=8, noise=0.1)
    return layer, theta, task


def _true_gradient(layer, theta, task, num_steps, truncations):
    run = unroll.Unroll(task, layer, num_steps, "mean", LR, jit_compile=False)
    seeds = np.arange(256) + 10_000
    thetas = tf.Variable(np.tile(theta, (len(seeds), 1)))
    state = unroll.fresh_state(task, seeds, np.full(len(seeds), num_steps * truncations))
    with tf.GradientTape() as tape:
        total = 0.0
        for _ in range(truncations):
            state, meta, _ = run(thetas, state)
            total += tf.reduce_mean(meta)
    return tape.gradient(total, thetas).numpy().sum(axis=0)


def _cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _estimate(layer, theta, task, kind, num_steps, truncations, seed):
    config = EstimatorConfig(
        kind=kind,
        num_pairs=PAIRS,
        sigma=0.01,
        truncation_length=num_steps,
        min_horizon=num_steps * truncations,
        max_horizon=num_steps * truncations,
    )
    estimator = estimators.make_estimator(task, unroll.Unroll(task, layer, num_steps, "mean", LR), config)
    rng = np.random.default_rng(seed)
    total = 0.0
    for j in range(truncations):
        z = estimators.perturbations(seed, j, PAIRS, theta.size)
        grad, _, _ = estimator.estimate(theta, z, rng)
        total = total + grad
    return total


def test_full_unroll_es_points_along_the_true_gradient(setup):
    layer, theta, task = setup
    truth = _true_gradient(layer, theta, task, HORIZON, 1)
    cosines = [_cosine(_estimate(layer, theta, task, "es", HORIZON, 1, s), truth) for s in SEEDS]
    assert np.mean(cosines) > 0.7, cosines


def test_pes_is_unbiased_where_truncated_es_is_not(setup):
    layer, theta, task = setup
    truth = _true_gradient(layer, theta, task, K, TRUNCATIONS)
    pes = [_cosine(_estimate(layer, theta, task, "pes", K, TRUNCATIONS, s), truth) for s in SEEDS]
    tes = [_cosine(_estimate(layer, theta, task, "truncated_es", K, TRUNCATIONS, s), truth) for s in SEEDS]
    # Measured: PES ~0.86, truncated ES ~0.67 (it misses theta's effect on
    # the state each truncation starts from).
    assert np.mean(pes) > 0.75, pes
    assert np.mean(tes) < np.mean(pes) - 0.1, (tes, pes)


def test_estimator_config_validation():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        EstimatorConfig(kind="adam")
    with pytest.raises(ValueError, match="Received: num_pairs=0"):
        EstimatorConfig(num_pairs=0)
    with pytest.raises(ValueError, match="Received: sigma=-1"):
        EstimatorConfig(sigma=-1)
    with pytest.raises(ValueError, match="`min_horizon` must not exceed"):
        EstimatorConfig(min_horizon=10, max_horizon=5)


@pytest.mark.parametrize("normalize", [False, True])
def test_antithetic_difference_weights_and_their_normalisation(normalize):
    """The estimate is mean_p d_p z_p, with d_p = (L+_p - L-_p) / (2 sigma),
    divided by the RMS of d over the pairs when `normalize_differences`."""
    sigma, pairs, dim = 0.1, 3, 5
    scores = np.array([1.0, 2.0, 4.0, 0.5, 2.5, 1.0], np.float32)  # L+ then L-

    class FakeUnroll:
        """Scores the members `scores`, whatever their meta-weights."""

        layer = None
        max_steps = 1

        def __call__(self, thetas, state, num_steps=None):
            assert thetas.shape == (2 * pairs, dim) and num_steps == 1
            return state, tf.constant(scores), tf.zeros([2 * pairs, 1])

    config = EstimatorConfig(
        kind="es", num_pairs=pairs, sigma=sigma, truncation_length=1, normalize_differences=normalize
    )
    estimator = estimators.make_estimator(tasks.quadratic_task(dim=4), FakeUnroll(), config)
    z = np.random.default_rng(0).normal(size=(pairs, dim)).astype(np.float32)
    grad, meta, _ = estimator.estimate(np.zeros(dim, np.float32), z, np.random.default_rng(1))
    d = (scores[:pairs] - scores[pairs:]) / (2 * sigma)  # [5, -2.5, 15]
    if normalize:
        d = d / np.sqrt(np.mean(d * d))
    np.testing.assert_allclose(grad, np.mean(d[:, None] * z, axis=0), rtol=1e-5)
    assert meta == pytest.approx(scores.mean())


def test_normalize_differences_must_be_a_bool():
    with pytest.raises(ValueError, match="`normalize_differences` must be a bool. Received: normalize_differences=1"):
        EstimatorConfig(normalize_differences=1)


@pytest.mark.parametrize("kind, cls", [("es", "FullES"), ("truncated_es", "TruncatedES"), ("pes", "PES")])
def test_the_registry_builds_the_estimator_a_config_names(kind, cls):
    task = tasks.quadratic_task(dim=4)
    layer = MLPNetwork(features.NUM_FEATURES)
    estimator = estimators.make_estimator(
        task, unroll.Unroll(task, layer, 5, "mean", LR), EstimatorConfig(kind=kind, truncation_length=5)
    )
    assert type(estimator) is getattr(estimators, cls) and estimator.kind == kind
    assert estimator.finished


def test_truncated_horizons_are_log_uniform_whole_truncations():
    config = EstimatorConfig(kind="pes", truncation_length=20, min_horizon=100, max_horizon=1000)
    rng = np.random.default_rng(0)
    drawn = np.array([horizons.truncated_horizon(config, rng) for _ in range(2000)])
    assert np.all(drawn % 20 == 0) and drawn.min() == 100 and drawn.max() == 1000
    # Log-uniform: as many horizons below the geometric mean as above it.
    assert abs(np.mean(drawn < np.sqrt(100 * 1000)) - 0.5) < 0.05
    short = EstimatorConfig(kind="pes", truncation_length=20, min_horizon=1, max_horizon=5)
    assert horizons.truncated_horizon(short, rng) == 20
    es = EstimatorConfig(kind="es", truncation_length=7, es_horizons=(3, 9))
    assert {horizons.full_unroll_horizon(es, rng) for _ in range(50)} == {3, 9}
    assert horizons.full_unroll_horizon(EstimatorConfig(kind="es", truncation_length=7), rng) == 7
    assert horizons.longest_unroll(es) == 9
