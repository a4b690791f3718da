"""Meta-training task augmentation: pooled initialisations and reparametrisation."""

import keras
import numpy as np
import pytest

from keras_lopt import presets
from keras_lopt.meta import tasks, unroll
from keras_lopt.meta.config import MetaTrainConfig


def test_shuffled_like_init_keeps_values_orthogonality_and_vectors():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    q = q.astype("float32")
    shuffled = tasks.shuffled_like_init(q, np.random.default_rng(1))
    np.testing.assert_allclose(shuffled @ shuffled.T, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(np.sort(np.abs(shuffled).ravel()), np.sort(np.abs(q).ravel()))
    assert not np.allclose(shuffled, q)
    bias = np.array([0.0, 1.0, 1.0, 0.0], "float32")
    np.testing.assert_array_equal(tasks.shuffled_like_init(bias, np.random.default_rng(1)), bias)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    out = tasks.shuffled_like_init(kernel, np.random.default_rng(2))
    assert out.shape == kernel.shape
    np.testing.assert_allclose(np.sort(np.abs(out).ravel()), np.sort(np.abs(kernel).ravel()))


def test_pooled_init_builds_the_model_pool_size_times(monkeypatch):
    builds = []

    def build():
        builds.append(1)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(2)])

    x = np.zeros((8, 4), "float32")
    y = np.zeros((8,), "int32")
    task = tasks.keras_task("pool_test", build, "classification", (x, y), (x, y), 4, (0.5, 2.0))
    builds.clear()
    inits = [task.initial_params(seed, pool_size=2) for seed in range(10)]
    assert len(builds) == 2
    again = task.initial_params(3, pool_size=2)
    for a, b in zip(inits[3], again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(inits[1][0], inits[3][0])  # same pool entry, other shuffle
    assert [w.shape for w in inits[0]] == [(4, 5), (5,), (5, 2), (2,)]
    # Without a pool size every initialisation builds the model.
    builds.clear()
    task.initial_params(4)
    assert len(builds) == 1


def test_parameter_scales_are_log_uniform_and_seeded():
    seeds = np.arange(2000)
    scales = unroll.parameter_scales(seeds, (0.1, 10.0))
    assert scales.min() >= 0.1 and scales.max() <= 10.0
    assert abs(np.mean(np.log10(scales))) < 0.05
    np.testing.assert_array_equal(scales, unroll.parameter_scales(seeds, (0.1, 10.0)))
    np.testing.assert_array_equal(unroll.parameter_scales(seeds[:5], (1.0, 1.0)), np.ones(5, "float32"))


def test_reparametrisation_scales_the_step_adam_needs():
    """Adam with rate lr on `phi = c * theta` is Adam with rate lr / c on theta."""
    loaded = presets.load_preset("adam_equivalent_v1")
    task = tasks.quadratic_task(dim=8, noise=0.0, seed=3)
    seed = 12
    (scale,) = unroll.parameter_scales([seed], (0.1, 10.0))
    kwargs = dict(loss_visible_fraction=1.0, feature_names=loaded.feature_names)
    scaled = unroll.Unroll(task, loaded.network, 30, "mean", 1e-2, parameter_scale_range=(0.1, 10.0), **kwargs)
    plain = unroll.Unroll(task, loaded.network, 30, "mean", 1e-2 / float(scale), **kwargs)
    theta = unroll.flatten_weights(loaded.weights)[None]
    fresh = lambda: unroll.fresh_state(task, [seed], [30], [1.0], network=loaded.network)  # noqa: E731
    _, _, scaled_losses = scaled(theta, fresh())
    _, _, plain_losses = plain(theta, fresh())
    assert abs(np.log(scale)) > 0.5
    np.testing.assert_allclose(scaled_losses.numpy(), plain_losses.numpy(), rtol=1e-4)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"parameter_scale_range": [1.0]},
            "`parameter_scale_range` must be `(low, high)`. Received: parameter_scale_range=[1.0]",
        ),
        (
            {"parameter_scale_range": [2.0, 1.0]},
            "`parameter_scale_range` must have low <= high. Received: parameter_scale_range=[2.0, 1.0]",
        ),
        (
            {"parameter_scale_range": [0.0, 1.0]},
            "`parameter_scale_range[i]` must be a positive number. Received: parameter_scale_range[i]=0.0",
        ),
        ({"init_pool_size": 0}, "`init_pool_size` must be a positive integer. Received: init_pool_size=0"),
        ({"eval_members": 0}, "`eval_members` must be a positive integer. Received: eval_members=0"),
        (
            {"network": {"architecture": "mlp", "controller_hidden_size": 4}},
            "`controller_hidden_size` applies to architecture='adaptive_mlp' or 'adaptive_loss_mlp' only. Received: architecture='mlp', controller_hidden_size=4",
        ),
    ],
)
def test_config_refuses_bad_augmentation(values, message):
    with pytest.raises(ValueError) as info:
        MetaTrainConfig.from_dict(values)
    assert str(info.value) == message


def test_old_checkpoint_configs_keep_their_meaning():
    """Configs written before these fields existed read them as off."""
    config = MetaTrainConfig.from_dict({})
    assert config.parameter_scale_range == (1.0, 1.0)
    assert config.init_pool_size is None
    assert config.eval_members == 1
    saved = config.to_dict()
    for key in ("parameter_scale_range", "init_pool_size", "eval_members"):
        saved.pop(key)
    assert config.run_differences(saved) == []
