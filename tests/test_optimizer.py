import keras
import numpy as np
import pytest

import keras_lopt
from keras_lopt import LearnedOptimizer

from conftest import classification_data, small_classifier, xla_train_step

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit(optimizer, steps, jit_compile=True, seed=0):
    x, y = classification_data(n=32 * steps)
    model = small_classifier(seed)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    return model, history.history["loss"][-1]


def test_adam_equivalent_preset_matches_adam_for_100_fit_steps():
    learned, _ = _fit(LearnedOptimizer(preset="adam_equivalent_v1"), steps=100)
    adam, _ = _fit(keras.optimizers.Adam(learning_rate=1e-3), steps=100)
    assert int(learned.optimizer.iterations.numpy()) == 100
    initial = small_classifier(0).get_weights()
    for got, want, start in zip(learned.get_weights(), adam.get_weights(), initial):
        assert np.max(np.abs(want - start)) > 1e-3  # training moved the weights
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_fit_under_xla_matches_fit_without(random_preset):
    xla_model, xla_loss = _fit(LearnedOptimizer(preset=random_preset), steps=20, jit_compile=True)
    assert xla_model.jit_compile is True
    plain_model, plain_loss = _fit(LearnedOptimizer(preset=random_preset), steps=20, jit_compile=False)
    assert np.isfinite(xla_loss)
    for a, b in zip(xla_model.get_weights(), plain_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_custom_loop_compiles_with_xla_and_does_not_retrace(random_preset):
    model = small_classifier()
    optimizer = LearnedOptimizer(preset=random_preset)
    x, y = classification_data(n=64)

    train_step = xla_train_step(model, optimizer, LOSS)

    optimizer.build(model.trainable_variables)
    losses = [float(train_step(x, y)) for _ in range(30)]
    assert train_step.experimental_get_tracing_count() == 1
    assert losses[-1] < losses[0]
    hlo = train_step.experimental_get_compiler_ir(x, y)(stage="hlo")
    assert "exponential" in hlo  # the learned rule's exp(...) is in the XLA program
    assert int(optimizer.iterations.numpy()) == 30


def test_default_optimizer_converges_on_a_tiny_problem():
    x, y = classification_data(n=256)
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(), loss=LOSS, jit_compile=True)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=40, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.5 * before


def test_default_gives_the_same_result_with_or_without_a_horizon():
    # The default's controller has no weight on progress or horizon_known
    # (adaptive_slow_v2 had, and lost with a horizon): total_steps and
    # TrainingHorizon() change nothing. v2 shows the check can tell.
    def weights(**kwargs):
        model, _ = _fit(LearnedOptimizer(**kwargs), steps=30)
        return [np.asarray(w) for w in model.get_weights()]

    without = weights()
    for a, b in zip(without, weights(total_steps=30)):
        np.testing.assert_array_equal(a, b)
    v2 = weights(preset="adaptive_slow_v2"), weights(preset="adaptive_slow_v2", total_steps=30)
    assert any(not np.array_equal(a, b) for a, b in zip(*v2))


def test_keras_file_round_trip_continues_identically(tmp_path, random_preset):
    x, y = classification_data(n=96)
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(preset=random_preset, total_steps=50), loss=LOSS, jit_compile=True)
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.optimizer, LearnedOptimizer)
    assert restored.optimizer.preset == random_preset
    assert restored.optimizer.total_steps == 50
    assert int(restored.optimizer.iterations.numpy()) == 2
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(x[64:], y[64:], batch_size=32, epochs=1, shuffle=False, verbose=0)
    restored.fit(x[64:], y[64:], batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_config_round_trip():
    optimizer = LearnedOptimizer(total_steps=1000, weight_decay=0.01, clipnorm=1.0)
    config = optimizer.get_config()
    assert config["preset"] == keras_lopt.presets.DEFAULT_PRESET == "adaptive_slow_v3"
    assert config["learning_rate"] == pytest.approx(3e-3)  # the preset's own
    clone = LearnedOptimizer.from_config(config)
    assert clone.get_config() == config
    serialized = keras.optimizers.serialize(optimizer)
    assert isinstance(keras.optimizers.deserialize(serialized), LearnedOptimizer)


def test_learning_rate_is_the_first_argument_as_in_keras_optimizers():
    variable = keras.Variable(np.ones(3, "float32"))
    learned = LearnedOptimizer(1e-2, "adam_equivalent_v1")  # like Adam(1e-2)
    assert learned.preset == "adam_equivalent_v1"
    learned.apply_gradients([(np.ones(3, "float32"), variable)])
    adam_variable = keras.Variable(np.ones(3, "float32"))
    keras.optimizers.Adam(1e-2).apply_gradients([(np.ones(3, "float32"), adam_variable)])
    np.testing.assert_allclose(variable.numpy(), adam_variable.numpy(), rtol=1e-6)
    default = LearnedOptimizer(1e-3)
    assert default.preset == keras_lopt.presets.DEFAULT_PRESET
    assert float(default.learning_rate.numpy()) == pytest.approx(1e-3)
    with pytest.raises(
        ValueError,
        match=r"Received: learning_rate='mlp_es_v4'. To choose a preset, pass it by keyword: "
        r"LearnedOptimizer\(preset='mlp_es_v4'\)",
    ):
        LearnedOptimizer("mlp_es_v4")


@pytest.mark.parametrize("identifier", ["learned_optimizer", "LearnedOptimizer", "keras_lopt>LearnedOptimizer"])
def test_keras_finds_the_optimizer_by_the_names_users_type(identifier, tmp_path):
    optimizer = keras.optimizers.get(identifier)
    assert isinstance(optimizer, LearnedOptimizer)
    assert optimizer.preset == keras_lopt.presets.DEFAULT_PRESET
    model = small_classifier()
    model.compile(optimizer=identifier, loss=LOSS)
    model.fit(*classification_data(n=32), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1
    # Saved configs keep the registered name, which loads anywhere.
    assert keras.optimizers.serialize(model.optimizer)["registered_name"] == "keras_lopt>LearnedOptimizer"


def test_docstring_is_in_keras_form_and_its_example_runs():
    import doctest

    doc = LearnedOptimizer.__doc__
    for section in ("Args:", "Example:", "References:", "docs/optimizer.md"):
        assert section in doc, section
    for reference in ("arxiv.org/abs/2009.11243", "arxiv.org/abs/2211.09760", "arxiv.org/abs/2112.13835"):
        assert reference in doc, reference
    (test,) = [
        t
        for t in doctest.DocTestFinder().find(LearnedOptimizer, "LearnedOptimizer", globs={})
        if t.name == "LearnedOptimizer"
    ]
    assert len(test.examples) >= 4
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
    assert result.failed == 0, result


def test_public_api(random_preset):
    assert "adam_equivalent_v1" in keras_lopt.list_presets()
    assert keras_lopt.load_learned_optimizer(random_preset).preset == random_preset
    assert keras_lopt.load_learned_optimizer("adam_equivalent_v1", learning_rate=3e-4).get_config()[
        "learning_rate"
    ] == pytest.approx(3e-4)
    assert isinstance(keras_lopt.__version__, str)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"preset": "no_such_preset"}, "'no_such_preset' is neither a shipped preset"),
        ({"preset": 3}, "Received: 3"),
        ({"total_steps": -3}, r"`total_steps` must be a positive integer or None. Received: total_steps=-3"),
        ({"total_steps": 2.5}, "Received: total_steps=2.5"),
        ({"learning_rate": -1.0}, r"`learning_rate` must be positive. Received: learning_rate=-1.0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearnedOptimizer(**kwargs)


def test_import_does_not_pull_in_meta_dependencies():
    import subprocess
    import sys

    # keras itself may import matplotlib; only what keras_lopt adds counts.
    code = (
        "import sys, keras, tensorflow; before = set(sys.modules); "
        "import keras_lopt; added = set(sys.modules) - before; "
        "bad = [m for m in ('tensorflow_datasets', 'matplotlib', 'keras_lopt.meta') "
        "if m in added]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
