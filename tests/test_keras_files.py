"""Optimizer state in Keras files (`.weights.h5`, `.keras`) and preset paths.

Real models, real files: the state restores exactly or is skipped whole,
with a warning that says why.
"""

import importlib.util
import os
import pathlib
import shutil
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import LearnedOptimizer, presets

from conftest import classification_data, small_classifier

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _issue_model(optimizer):
    """The model of the report: `Sequential([Input((4,)), Dense(3)])`."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _regression_data(n=64):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype("float32")
    return x, x[:, :3] * 2.0 + 1.0


def _skips(record):
    return [str(w.message) for w in record if "Skipping the saved state" in str(w.message)]


def _assert_same_state(a, b):
    assert len(a.variables) == len(b.variables)
    for x, y in zip(a.variables, b.variables):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_load_weights_into_a_freshly_compiled_model_restores_everything(tmp_path, suffix):
    x, y = _regression_data()
    model = _issue_model(LearnedOptimizer())
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    path = str(tmp_path / f"a{suffix}")
    model.save_weights(path) if suffix == ".weights.h5" else model.save(path)

    fresh = _issue_model(LearnedOptimizer())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fresh.load_weights(path)
    assert not _skips(record)
    assert not fresh.optimizer.built  # restored when the first step builds it
    model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    fresh.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    assert int(fresh.optimizer.iterations.numpy()) == 12
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    _assert_same_state(model.optimizer, fresh.optimizer)


def test_explicit_build_restores_at_once_and_a_traced_first_step_continues_exactly(tmp_path):
    x, y = classification_data(n=96)
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(total_steps=40), loss=LOSS)
    model.fit(x, y, batch_size=32, shuffle=False, verbose=0)
    path = str(tmp_path / "b.weights.h5")
    model.save_weights(path)

    built_at_once = small_classifier(seed=1)
    built_at_once.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    built_at_once.load_weights(path)
    built_at_once.optimizer.build(built_at_once.trainable_variables)
    _assert_same_state(model.optimizer, built_at_once.optimizer)
    assert built_at_once.optimizer.total_steps == 40

    # A custom loop whose first `apply_gradients` (and so `build`) runs inside
    # a traced function: the state is assigned once, not at every call.
    def loop(m):
        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = LOSS(yb, m(xb))
            grads = tape.gradient(loss, m.trainable_variables)
            m.optimizer.apply_gradients(zip(grads, m.trainable_variables))

        for i in range(3):
            step(x[32 * i : 32 * (i + 1)], y[32 * i : 32 * (i + 1)])

    traced = small_classifier(seed=2)
    traced.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    traced.load_weights(path)
    loop(model)
    loop(traced)
    assert int(traced.optimizer.iterations.numpy()) == 6
    for a, b in zip(model.get_weights(), traced.get_weights()):
        np.testing.assert_array_equal(a, b)
    _assert_same_state(model.optimizer, traced.optimizer)


def test_state_of_another_optimizer_is_skipped_with_a_warning(tmp_path):
    x, y = _regression_data()
    adam = _issue_model(keras.optimizers.Adam())
    adam.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "adam.weights.h5")
    adam.save_weights(path)

    model = _issue_model(LearnedOptimizer())
    with pytest.warns(
        UserWarning, match=r"no LearnedOptimizer state identity: it is the state of another optimizer \(such as Adam\)"
    ):
        model.load_weights(path)
    for a, b in zip(adam.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the model's weights are loaded
    model.optimizer.build(model.trainable_variables)
    assert int(model.optimizer.iterations.numpy()) == 0
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 4


@pytest.mark.parametrize("built", [False, True])
def test_state_of_another_preset_is_skipped_whole(tmp_path, random_preset, built):
    x, y = classification_data(n=64)
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(preset=random_preset), loss=LOSS)
    model.fit(x, y, batch_size=32, verbose=0)
    path = str(tmp_path / "other.weights.h5")
    model.save_weights(path)

    fresh = small_classifier(seed=1)
    fresh.compile(optimizer=LearnedOptimizer(preset="adam_equivalent_v1"), loss=LOSS)
    if built:
        fresh.optimizer.build(fresh.trainable_variables)
    before = [np.asarray(v).copy() for v in fresh.optimizer.variables]
    with pytest.warns(
        UserWarning, match=r"written with preset 'random_v1' .* this optimizer uses preset 'adam_equivalent_v1'"
    ):
        fresh.load_weights(path)
    fresh.optimizer.build(fresh.trainable_variables)
    assert int(fresh.optimizer.iterations.numpy()) == 0
    for value, variable in zip(before, fresh.optimizer.variables):
        np.testing.assert_array_equal(value, np.asarray(variable))
    network = fresh.optimizer.network.weights
    expected = presets.load_preset("adam_equivalent_v1").weights
    for got, want in zip(network, expected):
        np.testing.assert_array_equal(got.numpy(), want)  # not the file's network


def test_state_that_does_not_fit_the_built_variables_is_skipped_whole(tmp_path):
    x, y = classification_data(n=64)
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    model.fit(x, y, batch_size=32, verbose=0)
    path = str(tmp_path / "c.weights.h5")
    model.save_weights(path)

    fresh = small_classifier()
    fresh.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    fresh.load_weights(path)  # restored only when built, on these variables:
    with pytest.warns(UserWarning, match=r"the file holds \d+ optimizer variables, this optimizer has \d+"):
        fresh.optimizer.build(fresh.trainable_variables[:2])
    assert int(fresh.optimizer.iterations.numpy()) == 0


def test_guard_settings_must_match_and_say_so(tmp_path):
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    model.fit(*classification_data(n=32), verbose=0)
    path = str(tmp_path / "d.weights.h5")
    model.save_weights(path)
    guarded = small_classifier()
    guarded.compile(optimizer=LearnedOptimizer(guard="adam"), loss=LOSS)
    guarded.optimizer.build(guarded.trainable_variables)
    with pytest.warns(UserWarning, match="`guard` settings"):
        guarded.load_weights(path)
    assert int(guarded.optimizer.iterations.numpy()) == 0


def test_a_custom_preset_is_stored_as_an_absolute_path(tmp_path, monkeypatch, random_preset):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(random_preset, "my_presets/p")
    optimizer = LearnedOptimizer(preset="my_presets/p")
    assert optimizer.get_config()["preset"] == str(tmp_path / "my_presets" / "p")
    model = small_classifier()
    model.compile(optimizer=optimizer, loss=LOSS)
    model.fit(*classification_data(n=32), verbose=0)
    model.save("m.keras")
    os.mkdir("elsewhere")
    monkeypatch.chdir("elsewhere")
    restored = keras.models.load_model("../m.keras")
    _assert_same_state(model.optimizer, restored.optimizer)


def test_a_moved_preset_fails_clearly_and_the_documented_recipe_restores(tmp_path, monkeypatch, random_preset):
    x, y = classification_data(n=96)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(random_preset, "old_place")
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(preset="old_place"), loss=LOSS)
    model.fit(x[:64], y[:64], batch_size=32, shuffle=False, verbose=0)
    model.save("m.keras")
    shutil.move("old_place", "new_place")
    old = str(tmp_path / "old_place")
    with pytest.raises(
        ValueError, match=f"uses the preset directory '{old}', which does not exist here.*compile=False"
    ):
        keras.models.load_model("m.keras")

    # docs/optimizer.md, "A moved preset":
    restored = keras.models.load_model("m.keras", compile=False)
    restored.compile(optimizer=LearnedOptimizer(preset="new_place"), loss=LOSS)
    restored.load_weights("m.keras")
    model.fit(x[64:], y[64:], batch_size=32, shuffle=False, verbose=0)
    restored.fit(x[64:], y[64:], batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    _assert_same_state(model.optimizer, restored.optimizer)


def test_a_shipped_name_wins_over_a_local_directory_with_a_warning(tmp_path, monkeypatch, random_preset):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(random_preset, "mlp_es_v4")
    with pytest.warns(
        UserWarning, match=r"'mlp_es_v4' is the name of a shipped preset and of a directory.*'./mlp_es_v4'"
    ):
        shipped = LearnedOptimizer(preset="mlp_es_v4")
    assert shipped.preset == "mlp_es_v4" and shipped.network.name == "mlp_es_v4"
    for spelled in ("./mlp_es_v4", pathlib.Path("mlp_es_v4")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            local = LearnedOptimizer(preset=spelled)
        assert local.network.name == "random_v1"
        assert local.preset == str(tmp_path / "mlp_es_v4")


STATE_FORMAT_1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "state_format_1")


def test_keras_file_of_state_format_1_resumes_as_the_code_that_wrote_it():
    """`tests/data/state_format_1/model.keras` was written by a keras_lopt
    that kept the per-tensor state one variable per model variable (state
    format 1; `tests/data/record_state_format_1.py`). Loaded now, its
    optimizer state is converted, not skipped: one more step gives the
    weights and state that code computed (`expected.npz`)."""
    spec = importlib.util.spec_from_file_location(
        "record_state_format_1", os.path.join(os.path.dirname(STATE_FORMAT_1), "record_state_format_1.py")
    )
    record = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(record)
    expected = np.load(os.path.join(STATE_FORMAT_1, "expected.npz"))
    assert int(expected["state_format"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # No "Skipping the saved state".
        model = keras.models.load_model(os.path.join(STATE_FORMAT_1, "model.keras"))
    optimizer = model.optimizer
    assert int(optimizer.iterations.numpy()) == 3
    x, y = record.data()
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for i, weight in enumerate(model.weights):
        np.testing.assert_allclose(np.asarray(weight), expected[f"weight_{i}"], rtol=1e-6, atol=1e-7)
    old = {str(name): expected[f"optimizer_{i}"] for i, name in enumerate(expected["names"])}
    by_name = {v.name: np.asarray(v) for v in optimizer.variables}
    for kind in ("loss_statistics", "step_control"):
        rows = [value for name, value in old.items() if name.endswith(f"_{kind}")]
        assert len(rows) == 4
        np.testing.assert_allclose(by_name[f"tensor_{kind}"], np.stack(rows), rtol=1e-6, atol=1e-7)
    for name, value in old.items():
        if name in by_name:
            np.testing.assert_allclose(by_name[name], value, rtol=1e-6, atol=1e-7)
