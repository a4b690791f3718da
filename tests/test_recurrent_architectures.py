"""The LSTM architectures (FFN+LSTM, hyper-LSTM): math, format, optimizer, meta."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lopt
from keras_lopt import features, presets, rule, savedmodel
from keras_lopt.layers import ARCHITECTURES, BoundNetwork, FFNLSTMNetwork, HyperLSTMNetwork
from keras_lopt.meta import config as config_lib
from keras_lopt.meta import unroll
from keras_lopt.meta.config import MetaTrainConfig, NetworkConfig
from keras_lopt.meta.trainer import MetaTrainer

import recurrent_reference
from conftest import classification_data, small_classifier, unroll_and_optimizer_losses

ARCHITECTURE_CLASSES = [FFNLSTMNetwork, HyperLSTMNetwork]
REFERENCE_FORWARD = {
    FFNLSTMNetwork: recurrent_reference.ffn_lstm,
    HyperLSTMNetwork: recurrent_reference.hyper_lstm,
}
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _random_network(cls, seed=0, scale=0.5):
    network = cls(features.NUM_FEATURES, features.NUM_CONTEXT_FEATURES, name=f"random_{cls.kind}")
    rng = np.random.default_rng(seed)
    network.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in network.weights])
    return network


def _export(network, path, name="random_recurrent_v1"):
    return savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(name=name, learning_rate=1e-3, provenance={"method": "random for tests"}),
    )


# Keras-integration tests run both recurrent architectures through the same
# optimizer code (per-tensor recurrent state): ffn_lstm in the default run,
# hyper_lstm with the slow tests.
@pytest.fixture(
    params=[
        pytest.param(cls, marks=[pytest.mark.slow] if cls.kind == "hyper_lstm" else [], id=cls.kind)
        for cls in ARCHITECTURE_CLASSES
    ]
)
def recurrent_preset(request, tmp_path):
    network = _random_network(request.param, seed=11, scale=0.3)
    return _export(network, tmp_path / request.param.kind).path


# The same presets, both architectures in the default run (cheap tests).
@pytest.fixture(params=ARCHITECTURE_CLASSES, ids=lambda cls: cls.kind)
def any_recurrent_preset(request, tmp_path):
    network = _random_network(request.param, seed=11, scale=0.3)
    return _export(network, tmp_path / request.param.kind).path


# -- the networks -------------------------------------------------------------


@pytest.mark.parametrize("cls", ARCHITECTURE_CLASSES)
def test_shapes_and_state(cls):
    network = cls(features.NUM_FEATURES, features.NUM_CONTEXT_FEATURES, lstm_hidden_size=3)
    x = np.random.default_rng(0).normal(size=(7, features.NUM_FEATURES)).astype("float32")
    context = np.ones(features.NUM_CONTEXT_FEATURES, "float32")
    direction, magnitude, (hidden, cell) = network(x, context, np.zeros(3), np.zeros(3))
    assert direction.shape == magnitude.shape == (7,)
    assert hidden.shape == cell.shape == (3,)
    assert network.state_names == ("lstm_hidden", "lstm_cell")
    assert network.state_shapes == ((3,), (3,))
    assert rule.state_slot_names(network) == (*rule.state_slot_names(), "loss_statistics", "lstm_hidden", "lstm_cell")
    assert rule.tensor_state_shapes(network) == ((features.LOSS_STATISTICS_SIZE,), (3,), (3,))
    # A few floats per tensor, whatever the tensor's size.
    state = rule.init_state(tf.zeros((50, 40)), network)
    assert [tuple(s.shape) for s in state.tensor_state] == [(3,), (3,), (3,)]
    assert len(set(network.weight_names())) == len(network.weights)


def test_context_feature_names_match_the_code_that_builds_them():
    g = tf.constant([[0.5, -1.0], [2.0, 0.0]])
    state = rule.init_state(g)
    element = features.element_features(g, g, state.momenta, state.second_moment + 1.0, tf.constant(1.0))
    summary = features.summary_features(element)
    loss_columns, statistics = features.loss_features(1.0, 1.0, tf.zeros([features.LOSS_STATISTICS_SIZE]))
    tensor = features.tensor_features(tf.constant(1.0), tf.constant(0.0), 4)
    assert len(summary) == len(features.SUMMARY_FEATURE_NAMES)
    assert len(loss_columns) == len(features.LOSS_FEATURE_NAMES)
    assert features.NUM_CONTEXT_FEATURES == len(summary) + len(tensor) + len(loss_columns)
    assert statistics.shape == (features.LOSS_STATISTICS_SIZE,)
    assert len(set(features.CONTEXT_FEATURE_NAMES)) == features.NUM_CONTEXT_FEATURES


def test_loss_features_are_scale_free_and_ignore_unknown_or_non_finite_losses():
    def run(losses, known):
        statistics = tf.zeros([features.LOSS_STATISTICS_SIZE])
        columns = []
        for loss, k in zip(losses, known):
            c, statistics = features.loss_features(tf.constant(loss), tf.constant(k), statistics)
            columns.append([float(v) for v in c])
        return np.array(columns), statistics.numpy()

    losses = [2.0, 1.5, 1.2, 1.6]
    base, _ = run(losses, [1.0] * 4)
    scaled, _ = run([10 * v for v in losses], [1.0] * 4)
    np.testing.assert_allclose(base, scaled, rtol=1e-5)
    assert base[0].tolist() == [1.0, 0.0, 0.0]  # nothing to compare the first loss with
    assert base[2, 1] < 0 < base[3, 1]  # the loss fell, then rose
    unknown, statistics = run([np.nan, np.inf, 3.0], [1.0, 1.0, 0.0])
    assert np.all(unknown == 0.0) and np.all(statistics == 0.0)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("cls", ARCHITECTURE_CLASSES, ids=lambda cls: cls.kind)
def test_four_steps_match_numpy_reference(cls, jit):
    network = _random_network(cls, seed=2)
    bound = BoundNetwork(network, [w.value for w in network.weights])
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(4, 5, 6)).astype("float32")
    param = rng.normal(size=(5, 6)).astype("float32")
    # The loss is known at steps 1, 2 and 4, not at step 3.
    losses = np.array([2.0, 1.7, 9.0, 1.2], "float32")
    known = np.array([1.0, 1.0, 0.0, 1.0], "float32")
    lr, total_steps = 1e-2, 10

    def run(grads, param, losses, known):
        state = rule.init_state(param, bound)
        updates = []
        for i in range(4):
            update, state = rule.step(
                bound,
                state,
                grads[i],
                param,
                iteration=i + 1,
                total_steps=total_steps,
                learning_rate=lr,
                loss=losses[i],
                loss_known=known[i],
            )
            param = param - update
            updates.append(update)
        return tf.stack(updates), rule.flatten_state(state)

    fn = tf.function(run, jit_compile=True) if jit else run
    updates, final_state = fn(*(tf.constant(a) for a in (grads, param, losses, known)))

    weights = [w.numpy().astype(np.float64) for w in network.weights]
    h = np.zeros(network.lstm_hidden_size)
    state = ([np.zeros(param.shape)] * 2, np.zeros(param.shape), np.zeros(3), h, h)
    p = param.astype(np.float64)
    for i in range(4):
        want, state = recurrent_reference.rule_step(
            REFERENCE_FORWARD[cls],
            weights,
            network.magnitude_scale,
            lr,
            state,
            grads[i],
            p,
            i + 1,
            total_steps,
            float(losses[i]),
            bool(known[i]),
        )
        np.testing.assert_allclose(updates[i].numpy(), want, rtol=2e-4, atol=1e-8)
        p = p - want
    momenta, v, statistics, h, c = state
    for got, want in zip(final_state, [*momenta, v, statistics, h, c]):
        np.testing.assert_allclose(got.numpy(), want, rtol=2e-4, atol=1e-6)
    assert float(final_state[3][-1]) == 3.0  # three losses seen


@pytest.mark.parametrize("cls", ARCHITECTURE_CLASSES, ids=lambda cls: cls.kind)
def test_started_from_adam_equivalent_weights_gives_adams_update(cls):
    mlp = presets.load_preset("adam_equivalent_v1")
    keras.utils.set_random_seed(0)
    network = cls(features.NUM_FEATURES, features.NUM_CONTEXT_FEATURES)
    network.set_weights(network.weights_from_mlp(mlp.network, mlp.weights))
    bound = BoundNetwork(network, [w.value for w in network.weights])
    rng = np.random.default_rng(4)
    grads = rng.normal(size=(5, 7)).astype("float32")
    param = tf.constant(rng.normal(size=(7,)).astype("float32"))
    state = rule.init_state(param, network)
    m = v = np.zeros(7)
    for t, g in enumerate(grads, start=1):
        update, state = rule.step(bound, state, tf.constant(g), param, t, 0.0, 1e-3, loss=3.0 / t, loss_known=1.0)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        alpha = 1e-3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        np.testing.assert_allclose(update.numpy(), alpha * m / (np.sqrt(v) + 1e-7), rtol=3e-5)
    assert np.any(state.tensor_state[1].numpy() != 0)  # the LSTM ran


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: FFNLSTMNetwork(13, 16, lstm_hidden_size=0),
            "`lstm_hidden_size` must be a positive integer. Received: lstm_hidden_size=0",
        ),
        (
            lambda: HyperLSTMNetwork(13, 16, bank_size=1.5),
            "`bank_size` must be a positive integer. Received: bank_size=1.5",
        ),
        (
            lambda: HyperLSTMNetwork(13, 0),
            "`num_context_features` must be a positive integer. Received: num_context_features=0",
        ),
        (lambda: FFNLSTMNetwork(0, 16), "`num_features` must be a positive integer. Received: num_features=0"),
        (lambda: FFNLSTMNetwork(13, 16, activation="gelu"), "`activation` must be one of"),
        (
            lambda: HyperLSTMNetwork(13, 16, hidden_sizes=(4, -1)),
            "`hidden_sizes` must be a sequence of positive integers",
        ),
    ],
)
def test_bad_layer_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_weights_from_mlp_refuses_another_mlp_shape():
    other = keras_lopt.layers.MLPNetwork(features.NUM_FEATURES, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="Expected an MLPNetwork with .*hidden_sizes=\\(4, 4\\)"):
        FFNLSTMNetwork(features.NUM_FEATURES, 16).weights_from_mlp(other, other.get_weights())


# -- the preset format --------------------------------------------------------


@pytest.mark.parametrize("cls", ARCHITECTURE_CLASSES, ids=lambda cls: cls.kind)
def test_preset_round_trip_and_serving_function(cls, tmp_path):
    network = _random_network(cls, seed=5)
    loaded = _export(network, tmp_path / "p")
    assert type(loaded.network) is cls
    for want, got in zip(network.weights, loaded.weights):
        np.testing.assert_array_equal(want.numpy(), got)
    metadata = loaded.metadata
    assert metadata["format_version"] == savedmodel.TENSOR_STATE_VERSION == 2
    assert metadata["architecture"]["kind"] == cls.kind
    assert metadata["context_feature_names"] == list(features.CONTEXT_FEATURE_NAMES)
    assert metadata["network_state"] == {"names": ["lstm_hidden", "lstm_cell"], "shapes": [[4], [4]]}
    if cls is HyperLSTMNetwork:
        assert metadata["architecture"]["config"]["bank_size"] == 4

    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, features.NUM_FEATURES)).astype("float32")
    context = rng.normal(size=(features.NUM_CONTEXT_FEATURES,)).astype("float32")
    hidden, cell = (rng.normal(size=(4,)).astype("float32") for _ in range(2))
    served = tf.saved_model.load(loaded.path).signatures["serving_default"](
        feature_matrix=tf.constant(x),
        context=tf.constant(context),
        lstm_hidden=tf.constant(hidden),
        lstm_cell=tf.constant(cell),
    )
    direction, magnitude, (new_hidden, new_cell) = network(x, context, hidden, cell)
    for key, want in [
        ("direction", direction),
        ("magnitude", magnitude),
        ("lstm_hidden", new_hidden),
        ("lstm_cell", new_cell),
    ]:
        np.testing.assert_allclose(served[key].numpy(), want.numpy(), rtol=1e-6, atol=1e-7)


def _edit_metadata(path, edit):
    meta_path = os.path.join(path, "metadata.json")
    with open(meta_path) as f:
        metadata = json.load(f)
    edit(metadata)
    with open(meta_path, "w") as f:
        json.dump(metadata, f)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format_version=1), r"`format_version` is wrong. Expected: 2. Received: 1"),
        (lambda m: m.pop("network_state"), r"`network_state` is wrong. Expected: present in format version 2"),
        (lambda m: m["context_feature_names"].reverse(), r"`context_feature_names` is wrong"),
        (lambda m: m["network_state"].update(shapes=[[5], [5]]), r"`network_state` is wrong.*Received: .*\[5\]"),
        (
            lambda m: (
                m["architecture"]["config"].update(lstm_hidden_size=5),
                m["network_state"].update(shapes=[[5], [5]]),
            ),
            r"`variables/lstm_kernel` is wrong. Expected: float32 of shape \(16, 20\)",
        ),
    ],
)
def test_bad_recurrent_metadata_is_refused(any_recurrent_preset, edit, message):
    _edit_metadata(any_recurrent_preset, edit)
    with pytest.raises(ValueError, match=message):
        savedmodel.load(any_recurrent_preset)


def test_mlp_preset_claiming_the_recurrent_format_is_refused(random_preset):
    _edit_metadata(random_preset, lambda m: m.update(format_version=2))
    with pytest.raises(ValueError, match=r"`format_version` is wrong. Expected: 1. Received: 2"):
        savedmodel.load(random_preset)


def test_shipped_presets_keep_their_format():
    for name in presets.list_presets(include_unstable=True):
        loaded = presets.load_preset(name)
        # Written as the oldest version that holds them: 1 for per-element
        # networks, 2 with per-tensor state, 3 with a fan-in base.
        expected = 3 if loaded.fan_in_base is not None else 2 if loaded.network.state_names else 1
        assert (
            loaded.metadata["format_version"]
            == expected
            == savedmodel.format_version_of(type(loaded.network), loaded.fan_in_base)
        )


# -- the optimizer --------------------------------------------------------------


def _fit(preset, steps, jit_compile=True, callbacks=()):
    x, y = classification_data(n=32 * steps)
    model = small_classifier(0)
    optimizer = keras_lopt.LearnedOptimizer(preset=preset)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=jit_compile)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=list(callbacks))
    return model, optimizer


def _slot(optimizer, variable_index, name):
    """The per-tensor state `name` of the optimizer's `variable_index`-th
    variable: its row of the optimizer variable `tensor_<name>`."""
    (packed,) = [v for v in optimizer.variables if v.name == f"tensor_{name}"]
    return np.asarray(packed)[variable_index]


def test_fit_under_xla_matches_fit_without(recurrent_preset):
    xla_model, xla_optimizer = _fit(recurrent_preset, steps=12, jit_compile=True)
    assert xla_model.jit_compile is True
    plain_model, plain_optimizer = _fit(recurrent_preset, steps=12, jit_compile=False)
    initial = small_classifier(0).get_weights()
    moved = False
    for a, b, start in zip(xla_model.get_weights(), plain_model.get_weights(), initial):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        moved = moved or np.max(np.abs(a - start)) > 1e-4
    assert moved
    for name in ("loss_statistics", "lstm_hidden", "lstm_cell"):
        np.testing.assert_allclose(_slot(xla_optimizer, 0, name), _slot(plain_optimizer, 0, name), rtol=1e-4, atol=1e-6)
    # fit gave the optimizer the loss of every step (through `scale_loss`).
    assert _slot(xla_optimizer, 0, "loss_statistics")[-1] == 12.0
    assert xla_optimizer.uses_loss and not keras_lopt.LearnedOptimizer(preset="adam_equivalent_v1").uses_loss


class _EpochMeanRecorder(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        self.means.append(float(logs["loss"]))


def test_fit_feeds_the_batch_loss_not_the_epoch_mean_of_callback_logs(recurrent_preset):
    recorder = _EpochMeanRecorder()
    _, optimizer = _fit(recurrent_preset, steps=4, callbacks=[recorder])
    # Keras 3 logs the running mean over the epoch at each batch end; the
    # batch losses follow from it: l_k = k * mean_k - (k - 1) * mean_{k-1}.
    means = np.array(recorder.means, np.float64)
    k = np.arange(1, 5)
    batch = k * means - np.concatenate([[0.0], (k[:-1]) * means[:-1]])
    assert not np.allclose(batch, means, rtol=1e-3)

    def fast_average(values):
        decay = features.LOSS_AVERAGE_DECAYS[0]
        average = 0.0
        for value in values:
            average += (1 - decay) * (value - average)
        return average

    got = _slot(optimizer, 0, "loss_statistics")[0]
    np.testing.assert_allclose(got, fast_average(batch), rtol=1e-4)
    assert abs(got - fast_average(means)) > 1e-3 * abs(got)


def test_custom_loop_set_loss_xla_no_retrace_and_fallback(recurrent_preset):
    model = small_classifier()
    optimizer = keras_lopt.LearnedOptimizer(preset=recurrent_preset)
    x, y = classification_data(n=64)

    @tf.function(jit_compile=True)
    def train_step(x, y, give_loss):
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x))
        if give_loss:
            optimizer.set_loss(loss)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    optimizer.build(model.trainable_variables)
    for _ in range(3):
        train_step(x, y, True)
    assert train_step.experimental_get_tracing_count() == 1
    statistics = _slot(optimizer, 0, "loss_statistics")
    assert statistics[-1] == 3.0
    assert float(optimizer.variables[[v.name for v in optimizer.variables].index("loss_known")]) == 0.0
    # Without a loss the step runs with loss_known = 0: the statistics stay.
    for _ in range(2):
        train_step(x, y, False)
    np.testing.assert_array_equal(_slot(optimizer, 0, "loss_statistics"), statistics)
    assert int(optimizer.iterations.numpy()) == 5
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def _train(model, optimizer, x, y, steps):
    step = tf.function(lambda x, y: _apply(model, optimizer, x, y), jit_compile=True)
    for i in range(steps):
        step(x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16])


def _apply(model, optimizer, x, y):
    with tf.GradientTape() as tape:
        loss = optimizer.scale_loss(LOSS(y, model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))


def test_checkpoint_mid_training_resumes_bit_identically_with_recurrent_state(recurrent_preset, tmp_path):
    x, y = classification_data(n=16 * 10)
    model = small_classifier(1)
    optimizer = keras_lopt.LearnedOptimizer(preset=recurrent_preset)
    _train(model, optimizer, x, y, 5)
    hidden = _slot(optimizer, 0, "lstm_hidden")
    assert hidden.shape == (4,) and np.any(hidden != 0)
    path = tf.train.Checkpoint(model=model, optimizer=optimizer).write(str(tmp_path / "ckpt"))
    _train(model, optimizer, x[80:], y[80:], 5)

    restored_model = small_classifier(2)
    restored = keras_lopt.LearnedOptimizer(preset=recurrent_preset)
    restored.build(restored_model.trainable_variables)
    tf.train.Checkpoint(model=restored_model, optimizer=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(_slot(restored, 0, "lstm_hidden"), hidden)
    _train(restored_model, restored, x[80:], y[80:], 5)
    for a, b in zip(model.get_weights(), restored_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(optimizer.variables, restored.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_keras_file_round_trip_mid_training(recurrent_preset, tmp_path):
    x, y = classification_data(n=32 * 8)
    model = small_classifier(0)
    model.compile(optimizer=keras_lopt.LearnedOptimizer(preset=recurrent_preset), loss=LOSS, jit_compile=True)
    model.fit(x[:128], y[:128], batch_size=32, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.preset == recurrent_preset
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model.fit(x[128:], y[128:], batch_size=32, shuffle=False, verbose=0)
    loaded.fit(x[128:], y[128:], batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    ffn = _export(_random_network(FFNLSTMNetwork, seed=1), tmp_path / "ffn").path
    hyper = _export(_random_network(HyperLSTMNetwork, seed=1), tmp_path / "hyper").path
    model = small_classifier()
    optimizer = keras_lopt.LearnedOptimizer(preset=ffn)
    optimizer.build(model.trainable_variables)
    path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / "ckpt"))
    other = keras_lopt.LearnedOptimizer(preset=hyper)
    other.build(model.trainable_variables)
    with pytest.raises(ValueError, match="incompatible layout|written with preset"):
        tf.train.Checkpoint(optimizer=other).read(path)


# -- meta-training --------------------------------------------------------------


def test_unroll_runs_the_same_rule_as_the_keras_optimizer(recurrent_preset):
    got, expected = unroll_and_optimizer_losses(recurrent_preset, steps=10)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_loss_visibility_is_a_function_of_the_seed():
    seeds = np.arange(400)
    visible = unroll.loss_visible(seeds, 0.5)
    np.testing.assert_array_equal(visible, unroll.loss_visible(seeds, 0.5))
    assert 0.4 < visible.mean() < 0.6
    assert np.all(unroll.loss_visible(seeds, 1.0) == 1) and np.all(unroll.loss_visible(seeds, 0.0) == 0)


def _meta_config(architecture, **network):
    return MetaTrainConfig.from_dict(
        {
            "name": f"{architecture}_test_v1",
            "task_families": ["quadratic"],
            "outer_steps": 4,
            "eval_every": 2,
            "checkpoint_every": 2,
            "estimator": {"kind": "es", "num_pairs": 2, "sigma": 0.01, "truncation_length": 10},
            "inner_learning_rate": 0.01,
            "outer_learning_rate": 0.01,
            "eval_horizon": 20,
            "eval_tasks": 1,
            "network": {"architecture": architecture, **network},
        }
    )


@pytest.mark.parametrize("architecture", ["ffn_lstm", pytest.param("hyper_lstm", marks=pytest.mark.slow)])
def test_meta_training_smoke_checkpoint_resume_and_export(architecture, tmp_path):
    config = _meta_config(architecture, lstm_hidden_size=3)
    trainer = MetaTrainer(config, tmp_path / "run")
    assert type(trainer.layer) is ARCHITECTURES[architecture]
    start = trainer.theta.copy()
    # Started from adam_equivalent_v1: the per-parameter part is Adam's.
    adam = presets.load_preset("adam_equivalent_v1")
    weights = unroll.unflatten_weights(start, trainer.shapes)
    if architecture == "hyper_lstm":
        np.testing.assert_array_equal(weights[5].numpy()[1], adam.weights[0])
    else:
        np.testing.assert_array_equal(weights[3].numpy()[: features.NUM_FEATURES], adam.weights[0])
    for _ in range(2):
        meta_loss, grad_norm = trainer.train_step()
        assert np.isfinite(meta_loss) and grad_norm > 0
    trainer.save_checkpoint()
    assert not np.array_equal(trainer.theta, start)

    resumed = MetaTrainer(config, tmp_path / "run")
    assert resumed.restore()
    trainer.train(progress=False)
    resumed.train(progress=False)
    np.testing.assert_array_equal(trainer.theta, resumed.theta)

    preset = trainer.export()
    assert preset.metadata["architecture"]["kind"] == architecture
    assert preset.metadata["provenance"]["config"]["network"]["architecture"] == architecture
    x, y = classification_data(n=64)
    model = small_classifier()
    model.compile(optimizer=keras_lopt.LearnedOptimizer(preset=preset.path), loss=LOSS, jit_compile=True)
    history = model.fit(x, y, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


@pytest.mark.parametrize(
    "network, message",
    [
        (
            {"architecture": "transformer"},
            "`architecture` must be one of ('adaptive_loss_mlp', 'adaptive_mlp', 'ffn_lstm', 'hyper_lstm', 'mlp'). Received: architecture='transformer'",
        ),
        (
            {"architecture": "ffn_lstm", "lstm_hidden_size": 0},
            "`lstm_hidden_size` must be a positive integer. Received: lstm_hidden_size=0",
        ),
        (
            {"lstm_hidden_size": 4},
            "`lstm_hidden_size` applies to the LSTM architectures only. Received: architecture='mlp', lstm_hidden_size=4",
        ),
        (
            {"architecture": "ffn_lstm", "bank_size": 2},
            "`bank_size` applies to architecture='hyper_lstm' only. Received: architecture='ffn_lstm', bank_size=2",
        ),
        (
            {"architecture": "hyper_lstm", "bank_size": True},
            "`bank_size` must be a positive integer. Received: bank_size=True",
        ),
        (
            {"architecture": "adaptive_mlp", "log_step_range": [1.0, 2.0]},
            "`log_step_range` must be finite `(low, high)` with low <= 0 <= high. Received: log_step_range=[1.0, 2.0]",
        ),
        (
            {"architecture": "adaptive_mlp", "log_step_range": [-1.0]},
            "`log_step_range` must be finite `(low, high)` with low <= 0 <= high. Received: log_step_range=[-1.0]",
        ),
        (
            {"log_step_range": [-2.0, 2.0]},
            "`log_step_range` applies to architecture='adaptive_mlp' or 'adaptive_loss_mlp' only. "
            "Received: architecture='mlp', log_step_range=[-2.0, 2.0]",
        ),
    ],
)
def test_bad_network_config_values_are_named(network, message):
    with pytest.raises(ValueError) as error:
        NetworkConfig(**network)
    assert str(error.value) == message


def test_bad_loss_visible_fraction_is_named():
    with pytest.raises(
        ValueError, match=r"`loss_visible_fraction` must be in \[0, 1\]. Received: loss_visible_fraction=1.5"
    ):
        config_lib.EstimatorConfig(kind="es", loss_visible_fraction=1.5)


def test_config_accepts_every_architecture_of_the_layers():
    for kind in ARCHITECTURES:
        assert NetworkConfig(architecture=kind).architecture == kind


def test_init_preset_of_another_recurrent_architecture_is_refused(tmp_path):
    hyper = _export(_random_network(HyperLSTMNetwork), tmp_path / "hyper").path
    config = MetaTrainConfig.from_dict(dict(_meta_config("ffn_lstm").to_dict(), init_preset=hyper))
    with pytest.raises(ValueError, match="has a different architecture. Expected a 'ffn_lstm' network"):
        MetaTrainer(config, tmp_path / "run")


def test_architectures_doc_example_runs(tmp_path):
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "architectures.md")
    with open(path) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.DOTALL)
    assert len(blocks) == 1
    code = blocks[0].replace("/tmp/ffn_lstm_demo", str(tmp_path / "demo"))
    namespace = {}
    exec(compile(code, path, "exec"), namespace)
    optimizer = namespace["optimizer"]
    assert optimizer.uses_loss
    assert int(optimizer.iterations.numpy()) == 3
    assert _slot(optimizer, 0, "loss_statistics")[-1] == 3.0


def test_guard_works_with_recurrent_presets(recurrent_preset):
    x, y = classification_data(n=32 * 6)
    model = small_classifier(0)
    optimizer = keras_lopt.LearnedOptimizer(preset=recurrent_preset, guard=keras_lopt.AdamGuard(max_ratio=1e-3))
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=True)
    model.fit(x, y, batch_size=32, shuffle=False, verbose=0)
    # A learned step 1000x smaller than Adam's is unlikely: every update falls back.
    assert optimizer.guard_fallbacks == 6 * len(model.trainable_variables)
    assert _slot(optimizer, 0, "loss_statistics")[-1] == 6.0
