"""LearnedOptimizer(guard=...): fall back to Adam where the learned step misbehaves."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import AdamGuard, LearnedOptimizer, adam_equivalent, savedmodel

from conftest import classification_data, small_classifier, xla_train_step

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
STEPS = 30


def _scaled_adam_preset(tmp_path, log_multiplier):
    """Adam's direction times exp(log_multiplier): out of any sane range."""
    network = adam_equivalent.build_network()
    weights = network.get_weights()
    weights[-1][1] = log_multiplier / network.magnitude_scale  # magnitude bias
    network.set_weights(weights)
    path = tmp_path / f"scaled_{log_multiplier:g}".replace("-", "m").replace(".", "p")
    savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(
            name="scaled_adam_v1",
            learning_rate=1e-3,
            provenance={"method": "Adam weights with a magnitude bias, for tests"},
        ),
    )
    return str(path)


def _fit(optimizer, steps=STEPS, seed=0, jit_compile=True):
    x, y = classification_data(n=32 * steps)
    model = small_classifier(seed)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    return model, history.history["loss"][-1]


@pytest.fixture(scope="module")
def adam_run():
    model, loss = _fit(keras.optimizers.Adam(1e-3))
    return model.get_weights(), loss


@pytest.mark.parametrize(
    "log_multiplier, guard",
    [
        # Steps ~3000x Adam's: without the guard the classifier blows up.
        (8.0, "adam"),
        # exp(100) overflows: every learned update is inf or NaN, so without
        # the guard every step is skipped and the weights never move.
        (100.0, "adam"),
        # Steps ~1/3000 of Adam's: only a guard with a lower bound catches it.
        pytest.param(-8.0, AdamGuard(min_ratio=0.01), marks=pytest.mark.slow),
    ],
)
def test_guard_rescues_an_out_of_distribution_rule(tmp_path, adam_run, log_multiplier, guard):
    preset = _scaled_adam_preset(tmp_path, log_multiplier)
    adam_weights, adam_loss = adam_run
    guarded, guarded_loss = _fit(LearnedOptimizer(preset=preset, guard=guard))
    # Every variable fell back on every step: it trained exactly like Adam.
    variables = len(guarded.trainable_variables)
    assert guarded.optimizer.guard_fallbacks == STEPS * variables
    assert guarded.optimizer.skipped_updates == 0
    for got, want in zip(guarded.get_weights(), adam_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert guarded_loss == pytest.approx(adam_loss, rel=1e-4)

    unguarded, unguarded_loss = _fit(LearnedOptimizer(preset=preset))
    initial = small_classifier(0).get_weights()
    if log_multiplier > 50:
        assert unguarded.optimizer.skipped_updates == STEPS * variables
        for got, start in zip(unguarded.get_weights(), initial):
            np.testing.assert_array_equal(got, start)
    elif log_multiplier > 0:
        assert not math.isfinite(unguarded_loss) or unguarded_loss > 10 * adam_loss
    else:  # it barely moves
        for got, want, start in zip(unguarded.get_weights(), adam_weights, initial):
            assert np.max(np.abs(got - start)) < 0.01 * np.max(np.abs(want - start))
    assert unguarded.optimizer.guard_fallbacks == 0


@pytest.mark.parametrize("preset", ["mlp_pes_v2", pytest.param("random", marks=pytest.mark.slow)])
def test_guard_changes_nothing_when_the_learned_step_is_healthy(random_preset, preset):
    """Bit-identical under XLA: the guard reads the step taken, never `update`.

    (Without XLA, TensorFlow's graph optimizer may round the learned step
    differently by one ulp once the guard's ops are in the graph.)
    """
    preset = random_preset if preset == "random" else preset
    plain, _ = _fit(LearnedOptimizer(preset=preset))
    guarded, _ = _fit(LearnedOptimizer(preset=preset, guard=AdamGuard(max_ratio=1e4)))
    assert guarded.optimizer.guard_fallbacks == 0
    for a, b in zip(plain.get_weights(), guarded.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(plain.optimizer.variables, guarded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_guard_decides_per_variable_and_compiles_once():
    """Variables whose step is out of range take Adam's; the others keep theirs."""
    x, y = classification_data(n=64)
    initial = small_classifier().get_weights()

    def one_step(optimizer):
        model = small_classifier()
        train_step = xla_train_step(model, optimizer, LOSS)
        optimizer.build(model.trainable_variables)
        train_step(x, y)
        return model, train_step

    learned = [w.numpy() for w in one_step(LearnedOptimizer(preset="mlp_pes_v2"))[0].weights]
    adam = [w.numpy() for w in one_step(keras.optimizers.Adam(1e-3))[0].weights]
    ratios = [np.linalg.norm(l - w0) / np.linalg.norm(a - w0) for l, a, w0 in zip(learned, adam, initial)]
    # A bound between two of the ratios, far from both (no rounding ties).
    low, high = sorted(ratios)[1:3]
    assert high > 1.2 * low, ratios
    bound = math.sqrt(low * high)

    optimizer = LearnedOptimizer(preset="mlp_pes_v2", guard=AdamGuard(max_ratio=bound))
    model, train_step = one_step(optimizer)
    expected_fallbacks = 0
    for got, l, a, ratio in zip(model.weights, learned, adam, ratios):
        if ratio > bound:
            expected_fallbacks += 1
            np.testing.assert_allclose(got.numpy(), a, rtol=1e-6, atol=1e-8)
        else:
            np.testing.assert_array_equal(got.numpy(), l)
    assert optimizer.guard_fallbacks == expected_fallbacks == 2
    for _ in range(3):
        train_step(x, y)
    assert train_step.experimental_get_tracing_count() == 1
    assert optimizer.guard_fallbacks >= expected_fallbacks


def test_guard_round_trips_through_config_keras_files_and_checkpoints(tmp_path, random_preset):
    guard = AdamGuard(max_ratio=50.0, min_ratio=0.1, learning_rate=3e-4)
    optimizer = LearnedOptimizer(preset=random_preset, guard=guard)
    config = optimizer.get_config()
    assert config["guard"] == {
        "name": "adam",
        "max_ratio": 50.0,
        "min_ratio": 0.1,
        "learning_rate": 3e-4,
    }
    clone = LearnedOptimizer.from_config(config)
    assert clone.guard == guard and clone.get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.guard == guard
    assert LearnedOptimizer(preset=random_preset).get_config()["guard"] is None
    assert LearnedOptimizer(guard="adam").guard == AdamGuard()

    # A guard that always falls back, so that the counter is non-zero.
    always = AdamGuard(max_ratio=1e-6)
    model, _ = _fit(LearnedOptimizer(preset=random_preset, guard=always), steps=2, jit_compile=False)
    assert model.optimizer.guard_fallbacks == 2 * len(model.trainable_variables)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.optimizer.guard == model.optimizer.guard
    assert loaded.optimizer.guard_fallbacks == model.optimizer.guard_fallbacks

    checkpoint = tf.train.Checkpoint(optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
    fresh = LearnedOptimizer(preset=random_preset, guard=always)
    fresh.build(small_classifier().trainable_variables)
    tf.train.Checkpoint(optimizer=fresh).restore(checkpoint).assert_consumed()
    assert fresh.guard_fallbacks == model.optimizer.guard_fallbacks

    # An unguarded checkpoint restores into a guarded optimizer (the counter
    # is created last, so every other variable keeps its place).
    plain, _ = _fit(LearnedOptimizer(preset=random_preset), steps=3, jit_compile=False)
    unguarded = tf.train.Checkpoint(optimizer=plain.optimizer).save(str(tmp_path / "plain"))
    tf.train.Checkpoint(optimizer=fresh).restore(unguarded).expect_partial()
    assert len(fresh.variables) == len(plain.optimizer.variables) + 1
    for a, b in zip(plain.optimizer.variables, fresh.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert fresh.guard_fallbacks == model.optimizer.guard_fallbacks


@pytest.mark.parametrize(
    "guard, message",
    [
        ("sgd", r"`guard` must be None, 'adam', .*Received: guard='sgd'"),
        (3, r"Received: guard=3"),
        ({"name": "sgd"}, r"Unknown guard 'sgd'"),
        ({"max_ratio": 10.0, "patience": 3}, r"Unknown key\(s\) in the guard config: \['patience'\]"),
        ({"max_ratio": -1.0}, r"Received: max_ratio=-1.0"),
    ],
)
def test_bad_guard_arguments(guard, message):
    with pytest.raises(ValueError, match=message):
        LearnedOptimizer(guard=guard)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_ratio": -1.0}, r"`max_ratio` must be a positive finite number. Received: max_ratio=-1.0"),
        ({"max_ratio": float("inf")}, r"Received: max_ratio=inf"),
        ({"max_ratio": True}, r"Received: max_ratio=True"),
        ({"min_ratio": -0.5}, r"`min_ratio` must be a non-negative finite number. Received: min_ratio=-0.5"),
        (
            {"min_ratio": 5.0, "max_ratio": 2.0},
            r"`min_ratio` must not exceed `max_ratio`. Received: min_ratio=5.0, max_ratio=2.0",
        ),
        ({"learning_rate": 0.0}, r"`learning_rate` must be a positive finite number. Received: learning_rate=0.0"),
        ({"learning_rate": "1e-3"}, r"Received: learning_rate='1e-3'"),
    ],
)
def test_bad_adam_guard_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdamGuard(**kwargs)
