"""Regression guards for the optimizer's runtime cost that time nothing.

Timings on a shared CPU are too noisy to assert; these check the structure
that the timings in BENCHMARKS.md ("Step time") depend on: one trace and one
compiled program however long training runs and however the horizon
changes, float32 only, the learned network evaluated once per variable, and
a fixed number of whole-tensor reductions per variable.
"""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import LearnedOptimizer, TrainingHorizon, compiled_update
from keras_lopt import optimizer as optimizer_module

from conftest import classification_data, small_classifier, xla_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
# Shapes at which XLA CPU (TF 2.21) fuses the learned network into one
# computation. At some others (tiny tensors, 32x32x8, 3x3x3x32) it evaluates
# the hidden layers three times, before and after BENCHMARKS.md's change.
SHAPES = [(64, 64), (300, 7), (4096,)]
ACTIVATION_OPS = {"relu": "maximum", "tanh": "tanh"}


def _jitted_apply(optimizer, shapes=SHAPES):
    variables = [tf.Variable(np.ones(s, "float32")) for s in shapes]
    grads = [tf.constant(np.full(s, 0.5, "float32")) for s in shapes]
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def apply(grads):
        optimizer.apply_gradients(zip(grads, variables))
        return optimizer.iterations + 0

    return apply, grads


def test_custom_loop_traces_once_across_steps_and_horizon_changes():
    model = small_classifier()
    optimizer = LearnedOptimizer()
    x, y = classification_data(n=32)

    train_step = xla_train_step(model, optimizer, LOSS)

    optimizer.build(model.trainable_variables)
    program = train_step.experimental_get_compiler_ir(x, y)(stage="hlo")
    for total_steps in (None, 40, 1000, None):
        optimizer.total_steps = total_steps
        for _ in range(10):
            float(train_step(x, y))
    assert int(optimizer.iterations.numpy()) == 40
    assert train_step.experimental_get_tracing_count() == 1
    # The step count and horizon are read from variables, never baked in.
    assert train_step.experimental_get_compiler_ir(x, y)(stage="hlo") == program


def test_fit_traces_the_update_once_across_fits_and_horizons():
    traces = []

    class CountingOptimizer(LearnedOptimizer):
        def update_step(self, gradient, variable, learning_rate):
            traces.append(variable.name)  # Python runs only while tracing
            return super().update_step(gradient, variable, learning_rate)

    x, y = classification_data(n=64)
    model = small_classifier()
    optimizer = CountingOptimizer()
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=True)
    fit_args = dict(batch_size=16, verbose=0, callbacks=[TrainingHorizon()])
    model.fit(x, y, epochs=2, **fit_args)
    traced_once = len(traces)
    # Keras traces its train function twice in the first fit (with Adam too).
    assert traced_once in (len(model.trainable_variables), 2 * len(model.trainable_variables))
    assert optimizer.total_steps == 8
    model.fit(x, y, epochs=3, **fit_args)
    assert optimizer.total_steps == 8 + 12
    optimizer.total_steps = None
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert int(optimizer.iterations.numpy()) == 24
    assert len(traces) == traced_once


def _tracing_counts():
    """Each shared update program's tracing count so far, by identity."""
    return {id(p): p.experimental_get_tracing_count() for p in compiled_update._SHARED_PROGRAMS.values()}


def _fitted_with_and_without_horizon(num_hidden, **kwargs):
    """`(model, optimizer)` after three epochs without XLA on a Dense(8)
    stack of `num_hidden` layers and a Dense(3) head: two with
    `TrainingHorizon()`, then one with no horizon (12 steps)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,))]
        + [keras.layers.Dense(8, activation="relu") for _ in range(num_hidden)]
        + [keras.layers.Dense(3)]
    )
    optimizer = LearnedOptimizer(**kwargs)
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=False)
    x, y = classification_data(n=64)
    fit_args = dict(batch_size=16, verbose=0)
    model.fit(x, y, epochs=2, callbacks=[TrainingHorizon()], **fit_args)
    optimizer.total_steps = None
    model.fit(x, y, epochs=1, **fit_args)
    return model, optimizer


def test_one_update_program_per_variable_signature_traced_once():
    """Without XLA, for a preset whose steps are not batched (a
    per-parameter MLP), variables of one shape and dtype share one compiled
    update program, traced at most once in this test however many fits,
    horizons and train-step traces follow (earlier tests in the process may
    have traced the process-wide programs already)."""
    before = _tracing_counts()
    model, optimizer = _fitted_with_and_without_horizon(3, preset="mlp_local_es_v1")
    assert len(model.trainable_variables) == 8
    programs = optimizer._variable_step.programs
    assert sorted(shape for shape, *_ in programs) == [(3,), (8,), (8, 3), (8, 8)]
    traced = [p.experimental_get_tracing_count() - before.get(id(p), 0) for p in programs.values()]
    assert all(count <= 1 for count in traced), traced
    assert all(p.experimental_get_tracing_count() >= 1 for p in programs.values())
    assert optimizer._variable_step.batched_programs == {}
    assert int(optimizer.iterations.numpy()) == 12


def test_default_steps_without_xla_are_programs_of_variable_groups_that_repeated_blocks_share():
    """Without XLA the default's steps run as compiled programs of
    `PROGRAM_GROUP_SIZE` consecutive variables, the per-tensor controller
    batched; groups of equal signatures (repeated blocks) share one program,
    traced at most once in this test however many fits and horizons."""
    before = _tracing_counts()
    model, optimizer = _fitted_with_and_without_horizon(8)
    assert len(model.trainable_variables) == 18 and optimizer_module.PROGRAM_GROUP_SIZE == 8
    assert optimizer._variable_step.programs == {}
    programs = optimizer._variable_step.batched_programs
    # Variables 0-7 and 8-15 (four Dense(8) layers each) share a program;
    # the head's two variables have one of their own.
    assert sorted(len(key[2]) for key in programs) == [2, 8]
    traced = [p.experimental_get_tracing_count() - before.get(id(p), 0) for p in programs.values()]
    assert all(count <= 1 for count in traced), traced
    assert int(optimizer.iterations.numpy()) == 12


def _fitted_default(x, y, jit_compile):
    """`(model, optimizer)`: `small_classifier` after one epoch of the
    default on `(x, y)`, batch 16."""
    keras.utils.set_random_seed(0)
    model = small_classifier()
    optimizer = LearnedOptimizer()
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=jit_compile)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model, optimizer


def test_xla_train_step_batches_the_default_steps_and_matches_the_step_without_xla():
    """Inside an XLA train step the default's steps run together, their
    per-tensor controller batched (no per-variable program), and train as
    the per-variable programs of a step without XLA do."""
    x, y = classification_data(n=16 * 12)

    xla_model, xla_optimizer = _fitted_default(x, y, True)
    plain_model, plain_optimizer = _fitted_default(x, y, False)
    assert xla_optimizer._variable_step.programs == {}
    ((key, batched),) = xla_optimizer._variable_step.batched_programs.items()
    assert key[1] is False  # traced into the XLA program, not compiled apart
    ((plain_key, _),) = plain_optimizer._variable_step.batched_programs.items()
    assert plain_key[1] is True and plain_key[2:] == key[2:]
    # A second XLA model of the same structure reuses the traced steps.
    traced = batched.experimental_get_tracing_count()
    second_model, second = _fitted_default(x, y, True)
    assert list(second._variable_step.batched_programs.values()) == [batched]
    assert batched.experimental_get_tracing_count() == traced
    for a, b in zip(second_model.get_weights(), xla_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert int(xla_optimizer.iterations.numpy()) == 12
    initial = small_classifier(0).get_weights()
    for got, want, start in zip(xla_model.get_weights(), plain_model.get_weights(), initial):
        assert np.max(np.abs(want - start)) > 1e-3  # training moved the weights
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_batched_steps_match_the_per_variable_programs(monkeypatch, jit_compile):
    """The default's batched steps (groups of variables without XLA, all
    variables inside an XLA step) train as its per-variable programs do."""
    x, y = classification_data(n=16 * 12)
    batched_model, batched = _fitted_default(x, y, jit_compile)
    monkeypatch.setattr(compiled_update.VariableStep, "batches", lambda self: False)
    plain_model, plain = _fitted_default(x, y, jit_compile)
    assert batched._variable_step.batched_programs and not batched._variable_step.programs
    assert plain._variable_step.programs and not plain._variable_step.batched_programs
    initial = small_classifier(0).get_weights()
    for got, want, start in zip(batched_model.get_weights(), plain_model.get_weights(), initial):
        assert np.max(np.abs(want - start)) > 1e-3  # training moved the weights
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_xla_train_step_runs_per_variable_steps_where_tensorflow_cannot_say_it_is_xla(monkeypatch):
    """`tf.__internal__.get_enclosing_xla_context` is not a promised API:
    without it the XLA step calls the compiled group programs of a step
    without XLA (XLA inlines them), and trains the same."""
    x, y = classification_data(n=16 * 4)

    plain_model, _ = _fitted_default(x, y, False)
    monkeypatch.delattr(tf.__internal__, "get_enclosing_xla_context")
    model, optimizer = _fitted_default(x, y, True)
    ((key, _),) = optimizer._variable_step.batched_programs.items()
    assert key[1] is True
    assert int(optimizer.iterations.numpy()) == 4
    for got, want in zip(model.get_weights(), plain_model.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_optimizers_of_one_preset_share_update_programs_across_models():
    """A second model in the process (a cross-validation fold, a tuner
    trial) reuses the first one's update programs: no new trace, and no new
    program kept alive per optimizer (without XLA: an XLA train step traces
    the steps into its own program, see the test above)."""
    x, y = classification_data(n=32)

    def fitted(**kwargs):
        keras.utils.clear_session()
        keras.utils.set_random_seed(0)
        model = small_classifier()
        optimizer = LearnedOptimizer(**kwargs)
        model.compile(optimizer=optimizer, loss=LOSS, jit_compile=False)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        return model, optimizer

    first_model, first = fitted()
    counts = _tracing_counts()
    second_model, second = fitted()
    assert second._variable_step.batched_programs == first._variable_step.batched_programs
    assert _tracing_counts() == counts
    # Shared programs compute what the first optimizer's did.
    for a, b in zip(first_model.get_weights(), second_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Other settings get programs of their own.
    _, decayed = fitted(weight_decay=0.1)
    shared = set(map(id, first._variable_step.batched_programs.values()))
    assert shared
    assert not shared & set(map(id, decayed._variable_step.batched_programs.values()))


# TensorFlow operations that XLA's bridge lowers through an MLIR pipeline
# per use (tf2xla's MlirXlaOpKernel in TF 2.21): each costs milliseconds of
# compilation, where an operation with a direct lowering costs microseconds.
MLIR_LOWERED_OPS = {"Relu", "Tanh", "Exp", "Sqrt", "Rsqrt", "IsFinite", "Abs", "Sigmoid", "Sign", "Reciprocal"}


def _mlir_lowered_ops(num_variables):
    """`{op type: count}` of `MLIR_LOWERED_OPS` in the default's XLA update
    of `num_variables` (64,) variables as XLA's bridge lowers it: a nested
    function's operations counted once per call (XLA inlines each call)."""
    optimizer = LearnedOptimizer()
    apply, grads = _jitted_apply(optimizer, shapes=[(64,)] * num_variables)
    graph = apply.get_concrete_function(grads).graph.as_graph_def()
    library = {f.signature.name: f.node_def for f in graph.library.function}

    def counts_of(nodes):
        counts = {}
        for node in nodes:
            inner = {}
            if node.op in MLIR_LOWERED_OPS:
                inner = {node.op: 1}
            elif "f" in node.attr and node.attr["f"].func.name in library:
                inner = counts_of(library[node.attr["f"].func.name])
            for op, count in inner.items():
                counts[op] = counts.get(op, 0) + count
        return counts

    return counts_of(graph.node)


def test_default_step_lowers_one_costly_operation_per_variable():
    """Per variable the default's batched step has one operation that
    TensorFlow lowers to XLA the slow way (the `sqrt` of Adam's
    denominator), as Adam has (a variable over 4096 elements a second, for
    its alignment sample); what every variable shares (step features,
    bias corrections, the step sizes' `exp`) is computed once per step
    (BENCHMARKS.md, "The first call's XLA compilation")."""
    few, more = _mlir_lowered_ops(3), _mlir_lowered_ops(9)
    assert more.pop("Sqrt") - few.pop("Sqrt") == 6
    assert more == few


def _count(hlo, pattern, shape):
    """Occurrences of `pattern` with `shape` for `{shape}` in HLO text."""
    dims = ",".join(str(d) for d in shape)
    return len(re.findall(pattern.format(shape=rf"\[{dims}\]"), hlo))


def test_compiled_update_is_float32_with_one_network_and_four_reductions_per_variable():
    # A preset on the "full" features (the default reads the "local" ones:
    # see the next test).
    optimizer = LearnedOptimizer(preset="mlp_es_v4")
    apply, grads = _jitted_apply(optimizer)
    optimized = apply.experimental_get_compiler_ir(grads)(stage="optimized_hlo")
    lowered = apply.experimental_get_compiler_ir(grads)(stage="hlo")
    # float32 throughout: f64 is slow on GPUs and emulated on TPUs.
    assert "f64" not in optimized
    # No host round trips inside the step.
    for op in ("send(", "recv(", "infeed(", "outfeed("):
        assert op not in optimized
    # The network is evaluated once per element: XLA did not fuse it into
    # several consumers (which would cost a network per consumer).
    network = optimizer.network
    activation = ACTIVATION_OPS[network.activation]
    for shape in SHAPES:
        assert _count(optimized, r"= f32{shape}\S* exponential\(", shape) == 1
        hidden = _count(optimized, rf"= f32{{shape}}\S* {activation}\(", shape)
        assert hidden == sum(network.hidden_sizes), shape
    # Each whole-tensor reduction is a separate pass over the tensor: the rule
    # takes three statistics, the non-finite check one sum.
    for shape in SHAPES:
        assert _count(lowered, r" reduce\(\w+{shape}", shape) == 4, shape


def _run_benchmark(script, timeout):
    """`benchmarks/SCRIPT --quick` in a subprocess; its completed process,
    after asserting that it succeeded."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), "--quick"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_fresh_models_benchmark_runs_and_prints_every_row():
    lines = _run_benchmark("fresh_models.py", timeout=600).stdout.strip().splitlines()
    rows = [line.split(" | ")[:2] for line in lines if line.startswith(("| Adam |", "| LearnedOptimizer |"))]
    assert rows == [["| Adam", "yes"], ["| LearnedOptimizer", "yes"], ["| Adam", "no"], ["| LearnedOptimizer", "no"]]
    for mode in ("XLA", "no XLA"):
        ratio = [line for line in lines if line.startswith(f"ratio LearnedOptimizer/Adam, later fit, {mode}: ")]
        assert len(ratio) == 1 and float(ratio[0].rsplit(": ", 1)[1]) > 0, lines
        assert any(
            re.fullmatch(
                rf"memory growth per later model, {mode}: LearnedOptimizer -?[0-9.]+ MiB, Adam -?[0-9.]+ MiB", line
            )
            for line in lines
        ), lines


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_every_row():
    result = _run_benchmark("step_time.py", timeout=900)
    lines = result.stdout.strip().splitlines()
    prefix = "ratio LearnedOptimizer/Adam, "
    ratios = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    modes = ("XLA", "no XLA")
    expected = [f"first fit call, {n} variables, {mode}" for n in (6, 10, 14) for mode in modes]
    expected += [
        f"first fit call of a later model in the process, {n} variables, {mode}" for n in (6, 10, 14) for mode in modes
    ]
    expected += [
        f"short run, fit of 20 steps from its first call, residual MLP, 6 variables, batch 32, {mode}" for mode in modes
    ]
    expected += [
        f"fit step, {model}, {mode}"
        for model in ("residual MLP, 6 variables, batch 32", "MLP 784-32-10, batch 128")
        for mode in modes
    ]
    expected += [f"optimizer only, 25k, {mode}" for mode in modes]
    assert [r.rsplit(": ", 1)[0] for r in ratios] == expected
    for line in ratios:
        assert float(line.rsplit(": ", 1)[1]) > 0
    for label in expected:  # the table row, with both timings
        assert any(line.startswith(f"| {label} | ") for line in lines), label
    state = re.fullmatch(
        r"optimizer state, floats per parameter: "
        r"LearnedOptimizer ([0-9.]+), Adam ([0-9.]+)",
        lines[-1],
    )
    assert state, lines[-1]
    assert float(state.group(2)) == 2.0  # Adam's m and v: the count is right
    assert float(state.group(1)) <= 4.0  # the target of issue 7


@pytest.mark.parametrize("preset", ["local_preset", "mlp_local_es_v1"])
def test_local_preset_update_has_one_reduction_and_copies_no_slot(preset, request):
    """The "local" rule's only whole-tensor pass is the gradient check, and
    XLA writes the slots in place: the network reads the moments as stored
    (`rule.step_with_moments`), so no old slot value needs a copy. Checked on
    a random local preset and on the shipped per-parameter local MLP."""
    if preset == "local_preset":
        preset = request.getfixturevalue(preset)
    optimizer = LearnedOptimizer(preset=preset)
    assert optimizer._preset.feature_set == "local"
    apply, grads = _jitted_apply(optimizer)
    optimized = apply.experimental_get_compiler_ir(grads)(stage="optimized_hlo")
    assert "f64" not in optimized
    lowered = apply.experimental_get_compiler_ir(grads)(stage="hlo")
    network = optimizer.network
    activation = ACTIVATION_OPS[network.activation]
    for shape in SHAPES:
        assert _count(lowered, r" reduce\(\w+{shape}", shape) == 1, shape
        assert _count(optimized, r"= f32{shape}\S* copy\(", shape) == 0, shape
        assert _count(optimized, r"= f32{shape}\S* exponential\(", shape) == 1, shape
        hidden = _count(optimized, rf"= f32{{shape}}\S* {activation}\(", shape)
        assert hidden == sum(network.hidden_sizes), shape


def test_breakdown_variants_compile_and_run():
    """`step_time.py --breakdown` builds every variant for the local and the
    full per-parameter MLP rule (it reads the shipped presets)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("step_time", os.path.join(ROOT, "benchmarks", "step_time.py"))
    step_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_time)
    rows = step_time.breakdown(repeats=1, shape=(16, 8))
    names = [name for name, _ in rows]
    assert names[0] == "Adam (keras)"
    assert any(name.startswith("L4.") for name in names)
    assert any(name.startswith("F4.") for name in names)
    assert len(rows) == 10 and all(seconds > 0 for _, seconds in rows)


def test_jax_step_structure_benchmark_runs_and_its_structures_agree():
    """`benchmarks/jax_step_structure.py --quick` checks that its three plain
    structure variants compute the same update (else it fails) and prints a
    row per update with a positive time."""
    result = _run_benchmark("jax_step_structure.py", timeout=600)
    assert "structure variants agree: relative difference " in result.stdout
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row[0][2:] for row in rows[1:]]
    assert names == [
        "keras Adam",
        "LearnedOptimizer()",
        "Adam, plain JAX",
        "structure, per variable",
        "structure, per-variable tensor state",
        "structure, concatenated",
    ]
    for row in rows[1:]:
        assert int(row[1]) > 0 and float(row[2]) > 0
    assert "fit step, residual MLP, XLA: LearnedOptimizer " in result.stdout
    # Adam padded to LearnedOptimizer()'s number of optimizer variables.
    padded = re.search(r"Adam carrying (\d+) more optimizer arrays .* ms, ratio to Adam (\S+)", result.stdout)
    assert padded and int(padded.group(1)) > 0 and float(padded.group(2)) > 0
