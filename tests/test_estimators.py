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
    run = unroll.build_unroll(task, layer, num_steps, "mean", LR, jit_compile=False)
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
    config = estimators.EstimatorConfig(
        kind=kind, num_pairs=PAIRS, sigma=0.01, truncation_length=num_steps,
        min_horizon=num_steps * truncations, max_horizon=num_steps * truncations,
    )
    worker = estimators.TaskWorker(
        task, unroll.build_unroll(task, layer, num_steps, "mean", LR), config
    )
    rng = np.random.default_rng(seed)
    total = 0.0
    for j in range(truncations):
        z = estimators.perturbations(seed, j, PAIRS, theta.size)
        grad, _, _ = worker.estimate(theta, z, rng)
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
        estimators.EstimatorConfig(kind="adam")
    with pytest.raises(ValueError, match="Received: num_pairs=0"):
        estimators.EstimatorConfig(num_pairs=0)
    with pytest.raises(ValueError, match="Received: sigma=-1"):
        estimators.EstimatorConfig(sigma=-1)
    with pytest.raises(ValueError, match="`min_horizon` must not exceed"):
        estimators.EstimatorConfig(min_horizon=10, max_horizon=5)
