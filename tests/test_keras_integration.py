"""LearnedOptimizer as a first-class Keras optimizer (issue 4).

Dtypes and ranks, sparse gradients, non-finite gradients, the base optimizer
options, mixed precision, MirroredStrategy, checkpoints, the training horizon
and argument validation, each against real Keras models.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lopt
from keras_lopt import LearnedOptimizer, TrainingHorizon, rule, saved_state, savedmodel

from conftest import classification_data, small_classifier
from reference import rule_step

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _fit(optimizer, steps=8, jit_compile=False, seed=0, callbacks=None, epochs=1):
    x, y = classification_data(n=32 * steps)
    model = small_classifier(seed)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=jit_compile)
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    return model


def _slot(optimizer, variable, name):
    """The optimizer's `name` slot of `variable` (named like Keras' slots)."""
    wanted = f"{variable.path.replace('/', '_')}_{name}"
    (slot,) = [v for v in optimizer.variables if v.name == wanted]
    return slot


def _state(optimizer, variable):
    return [np.asarray(_slot(optimizer, variable, n)) for n in rule.state_slot_names()]


def _as_float64(x):
    return np.asarray(x).astype(np.float64)


# 1. Shapes and dtypes ----------------------------------------------------


class _Scale(keras.layers.Layer):
    """Multiplies by a learned scalar: a rank-0 variable."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


def _every_rank_model(dtype):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, dtype=dtype),  # rank-4 kernel, rank-1 bias
            keras.layers.Reshape((16, 3), dtype=dtype),
            keras.layers.Conv1D(2, 3, dtype=dtype),  # rank-3 kernel
            keras.layers.Flatten(dtype=dtype),
            keras.layers.Dense(3, dtype=dtype),  # rank-2 kernel
            _Scale(dtype=dtype),  # rank 0
        ]
    )


# Relative spacing of each dtype (one unit in the last place, at most).
_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}
_NUMPY_DTYPE = {name: tf.as_dtype(name).as_numpy_dtype for name in _EPS}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_every_rank_and_dtype_matches_the_numpy_reference(dtype, random_preset, random_network):
    model = _every_rank_model(dtype)
    variables = model.trainable_variables
    assert {len(v.shape) for v in variables} == {0, 1, 2, 3, 4}
    assert {v.dtype for v in variables} == {dtype}
    lr, total_steps = 0.05, 4
    optimizer = LearnedOptimizer(preset=random_preset, learning_rate=lr, total_steps=total_steps)
    optimizer.build(variables)
    apply = tf.function(lambda grads: optimizer.apply(grads, variables), jit_compile=True)
    weights = [w.numpy() for w in random_network.weights]
    state = {v.path: ([0.0, 0.0], 0.0) for v in variables}
    rng = np.random.default_rng(0)
    for t in (1, 2):
        x = rng.normal(size=(4, 6, 6, 2)).astype("float32")
        y = rng.integers(0, 3, size=4)
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x))
        grads = tape.gradient(loss, variables)
        before = [_as_float64(v) for v in variables]
        apply(grads)
        for v, g, p in zip(variables, grads, before):
            assert g.dtype == dtype
            g32 = _as_float64(tf.cast(g, "float32"))
            update, state[v.path] = rule_step(
                weights,
                random_network.magnitude_scale,
                lr,
                state[v.path],
                g32,
                p,
                t,
                total_steps,
            )
            np_dtype = _NUMPY_DTYPE[dtype]
            expected = _as_float64(p.astype(np_dtype) - update.astype(np_dtype))
            got = _as_float64(v)
            assert v.dtype == dtype
            tolerance = _EPS[dtype] * (np.abs(expected) + np.abs(update)) + 1e-5 * np.abs(update)
            assert np.all(np.abs(got - expected) <= tolerance + 1e-12), (v.path, t)
            assert np.max(np.abs(got - p)) > 0  # the step moved the variable
            momenta, second_moment = state[v.path]
            slots = _state(optimizer, v)
            assert all(s.dtype == np.float32 for s in slots)
            for got_slot, want in zip(slots, [*momenta, second_moment]):
                # atol: float32 cancellation in m + (g - m) * (1 - decay).
                atol = 1e-6 * np.max(np.abs(want))
                np.testing.assert_allclose(got_slot, want, rtol=1e-5, atol=atol)


# 2. Sparse gradients -----------------------------------------------------


def _embedding_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((3,), dtype="int32"),
            keras.layers.Embedding(12, 4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2),
        ]
    )


def _embedding_gradients(model, ids):
    with tf.GradientTape() as tape:
        loss = LOSS(np.array([0, 1]), model(ids))
    return tape.gradient(loss, model.trainable_variables)


def test_sparse_embedding_gradients_are_densified_like_adam():
    # No index repeats within a batch: with repeats, keras Adam squares the
    # slices before summing them, so its second moment is not that of the
    # gradient (see the next test for LearnedOptimizer with repeats).
    low_rows = np.array([[0, 1, 2], [3, 4, 5]], "int32")
    high_rows = np.array([[6, 7, 8], [9, 10, 11]], "int32")
    runs = {}
    for name, optimizer in (
        ("learned", LearnedOptimizer(preset="adam_equivalent_v1")),
        ("adam", keras.optimizers.Adam(learning_rate=1e-3)),
    ):
        model = _embedding_model()
        assert isinstance(_embedding_gradients(model, low_rows)[0], tf.IndexedSlices)
        # Called in this iteration only: the loop variables are the ones meant.
        step = tf.function(
            lambda ids: optimizer.apply_gradients(  # noqa: B023
                zip(_embedding_gradients(model, ids), model.trainable_variables)  # noqa: B023
            ),
            jit_compile=True,
        )
        snapshots = [model.layers[0].embeddings.numpy()]
        for ids in (low_rows, high_rows, low_rows):
            step(ids)
            snapshots.append(model.layers[0].embeddings.numpy())
        runs[name] = snapshots
    learned, adam = runs["learned"], runs["adam"]
    for a, b in zip(learned, adam):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # Step 1 touches rows 0-5 only; rows 6-11 have no gradient and no momentum.
    np.testing.assert_array_equal(learned[1][6:], learned[0][6:])
    assert np.all(learned[1][:6] != learned[0][:6])
    # Step 2 touches rows 6-11 only; rows 0-5 still move on their momentum.
    assert np.all(learned[2][:6] != learned[1][:6])
    assert np.all(learned[2][6:] != learned[1][6:])


def test_sparse_gradient_with_repeated_rows_equals_its_dense_sum(random_preset):
    ids = np.array([[0, 1, 0], [1, 2, 0]], "int32")
    results = []
    for densify in (False, True):
        model = _embedding_model()
        optimizer = LearnedOptimizer(preset=random_preset)
        for _ in range(2):
            grads = _embedding_gradients(model, ids)
            assert isinstance(grads[0], tf.IndexedSlices)
            if densify:
                grads = [tf.convert_to_tensor(g) for g in grads]
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        results.append(model.get_weights())
    for sparse, dense in zip(*results):
        np.testing.assert_array_equal(sparse, dense)


# 3. Non-finite gradients -------------------------------------------------


def _finite_square(value):
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.square(np.float32(value))))


@pytest.mark.parametrize("preset", ["random_preset", "local_preset"])
def test_non_finite_gradient_skips_that_variable_and_its_slots(preset, request):
    # The local preset checks the gradient only (its update is finite when
    # the gradient and its square are); the full one also the new value.
    preset = request.getfixturevalue(preset)
    model = small_classifier()
    variables = model.trainable_variables
    optimizer = LearnedOptimizer(preset=preset, weight_decay=0.1, total_steps=10)
    optimizer.build(variables)
    x, y = classification_data(n=32)

    @tf.function(jit_compile=True)
    def train_step(poison):
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x))
        grads = tape.gradient(loss, variables)
        optimizer.apply([g + poison[i] for i, g in enumerate(grads)], variables)
        return loss

    def snapshot():
        return [[_as_float64(v), *(_as_float64(s) for s in _state(optimizer, v))] for v in variables]

    poisons = [
        [0.0, 0.0, 0.0, 0.0],
        [np.nan, 0.0, 0.0, 0.0],
        [0.0, 0.0, np.inf, -np.inf],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 3e19, 0.0, 0.0],  # finite, but its square overflows
        [0.0, 0.0, 0.0, 0.0],
    ]
    skipped = 0
    for poison in poisons:
        before = snapshot()
        train_step(tf.constant(poison, tf.float32))
        after = snapshot()
        for i, p in enumerate(poison):
            for old, new in zip(before[i], after[i]):
                assert np.all(np.isfinite(new))
                if _finite_square(p):
                    assert np.any(old != new)
                else:
                    np.testing.assert_array_equal(old, new)
            skipped += int(not _finite_square(p))
        assert optimizer.skipped_updates == skipped
    assert skipped == 4
    assert int(optimizer.iterations.numpy()) == len(poisons)
    # Non-finite steps and horizon changes reuse the one compiled step.
    optimizer.total_steps = 20
    train_step(tf.zeros([4]))
    assert train_step.experimental_get_tracing_count() == 1


def test_fit_continues_after_a_batch_with_non_finite_gradients():
    x, y = classification_data(n=32 * 6)
    # An infinite sample weight in the second batch makes every gradient of
    # that step non-finite, whatever the backend does with NaN in relu.
    sample_weight = np.ones(len(x), "float32")
    sample_weight[40] = np.inf
    model = small_classifier()
    optimizer = LearnedOptimizer()
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=True)
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=32,
        epochs=2,
        shuffle=False,
        verbose=0,
    )
    assert not np.isfinite(history.history["loss"][0])  # the epoch mean includes it
    assert optimizer.skipped_updates == 2 * len(model.trainable_variables)
    assert int(optimizer.iterations.numpy()) == 12
    assert all(np.all(np.isfinite(np.asarray(v))) for v in optimizer.variables)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert model.evaluate(x, y, verbose=0) < before


# 4. The base optimizer options ------------------------------------------

# Each option with keras Adam (AdamW for weight decay) as the reference: the
# adam_equivalent_v1 preset reproduces Adam, so any difference is the option.
BASE_OPTIONS = {
    "weight_decay": ({"weight_decay": 0.5}, keras.optimizers.AdamW),
    "clipnorm": ({"clipnorm": 1e-6}, keras.optimizers.Adam),
    "clipvalue": ({"clipvalue": 1e-7}, keras.optimizers.Adam),
    "global_clipnorm": ({"global_clipnorm": 1e-6}, keras.optimizers.Adam),
    "use_ema": ({"use_ema": True, "ema_momentum": 0.5}, keras.optimizers.Adam),
    "gradient_accumulation_steps": (
        {"gradient_accumulation_steps": 2},
        keras.optimizers.Adam,
    ),
    "loss_scale_factor": ({"loss_scale_factor": 128.0}, keras.optimizers.Adam),
}
LR = 0.01


@pytest.fixture(scope="module")
def plain_learned_weights():
    return _fit(LearnedOptimizer(preset="adam_equivalent_v1", learning_rate=LR)).get_weights()


@pytest.mark.parametrize("option", sorted(BASE_OPTIONS))
def test_base_option_has_its_keras_effect(option, plain_learned_weights):
    kwargs, reference_class = BASE_OPTIONS[option]
    learned = _fit(LearnedOptimizer(preset="adam_equivalent_v1", learning_rate=LR, **kwargs))
    reference = _fit(reference_class(learning_rate=LR, **kwargs))
    for got, want in zip(learned.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    difference = max(np.max(np.abs(a - b)) for a, b in zip(learned.get_weights(), plain_learned_weights))
    if option == "loss_scale_factor":
        # The loss is scaled and the gradients unscaled: same training.
        assert learned.optimizer.scale_loss(2.0) == 256.0
        assert difference < 1e-6
    else:
        assert difference > 1e-3
    if option == "gradient_accumulation_steps":
        assert int(learned.optimizer.iterations.numpy()) == 4


def _default_apply(optimizer, variables, gradient_batches):
    """Applies each gradient list of `gradient_batches` to `variables`."""
    for gradients in gradient_batches:
        optimizer.apply(list(gradients), variables)


@pytest.mark.parametrize("jit", [False, True])
def test_default_preset_accumulates_gradients_into_their_mean(jit):
    """`gradient_accumulation_steps` with the default preset, whose steps
    are deferred and batched: two accumulated `apply` calls are one `apply`
    of the mean gradient (Keras' accumulation), with the same iterations."""
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (3,), (3, 2), (2,)]
    start = [rng.normal(size=s).astype("float32") for s in shapes]
    pairs = [[[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(2)] for _ in range(3)]
    accumulated = [keras.Variable(v) for v in start]
    averaged = [keras.Variable(v) for v in start]
    accumulating = LearnedOptimizer(gradient_accumulation_steps=2)
    plain = LearnedOptimizer()
    accumulating.build(accumulated)
    plain.build(averaged)
    run_accumulating = tf.function(functools.partial(_default_apply, accumulating, accumulated), jit_compile=jit)
    run_plain = tf.function(functools.partial(_default_apply, plain, averaged), jit_compile=jit)
    run_accumulating([g for pair in pairs for g in pair])
    run_plain([[(a + b) / 2 for a, b in zip(*pair)] for pair in pairs])
    assert int(accumulating.iterations) == int(plain.iterations) == 3
    for got, want, before in zip(accumulated, averaged, start):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-8)
        assert np.max(np.abs(want.numpy() - before)) > 1e-4


def test_default_preset_keeps_keras_moving_average_of_its_steps():
    """`use_ema` with the default preset (deferred, batched steps): the
    moving average follows the weights each step leaves, as Keras defines
    it (the first step's weights, then `m * average + (1 - m) * weights`),
    and does not change the training itself."""
    rng = np.random.default_rng(4)
    shapes = [(4, 3), (3,)]
    start = [rng.normal(size=s).astype("float32") for s in shapes]
    with_average = [keras.Variable(v) for v in start]
    without = [keras.Variable(v) for v in start]
    momentum = 0.5
    averaging = LearnedOptimizer(use_ema=True, ema_momentum=momentum)
    plain = LearnedOptimizer()
    expected = None
    for _ in range(4):
        gradients = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
        averaging.apply(gradients, with_average)
        plain.apply(gradients, without)
        weights = [v.numpy() for v in with_average]
        if expected is None:
            expected = weights
        else:
            expected = [momentum * e + (1 - momentum) * w for e, w in zip(expected, weights)]
    for got, want in zip(with_average, without):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    # What `fit` does at its end: the variables take their averages.
    averaging.finalize_variable_values(with_average)
    for got, want, weights in zip(with_average, expected, without):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-8)
        assert np.max(np.abs(got.numpy() - weights.numpy())) > 1e-5


def test_weight_decay_honours_exclusions():
    runs = []
    for make in (
        functools.partial(LearnedOptimizer, preset="adam_equivalent_v1"),
        keras.optimizers.AdamW,
    ):
        optimizer = make(learning_rate=LR, weight_decay=0.5)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        runs.append(_fit(optimizer, steps=3).get_weights())
    for got, want in zip(*runs):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# 5. Mixed precision ------------------------------------------------------


@pytest.fixture
def global_policy():
    """Sets keras' global dtype policy for one test, then restores float32."""
    try:
        yield keras.mixed_precision.set_global_policy
    finally:
        keras.mixed_precision.set_global_policy("float32")


# XLA for one of the two only: compiling the loss-scaled step costs ~5 s.
@pytest.mark.parametrize("policy, jit_compile", [("mixed_float16", True), ("mixed_bfloat16", False)])
def test_mixed_precision_trains_with_loss_scale_optimizer(global_policy, policy, jit_compile):
    global_policy(policy)
    x, y = classification_data(n=256)
    model = small_classifier()
    assert model.layers[0].compute_dtype == policy.split("_")[1]
    learned = LearnedOptimizer(learning_rate=1e-2)
    model.compile(
        optimizer=keras.optimizers.LossScaleOptimizer(learned),
        loss=LOSS,
        jit_compile=jit_compile,
    )
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[TrainingHorizon()])
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]
    assert learned.total_steps == 40  # the callback found the inner optimizer
    assert learned.skipped_updates == 0
    for v in model.trainable_variables:
        assert v.dtype == "float32"
        assert np.all(np.isfinite(v.numpy()))


# 6. Distribution ---------------------------------------------------------

_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from conftest import classification_data, small_classifier
    from keras_lopt import LearnedOptimizer

    preset = sys.argv[1]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x, y = classification_data(n=32 * 10)

    def train(strategy):
        # jit_compile stays False: Keras 3.15 `fit` with XLA under
        # MirroredStrategy fails for every optimizer (a variable on another
        # device), and "auto" resolves to False there.
        with strategy.scope():
            model = small_classifier(0)
            optimizer = LearnedOptimizer(preset=preset, total_steps=10)
            model.compile(optimizer=optimizer, loss=loss)
        initial = model.get_weights()
        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        return model, optimizer, initial

    single, _, single_initial = train(tf.distribute.get_strategy())
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model, optimizer, initial = train(strategy)
    replica_values = [
        [np.asarray(c) for c in strategy.experimental_local_results(v.value)]
        for v in list(optimizer.variables) + list(model.weights)
    ]
    network = [v for v in optimizer.variables if v.name.startswith("network_")]
    results = {
        "replicas": strategy.num_replicas_in_sync,
        "same_start": all(
            np.array_equal(a, b) for a, b in zip(initial, single_initial)
        ),
        "replicas_agree": all(
            all(np.array_equal(r[0], r_i) for r_i in r[1:]) for r in replica_values
        ),
        "network_variables": len(network),
        "network_unchanged": all(
            np.array_equal(np.asarray(v), np.asarray(w))
            for v, w in zip(network, optimizer.network.weights)
        ),
        "iterations": int(optimizer.iterations.numpy()),
        "skipped": optimizer.skipped_updates,
        "moved": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(model.get_weights(), initial)
        ),
        "max_abs_diff": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(model.get_weights(), single.get_weights())
        ),
    }
    print("RESULT " + json.dumps(results))
    """
)


# The hyper_lstm case (per-tensor recurrent state under a strategy) is slow.
@pytest.mark.parametrize("preset_kind", ["mlp", pytest.param("hyper_lstm", marks=pytest.mark.slow)])
def test_mirrored_strategy_matches_a_single_device(random_preset, preset_kind):
    # hyper_lstm: the shipped recurrent preset, which also reads the loss.
    preset = random_preset if preset_kind == "mlp" else "hyper_lstm_es_v1"
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(tests_dir), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT, preset, tests_dir],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    r = json.loads(lines[0][len("RESULT ") :])
    assert r["replicas"] == 2, r
    assert r["same_start"] and r["replicas_agree"], r
    # The network weights (aggregation "only_first_replica") are on both
    # replicas, equal, and untouched by training.
    network_arrays = len(keras_lopt.presets.load_preset(preset).network.weights)
    assert r["network_variables"] == network_arrays and r["network_unchanged"], r
    assert r["iterations"] == 10 and r["skipped"] == 0, r
    assert r["moved"] > 1e-3, r
    # Two replicas sum half-batch gradients where one device averages the
    # whole batch: float32 rounding differences only (1.5e-8 measured). The
    # recurrent preset also reads the loss, and under the strategy it gets
    # the first replica's (half-batch) loss, not the whole batch's: its
    # loss features differ a little (2.0e-6 measured).
    assert r["max_abs_diff"] < (1e-6 if preset_kind == "mlp" else 1e-4), r


# 7. Checkpoints ----------------------------------------------------------


@pytest.mark.parametrize("built_before_restore, jit_compile", [(False, True), (True, False)])
def test_checkpoint_restore_continues_bit_identically(tmp_path, random_preset, built_before_restore, jit_compile):
    x, y = classification_data(n=32 * 6)
    first, rest = (x[:96], y[:96]), (x[96:], y[96:])

    def compiled(seed):
        model = small_classifier(seed)
        model.compile(
            optimizer=LearnedOptimizer(preset=random_preset, total_steps=6),
            loss=LOSS,
            jit_compile=jit_compile,
        )
        return model

    model = compiled(0)
    model.fit(*first, batch_size=32, shuffle=False, verbose=0)
    path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
    model.fit(*rest, batch_size=32, shuffle=False, verbose=0)

    restored = compiled(1)  # other initial weights: the restore must replace them
    if built_before_restore:
        restored.optimizer.build(restored.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=restored, optimizer=restored.optimizer)
    checkpoint.restore(path).assert_existing_objects_matched()
    assert int(restored.optimizer.iterations.numpy()) == 3
    restored.fit(*rest, batch_size=32, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(model.optimizer.variables) == len(restored.optimizer.variables)
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _checkpoint_path(tmp_path, preset):
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(preset=preset), loss=LOSS)
    model.fit(*classification_data(n=32), verbose=0)
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))


@pytest.mark.parametrize("built_before_restore", [False, True])
def test_checkpoint_from_another_preset_is_refused(tmp_path, random_preset, built_before_restore):
    path = _checkpoint_path(tmp_path, random_preset)
    model = small_classifier()
    optimizer = LearnedOptimizer(preset="adam_equivalent_v1")
    model.compile(optimizer=optimizer, loss=LOSS)
    if built_before_restore:
        optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    with pytest.raises(
        ValueError,
        match=r"written with preset 'random_v1' \(fingerprint [0-9a-f]{16}\), "
        r"but this optimizer uses preset 'adam_equivalent_v1'",
    ):
        checkpoint.restore(path)


def test_checkpoint_with_another_state_layout_is_refused(tmp_path, monkeypatch, random_preset):
    with monkeypatch.context() as patch:
        # What an older or newer keras_lopt with another state layout writes.
        patch.setattr(keras_lopt.optimizer, "STATE_FORMAT", 0)
        path = _checkpoint_path(tmp_path, random_preset)
    model = small_classifier()
    optimizer = LearnedOptimizer(preset=random_preset)
    model.compile(optimizer=optimizer, loss=LOSS)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    current = keras_lopt.optimizer.STATE_FORMAT
    with pytest.raises(ValueError, match=f"incompatible layout.*'state_format', {current}.*'state_format', 0"):
        checkpoint.restore(path)


def test_keras_file_from_changed_preset_weights_is_skipped_with_a_warning(tmp_path, random_preset, random_network):
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(preset=random_preset), loss=LOSS)
    model.fit(*classification_data(n=32), verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    # The preset directory is re-exported with other weights.
    random_network.set_weights([w.numpy() * 2 for w in random_network.weights])
    savedmodel.export(
        random_network,
        random_preset,
        savedmodel.PresetInfo(name="random_v1", learning_rate=1e-3, provenance={}),
    )
    with pytest.warns(
        UserWarning,
        match=r"written with preset 'random_v1' \(fingerprint [0-9a-f]{16}\), but this optimizer uses preset 'random_v1' \(fingerprint",
    ):
        restored = keras.models.load_model(path)
    assert int(restored.optimizer.iterations.numpy()) == 0  # nothing restored
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_file_saved_before_training_loads_and_trains(tmp_path):
    model = small_classifier()
    model.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    path = str(tmp_path / "model.keras")
    model.save(path)  # the optimizer has no state yet
    restored = keras.models.load_model(path)
    restored.fit(*classification_data(n=32), verbose=0)
    assert int(restored.optimizer.iterations.numpy()) == 1


def test_keras_state_with_another_variable_count_is_skipped_with_a_warning():
    model = small_classifier()
    optimizer = LearnedOptimizer()
    optimizer.build(model.trainable_variables)
    store = {str(i): np.ones_like(v) for i, v in enumerate(optimizer.variables[:-1])}
    store[saved_state.IDENTITY_KEY] = saved_state.encode_identity(optimizer._state_identity.identity)
    with pytest.warns(UserWarning, match=r"the file holds \d+ optimizer variables, this optimizer has \d+"):
        optimizer.load_own_variables(store)
    assert int(optimizer.iterations.numpy()) == 0


def test_saved_model_export_with_the_optimizer_still_works(tmp_path):
    model = _fit(LearnedOptimizer(), steps=1)
    tf.saved_model.save(model, str(tmp_path / "saved_model"))
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    assert loaded is not None


# 8. Training horizon -----------------------------------------------------


def test_total_steps_changes_the_update_through_progress(random_preset, random_network):
    weights = [w.numpy() for w in random_network.weights]
    model = small_classifier()
    x, y = classification_data(n=32)
    with tf.GradientTape() as tape:
        loss = LOSS(y, model(x))
    grads = tape.gradient(loss, model.trainable_variables)
    kernel, grad = model.trainable_variables[0], grads[0]
    initial = model.get_weights()
    updates = {}
    for total_steps in (None, 2, 1000):
        model.set_weights(initial)
        optimizer = LearnedOptimizer(preset=random_preset, total_steps=total_steps)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        updates[total_steps] = initial[0] - kernel.numpy()
        want, _ = rule_step(
            weights,
            random_network.magnitude_scale,
            1e-3,
            ([0.0, 0.0], 0.0),
            _as_float64(grad),
            initial[0],
            1,
            total_steps or 0,
        )
        np.testing.assert_allclose(updates[total_steps], want, rtol=1e-4, atol=1e-9)
    for a, b in ((None, 2), (None, 1000), (2, 1000)):
        assert np.max(np.abs(updates[a] - updates[b])) > 1e-2 * np.max(np.abs(updates[a]))


def test_training_horizon_callback_sets_total_steps_from_fit():
    x, y = classification_data(n=64)
    model = small_classifier()
    optimizer = LearnedOptimizer()
    model.compile(optimizer=optimizer, loss=LOSS)
    assert optimizer.total_steps is None  # works without a horizon
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[TrainingHorizon()])
    assert optimizer.total_steps == 12 == int(optimizer.iterations.numpy())
    # A second fit extends the horizon; initial_epoch shortens this fit.
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        initial_epoch=2,
        verbose=0,
        callbacks=[TrainingHorizon()],
    )
    assert optimizer.total_steps == 20 == int(optimizer.iterations.numpy())


def test_training_horizon_counts_accumulated_steps_and_unknown_lengths():
    x, y = classification_data(n=64)
    model = small_classifier()
    optimizer = LearnedOptimizer(gradient_accumulation_steps=2)
    model.compile(optimizer=optimizer, loss=LOSS)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[TrainingHorizon()])
    assert optimizer.total_steps == 4 == int(optimizer.iterations.numpy())

    def batches():
        yield x[:16], y[:16]

    unknown_length = tf.data.Dataset.from_generator(
        batches,
        output_signature=(
            tf.TensorSpec((None, 8), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ),
    )
    with pytest.warns(UserWarning, match="does not know its number of steps"):
        model.fit(unknown_length, epochs=1, verbose=0, callbacks=[TrainingHorizon()])
    assert optimizer.total_steps == 4


def test_training_horizon_needs_a_learned_optimizer():
    x, y = classification_data(n=32)
    model = small_classifier()
    model.compile(optimizer="adam", loss=LOSS)
    with pytest.raises(ValueError, match="must be a `keras_lopt.LearnedOptimizer`"):
        model.fit(x, y, verbose=0, callbacks=[TrainingHorizon()])


# 9. Argument validation --------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"total_steps": 0}, "`total_steps` must be a positive integer or None. Received: total_steps=0"),
        ({"total_steps": True}, "Received: total_steps=True"),
        ({"total_steps": "10"}, "Received: total_steps='10'"),
        ({"learning_rate": 0.0}, "`learning_rate` must be positive. Received: learning_rate=0.0"),
        ({"learning_rate": float("inf")}, "`learning_rate` must be finite. Received: learning_rate=inf"),
        ({"learning_rate": "fast"}, "`learning_rate` must be a positive number, a .*Received: learning_rate='fast'"),
        ({"learning_rate": True}, "Received: learning_rate=True"),
        (
            {"weight_decay": -0.1},
            "`weight_decay` must be a non-negative finite number or None. Received: weight_decay=-0.1",
        ),
        ({"clipnorm": 0}, "`clipnorm` must be a positive finite number or None. Received: clipnorm=0"),
        ({"clipvalue": -1.0}, "Received: clipvalue=-1.0"),
        ({"global_clipnorm": float("nan")}, "Received: global_clipnorm=nan"),
        ({"loss_scale_factor": 0.0}, "Received: loss_scale_factor=0.0"),
        ({"use_ema": "yes"}, "`use_ema` must be a bool. Received: use_ema='yes'"),
        ({"ema_momentum": 1.5}, r"`ema_momentum` must be a number in \[0, 1\]. Received: ema_momentum=1.5"),
        (
            {"ema_overwrite_frequency": 0},
            "`ema_overwrite_frequency` must be an integer >= 1 or None. Received: ema_overwrite_frequency=0",
        ),
        (
            {"gradient_accumulation_steps": 1},
            "`gradient_accumulation_steps` must be an integer >= 2 or None. Received: gradient_accumulation_steps=1",
        ),
        ({"gradient_accumulation_steps": 2.0}, "Received: gradient_accumulation_steps=2.0"),
        ({"name": ""}, "`name` must be a non-empty string. Received: name=''"),
        ({"clipnorm": 1.0, "clipvalue": 1.0}, "Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"),
        ({"momentum": 0.9}, "Argument\\(s\\) not recognized"),
    ],
)
def test_constructor_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearnedOptimizer(**kwargs)


def test_valid_arguments_are_accepted_and_the_setter_validates():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    optimizer = LearnedOptimizer(
        learning_rate=schedule,
        total_steps=np.int64(10),
        weight_decay=0,
        use_ema=True,
        ema_overwrite_frequency=5,
        gradient_accumulation_steps=3,
    )
    assert optimizer.total_steps == 10
    assert LearnedOptimizer.from_config(optimizer.get_config()).get_config() == optimizer.get_config()
    with pytest.raises(ValueError, match="Received: total_steps=-3"):
        optimizer.total_steps = -3


# 10. What Keras' training loop does to an optimizer ----------------------


def test_learning_rate_callbacks_set_the_rate_the_rule_uses():
    rate = 4e-3
    scheduled = _fit(
        LearnedOptimizer(),
        epochs=2,
        callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: rate)],
    )
    fixed = _fit(LearnedOptimizer(learning_rate=rate), epochs=2)
    default = _fit(LearnedOptimizer(), epochs=2)
    for a, b in zip(scheduled.get_weights(), fixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert max(np.max(np.abs(a - b)) for a, b in zip(fixed.get_weights(), default.get_weights())) > 1e-4

    # No epoch improves by 1e9, so every epoch after the first halves it.
    optimizer = LearnedOptimizer(learning_rate=1e-2)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    _fit(optimizer, epochs=3, callbacks=[plateau])
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(2.5e-3)


def test_steps_per_execution_gives_the_same_training():
    x, y = classification_data(n=128)
    weights = []
    for steps_per_execution in (1, 4):
        model = small_classifier()
        model.compile(optimizer=LearnedOptimizer(), loss=LOSS, steps_per_execution=steps_per_execution)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_kernel_constraints_hold_after_each_step():
    x, y = classification_data(n=128)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu", kernel_constraint=keras.constraints.MaxNorm(0.05)),
            keras.layers.Dense(3, kernel_constraint=keras.constraints.NonNeg()),
        ]
    )
    model.compile(optimizer=LearnedOptimizer(), loss=LOSS)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.max(np.linalg.norm(model.layers[0].kernel.numpy(), axis=0)) <= 0.05 + 1e-6
    assert np.min(model.layers[1].kernel.numpy()) >= 0.0


def test_state_format_1_fits_where_its_layout_is_format_2s_or_is_converted():
    """Format 2 moved only the per-tensor state: format-1 state of a preset
    without it has format 2's layout and fits; with it, it fits only where
    the caller converts the values (Keras files), not a checkpoint."""
    plain = {
        "state_format": 2,
        "slots": list(rule.state_slot_names()),
        "state_dtype": "float32",
        "preset": "p",
        "preset_fingerprint": "f",
    }
    adaptive = dict(plain, slots=[*rule.state_slot_names(), "loss_statistics", "step_control"])
    for expected in (plain, adaptive):
        assert saved_state.upgradable_format(dict(expected, state_format=1), expected)
    assert saved_state.identity_mismatch(dict(plain, state_format=1), plain) is None
    assert "incompatible layout" in saved_state.identity_mismatch(dict(adaptive, state_format=1), adaptive)
    assert saved_state.identity_mismatch(dict(adaptive, state_format=1), adaptive, converts_format_1=True) is None
    assert "incompatible layout" in saved_state.identity_mismatch(dict(plain, state_format=0), plain)
    # Two variables with slots: head, [m, v, control] x 2, tail.
    values = [np.float32(1), "a1", "b1", np.array([1.0, 2.0]), "a2", "b2", np.array([3.0, 4.0]), "tail"]
    upgraded = saved_state.upgrade_format_1(values, head=1, per_parameter=2, tensor_shapes=[(2,)], rows=2)
    assert upgraded[:5] == [values[0], "a1", "b1", "a2", "b2"] and upgraded[-1] == "tail"
    np.testing.assert_array_equal(upgraded[5], [[1.0, 2.0], [3.0, 4.0]])
