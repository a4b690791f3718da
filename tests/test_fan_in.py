"""A preset's step scaled by each kernel's fan-in (`keras_lopt.fan_in`)."""

import json
import os

import keras
import numpy as np
import pytest

import keras_lopt
from keras_lopt import fan_in, savedmodel
from keras_lopt.meta import families, unroll
from keras_lopt.meta.config import MetaTrainConfig

from conftest import export_random_preset


def test_fan_in_of_keras_layouts():
    assert fan_in.fan_in((784, 1024)) == 784
    assert fan_in.fan_in((3, 3, 16, 32)) == 144
    assert fan_in.fan_in((16, 4 * 16)) == 16
    assert fan_in.fan_in((32,)) == 1
    assert fan_in.fan_in(()) == 1
    assert fan_in.fan_in((256, 16), "embedding/embeddings") == 1


def test_step_scale_shrinks_only_kernels_wider_than_the_base():
    assert fan_in.step_scale(784, 128.0) == 128.0 / 784
    assert fan_in.step_scale(64, 128.0) == 1.0
    assert fan_in.step_scale(784, None) == 1.0


def _export(network, path, fan_in_base):
    return export_random_preset(network, path, fan_in_base=fan_in_base)


def test_metadata_holds_the_base_in_format_version_3(tmp_path, random_network):
    loaded = _export(random_network, tmp_path / "scaled", 2.0)
    assert loaded.fan_in_base == 2.0
    assert loaded.metadata["format_version"] == 3
    assert _export(random_network, tmp_path / "plain", None).metadata["format_version"] == 1


@pytest.mark.parametrize("value", [0.0, -4.0, "wide"])
def test_a_bad_base_in_metadata_is_named(tmp_path, random_network, value):
    path = tmp_path / "scaled"
    _export(random_network, path, 2.0)
    meta_path = os.path.join(path, "metadata.json")
    with open(meta_path) as f:
        metadata = json.load(f)
    metadata["output"]["fan_in_base"] = value
    with open(meta_path, "w") as f:
        json.dump(metadata, f)
    with pytest.raises(ValueError, match=rf"`output.fan_in_base`.*Received: {value!r}"):
        savedmodel.load(path)


def test_bad_base_arguments():
    with pytest.raises(ValueError, match=r"`fan_in_base`.*Received: fan_in_base=0"):
        savedmodel.PresetInfo(name="x_v1", learning_rate=1e-3, provenance={}, fan_in_base=0)
    with pytest.raises(ValueError, match=r"`fan_in_base`.*Received: fan_in_base=-1"):
        MetaTrainConfig(fan_in_base=-1)


def _one_step_changes(preset, model, x, y):
    model.compile(optimizer=keras_lopt.LearnedOptimizer(preset=preset), loss="mse")
    before = [np.array(w) for w in model.get_weights()]
    model.train_on_batch(x, y)
    return [np.array(w) - b for w, b in zip(model.get_weights(), before)]


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((2,), dtype="int32")
    h = keras.layers.Embedding(10, 8)(inputs)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def test_optimizer_scales_kernels_but_not_biases_or_embeddings(tmp_path, random_network):
    """The learned update is linear in the learning rate: with base 4 the
    Dense kernel (fan-in 16) moves exactly a quarter as far."""
    scaled = str(tmp_path / "scaled")
    plain = str(tmp_path / "plain")
    _export(random_network, scaled, 4.0)
    _export(random_network, plain, None)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 10, (16, 2)), rng.normal(size=(16, 3)).astype("float32")
    got = _one_step_changes(scaled, _model(), x, y)
    want = _one_step_changes(plain, _model(), x, y)
    embedding, kernel, bias = range(3)
    assert np.abs(want[kernel]).min() > 0
    # Differences of float32 weights near 0.3: rounding of 3e-8 each.
    np.testing.assert_allclose(got[kernel], want[kernel] / 4, rtol=1e-5, atol=6e-8)
    np.testing.assert_array_equal(got[bias], want[bias])
    np.testing.assert_array_equal(got[embedding], want[embedding])


def test_unroll_scales_the_same_kernels(random_network):
    """One meta-training inner step with and without a base: each kernel of
    a Keras task moves by its `step_scale` times the unscaled step."""
    task = families.get_family("mlp_digits").task(0)
    assert task.fan_ins == (64, 1, 32, 1)

    def first_step(base):
        run = unroll.Unroll(task, random_network, 1, "mean", 1e-3, fan_in_base=base)
        state = unroll.fresh_state(task, [5], [10], [1.0], network=random_network)
        start = [np.array(p[0]) for p in state.params]
        new_state, _, _ = run(unroll.flatten_weights(random_network.get_weights())[None], state)
        return [np.array(p[0]) - s for p, s in zip(new_state.params, start)]

    got, want = first_step(16.0), first_step(None)
    for change, reference, scale in zip(got, want, (0.25, 1.0, 0.5, 1.0)):
        np.testing.assert_allclose(change, scale * reference, rtol=1e-4, atol=1e-9)
