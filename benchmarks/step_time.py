"""Time to first step and step time of LearnedOptimizer against Adam, in one run.

    python benchmarks/step_time.py [--backend tensorflow|jax|torch]
                                   [--preset NAME_OR_PATH] [--pin CORE] [--quick]
                                   [--sections first-call,short-run,fit,optimizer-only]
                                   [--sizes 10,50,200] [--repeats 2] [--short-steps 500,2000]
                                   [--rounds 6] [--steps 20] [--apply-repeats 60]
                                   [--large] [--breakdown] [--compilation-cache]

Every figure is measured for `keras_lopt.LearnedOptimizer(preset=preset)` (default:
the package's default preset) and for `keras.optimizers.Adam()` in the same
run, under the same load; the ratios LearnedOptimizer / Adam are the result.

* First `fit` call: tracing, compilation and one step of `model.fit` on
  residual MLPs with LayerNorm of 10, 50 and 200 trainable variables, with
  `jit_compile=True` (XLA) and `False` (Keras' default on CPU). Keras keeps
  a model's traced train function and the optimizer its compiled programs,
  so a first call needs a fresh model and a fresh optimizer. Each (size,
  XLA) case runs in a fresh process, which first trains an unrelated small
  model with SGD (so that TensorFlow's and Keras' one-time start-up is
  charged to neither side), then times Adam's and the learned optimizer's
  first call, each on a fresh model, in an order that alternates between
  repeats. The optimizers are built before the clock starts (loading a
  preset is timed apart). Median over `--repeats`. Then, in the same
  process, the first call of a second fresh model and optimizer of each
  (a cross-validation fold, a tuner trial): Keras traces the model's train
  function again, while the learned update's programs are shared
  (`compiled_update.VariableStep`). `--compilation-cache`: every measured
  process loads the XLA programs that an earlier, unmeasured process of the
  same cases compiled (`keras_lopt.enable_compilation_cache`), as every
  run of a script after the first does with it (both optimizers).
* Short run: what a user waits for in a short training, first call
  included: one `model.fit` of `--short-steps` steps (one epoch, batch 32)
  on a fresh 20-variable residual MLP, from the call to its return, with and
  without XLA; each (steps, XLA) case in a fresh process after the same
  start-up as the first calls, both optimizers in it, the order alternating
  between repeats; median over `--repeats`.
* Steady step: the median train step of `model.fit` on the 20-variable
  residual MLP (batch 32) and on a 1.07M-parameter MLP (batch 128), with and
  without XLA. The two optimizers alternate in rounds of `--steps` steps; a
  callback reads the loss as a float at the end of every batch, so each
  timed step includes the wait for its result (unsynchronised timings were
  bimodal on a loaded CPU).
* Optimizer only: `apply_gradients` on fixed random gradients inside a
  `tf.function`, with and without XLA, alternating the two optimizers call
  by call, at about 1M and 10M parameters.
* State: the optimizer's variables in floats per model parameter, without
  its scalars and the learned network's weights (1M MLP).

The last lines are the ratios, then the state. `--sections` runs some of
the parts only (the state comes with `fit`). `--pin CORE` pins the run
(and its child processes) to one core; by default it uses every core it is
given, as a user's training would. `--quick` runs small models, one repeat
and few steps, with all first calls in one child process (the test runs
it). `--large` adds the fit step of a 12.6M-parameter MLP (batch 128).
`--breakdown` first times the parts of the learned step on one 1024x1024
tensor under XLA, as cumulative variants of the update, for the per-parameter
MLP on the "local" features (mlp_local_es_v1) and on the "full" features
(mlp_es_v4), beside the default itself (see `breakdown`).

`--backend jax` runs Keras on JAX (both optimizers): the first-call and
fit sections, with XLA only (Keras' JAX train step runs eagerly without
it); `--backend torch` the same sections eagerly, as Keras runs PyTorch by
default (`--torch-compile` adds the fit step with `jit_compile=True`,
which Keras runs with torch.compile). The optimizer-only section and `--breakdown` time TensorFlow
functions and need the TensorFlow backend.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

BACKENDS = ("tensorflow", "jax", "torch")


def _backend_argument(parser):
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )


# Keras reads its backend when it is imported: parse it first.
_pre_parser = argparse.ArgumentParser(add_help=False)
_backend_argument(_pre_parser)
os.environ["KERAS_BACKEND"] = _pre_parser.parse_known_args()[0].backend
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The checkout this script is in, not whichever keras_lopt is installed
# (an editable install points at another worktree): comparing two commits
# means running each one's copy of this script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras  # noqa: E402
import numpy as np  # noqa: E402

if keras.backend.backend() == "tensorflow":
    # Only the TensorFlow sections use it: on JAX and PyTorch the
    # benchmark, like the optimizer, runs without TensorFlow installed.
    import tensorflow as tf  # noqa: E402

import keras_lopt  # noqa: E402
from keras_lopt import compiled_update, features, presets, rule  # noqa: E402
from keras_lopt.layers import BoundNetwork  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
CLASSES = 10
FIRST_CALL_SIZES = (10, 50, 200)
QUICK_FIRST_CALL_SIZES = (6, 10, 14)
FIRST_CALL_BATCH = 32
CHILD_TAG = "first call: "
SHORT_RUN_STEPS = (500, 2000)
QUICK_SHORT_RUN_STEPS = (20,)
SHORT_RUN_VARIABLES = 20
QUICK_SHORT_RUN_VARIABLES = 6
SECTIONS = ("first-call", "short-run", "fit", "optimizer-only")
TENSORFLOW_ONLY_SECTIONS = ("optimizer-only",)
# JAX: XLA only (Keras' JAX train step runs eagerly without it). PyTorch:
# eager, as Keras runs it by default (`jit_compile=True` is torch.compile).
JIT_COMPILE_CASES = {"tensorflow": (True, False), "jax": (True,), "torch": (False,)}[keras.backend.backend()]


def residual_mlp(num_variables, width=128, inputs=64):
    """A residual MLP with LayerNorm and exactly `num_variables` variables.

    Dense(width) stem, blocks `x + Dense(width, relu)(LayerNorm(x))` (4
    variables each), a final LayerNorm when the count needs two more, and a
    Dense(10) head: `num_variables` = 4 + 4 * blocks (+ 2).
    """
    blocks, rest = divmod(num_variables - 4, 4)
    if num_variables < 6 or rest not in (0, 2):
        raise ValueError(
            f"`num_variables` must be 4 + 4k or 6 + 4k (k >= 0), at least 6. Received: num_variables={num_variables}"
        )
    x_in = keras.Input((inputs,))
    x = keras.layers.Dense(width)(x_in)
    for _ in range(blocks):
        y = keras.layers.LayerNormalization()(x)
        x = keras.layers.Add()([x, keras.layers.Dense(width, activation="relu")(y)])
    if rest:
        x = keras.layers.LayerNormalization()(x)
    model = keras.Model(x_in, keras.layers.Dense(CLASSES)(x))
    assert len(model.trainable_variables) == num_variables
    return model, (inputs,)


def mlp(hidden, inputs):
    """An MLP `inputs -> hidden... -> 10` with ReLU."""
    layers = [keras.Input((inputs,))]
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers += [keras.layers.Dense(CLASSES)]
    return keras.Sequential(layers), (inputs,)


def fit_models(quick, large):
    """label -> (model builder, batch size) for the steady-step rows."""
    if quick:
        models = {
            "residual MLP, 6 variables, batch 32": (lambda: residual_mlp(6, 8, 8), 32),
            "MLP 784-32-10, batch 128": (lambda: mlp((32,), 784), 128),
        }
    else:
        models = {
            "residual MLP, 20 variables, batch 32": (lambda: residual_mlp(20), 32),
            "MLP 784-1024-256-10 (1.07M), batch 128": (
                lambda: mlp((1024, 256), 784),
                128,
            ),
        }
    if large:
        models["MLP 1024-4096-2048-10 (12.6M), batch 128"] = (
            lambda: mlp((4096, 2048), 1024),
            128,
        )
    return models


PRESET = None  # set from --preset in `main`


def make_optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam()
    return keras_lopt.LearnedOptimizer(preset=PRESET)


def optimizers():
    return {name: make_optimizer(name) for name in ("learned", "adam")}


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of each train batch, waiting for its loss."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])
        self.times.append(time.perf_counter() - self._start)


def make_data(input_shape, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype("float32")
    y = rng.integers(0, CLASSES, size=(n,)).astype("int32")
    return x, y


def first_fit_call(model, input_shape, optimizer, jit_compile, steps=1):
    """Seconds of the first `fit` call (`steps` steps) of a fresh model."""
    model.compile(optimizer=optimizer, loss=LOSS, jit_compile=jit_compile)
    x, y = make_data(input_shape, FIRST_CALL_BATCH * steps)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=FIRST_CALL_BATCH, epochs=1, verbose=0, shuffle=False)
    float(history.history["loss"][-1])
    return time.perf_counter() - start


def warm_up(jit_compiles):
    """TensorFlow's, Keras' and XLA's one-time start-up, charged to neither
    optimizer: the first call of a small unrelated model with SGD."""
    for jit_compile in sorted(set(jit_compiles)):
        warm = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(4),
                keras.layers.LayerNormalization(),
                keras.layers.Dense(CLASSES),
            ]
        )
        first_fit_call(warm, (4,), keras.optimizers.SGD(), jit_compile)


def run_first_calls(cases, order, width, inputs):
    """In a fresh process: warm up, then time first calls; prints JSON lines.

    Args:
        cases: list of `(num_variables, jit_compile)`.
        order: optimizer names in the order to time them.
    """
    warm_up(jit for _, jit in cases)
    for num_variables, jit_compile in cases:
        row = {"variables": num_variables, "jit_compile": jit_compile}
        for name in order:
            keras.utils.set_random_seed(0)
            model, shape = residual_mlp(num_variables, width, inputs)
            start = time.perf_counter()
            optimizer = make_optimizer(name)
            row[f"{name}_construction"] = time.perf_counter() - start
            row[name] = first_fit_call(model, shape, optimizer, jit_compile)
        # A later model of the same architecture in the same process (a
        # cross-validation fold, a tuner trial): fresh model and optimizer.
        for name in order:
            keras.utils.set_random_seed(1)
            model, shape = residual_mlp(num_variables, width, inputs)
            row[f"{name}_again"] = first_fit_call(model, shape, make_optimizer(name), jit_compile)
        print(CHILD_TAG + json.dumps(row), flush=True)


def run_short_runs(cases, order, num_variables, width, inputs):
    """In a fresh process: warm up, then time whole short `fit` calls of a
    fresh `residual_mlp(num_variables, width, inputs)` (first call
    included); prints JSON lines.

    Args:
        cases: list of `(steps, jit_compile)`.
        order: optimizer names in the order to time them.
    """
    warm_up(jit for _, jit in cases)
    for steps, jit_compile in cases:
        row = {"steps": steps, "jit_compile": jit_compile}
        for name in order:
            keras.utils.set_random_seed(0)
            model, shape = residual_mlp(num_variables, width, inputs)
            row[name] = first_fit_call(model, shape, make_optimizer(name), jit_compile, steps)
        print(CHILD_TAG + json.dumps(row), flush=True)


def child_rows(flag, cases, order, quick, cache=None):
    """Runs `run_first_calls` (`flag="--first-call-child"`) or
    `run_short_runs` (`"--short-run-child"`) in a fresh Python process;
    returns its rows.
    `cache`: a directory for `keras_lopt.enable_compilation_cache`, or None."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--backend",
        keras.backend.backend(),
        flag,
        ",".join(f"{n}:{int(jit)}" for n, jit in cases),
        "--order",
        ",".join(order),
    ]
    if PRESET:
        command += ["--preset", PRESET]
    if quick:
        command.append("--quick")
    if cache:
        command += ["--compilation-cache-directory", cache]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"first-call process failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return [json.loads(line[len(CHILD_TAG) :]) for line in result.stdout.splitlines() if line.startswith(CHILD_TAG)]


def time_first_calls(sizes, quick, repeats, compilation_cache=False):
    """`{(num_variables, jit_compile): {name: [seconds per repeat]}}`.

    `compilation_cache`: each measured process runs with
    `keras_lopt.enable_compilation_cache` on a new directory that a process
    before it (not measured) filled by running the same cases."""
    cases = [(n, jit) for n in sizes for jit in JIT_COMPILE_CASES]
    times = {}
    for repeat in range(repeats):
        order = ("adam", "learned") if repeat % 2 == 0 else ("learned", "adam")
        # Quick: one process for every case (the test checks the rows).
        batches = [cases] if quick else [[case] for case in cases]
        for batch in batches:
            cache = None
            if compilation_cache:
                cache = tempfile.mkdtemp(prefix="step_time_xla_cache_")
                child_rows("--first-call-child", batch, order, quick, cache)
            rows = child_rows("--first-call-child", batch, order, quick, cache)
            if cache:
                shutil.rmtree(cache, ignore_errors=True)
            for row in rows:
                entry = times.setdefault((row["variables"], row["jit_compile"]), {})
                for key in ("adam", "learned", "learned_construction", "adam_again", "learned_again"):
                    entry.setdefault(key, []).append(row[key])
    return times


def time_short_runs(step_counts, quick, repeats):
    """`{(steps, jit_compile): {name: [seconds per repeat]}}`: each case in
    a fresh process, the optimizers' order alternating between repeats."""
    times = {}
    for repeat in range(repeats):
        order = ("adam", "learned") if repeat % 2 == 0 else ("learned", "adam")
        for case in [(n, jit) for n in step_counts for jit in JIT_COMPILE_CASES]:
            for row in child_rows("--short-run-child", [case], order, quick):
                entry = times.setdefault((row["steps"], row["jit_compile"]), {})
                for name in ("adam", "learned"):
                    entry.setdefault(name, []).append(row[name])
    return times


def parse_cases(text):
    """`[(int, jit_compile)]` from a child's `"n:0,n:1"` argument."""
    return [(int(n), bool(int(jit))) for n, jit in (case.split(":") for case in text.split(","))]


def time_fit(build, batch_size, jit_compile, rounds, steps, optimizers_by_name=None):
    """Median fit step (s) per optimizer; the models. `optimizers_by_name`:
    the optimizers to alternate, by name (default: `optimizers()`)."""
    models, timers = {}, {}
    for name, opt in (optimizers_by_name or optimizers()).items():
        keras.utils.set_random_seed(0)
        model, input_shape = build()
        model.compile(optimizer=opt, loss=LOSS, jit_compile=jit_compile)
        models[name] = model
        timers[name] = StepTimer()
    x, y = make_data(input_shape, batch_size * steps)
    fit_args = dict(batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    for model in models.values():
        model.fit(x, y, **fit_args)
    for _ in range(rounds):
        for name, model in models.items():
            model.fit(x, y, callbacks=[timers[name]], **fit_args)
    return {k: float(np.median(t.times)) for k, t in timers.items()}, models


def time_apply(shapes, repeats, jit_compile):
    """Median `apply_gradients` time (s) per optimizer."""
    rng = np.random.default_rng(0)
    runs = {}
    for name, opt in optimizers().items():
        variables = [tf.Variable(rng.normal(0, 0.05, s).astype("float32")) for s in shapes]
        grads = [tf.constant(rng.normal(0, 1e-3, s).astype("float32")) for s in shapes]
        opt.build(variables)

        @tf.function(jit_compile=jit_compile)
        def apply(grads, opt=opt, variables=variables):
            opt.apply_gradients(zip(grads, variables))
            return opt.iterations + 0

        apply(grads).numpy()
        runs[name] = (apply, grads)
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for name, (apply, grads) in runs.items():
            start = time.perf_counter()
            apply(grads).numpy()
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def state_floats(opt):
    """Optimizer state elements, without scalars and the network's weights."""
    network = {id(v) for v in getattr(opt, "_network_weights", [])}
    return sum(int(np.prod(v.shape)) for v in opt.variables if id(v) not in network and len(v.shape) > 0)


def apply_shapes(quick):
    if quick:
        return {"25k": [(784, 32), (32,), (32, 10), (10,)]}
    return {
        "1M": [(784, 1024), (1024,), (1024, 256), (256,), (256, 10), (10,)],
        "10M": [(4096, 2048), (2048,), (2048, 1024), (1024,), (1024, 10), (10,)],
    }


def _state_update(gradient, state):
    """The rule's momenta and second-moment update (as in `rule.step`)."""
    momenta = [m + (gradient - m) * (1.0 - d) for m, d in zip(state.momenta, features.MOMENTUM_DECAYS)]
    second_moment = state.second_moment + (tf.square(gradient) - state.second_moment) * (
        1.0 - features.SECOND_MOMENT_DECAY
    )
    return momenta, second_moment


def breakdown(repeats, shape=(1024, 1024)):
    """Times cumulative variants of the learned step on one tensor (XLA).

    Each variant reads the parameter and the three state slots from
    variables and writes them back, so every one pays the same memory
    traffic for its inputs and outputs. Within each group the difference
    between consecutive rows is the cost of what the later row adds. The
    first group builds up the per-parameter MLP on the `"local"` features
    (`mlp_local_es_v1`), the second the `"full"` features of `mlp_es_v4`.

    Returns `[(name, median seconds)]`, Adam first.
    """
    rng = np.random.default_rng(0)
    gradient = tf.constant(rng.normal(0, 1e-3, shape).astype("float32"))
    lr = 1e-3

    def bound(preset):
        loaded = presets.load_preset(preset)
        network = BoundNetwork(loaded.network, [tf.constant(w) for w in loaded.weights])
        return network, loaded.feature_names

    local_network, local_names = bound("mlp_local_es_v1")
    full_network, full_names = bound("mlp_es_v4")

    def adam_like(g, p, state, iteration):
        momenta, second_moment = _state_update(g, state)
        new_p = p - lr * momenta[0] / (tf.sqrt(second_moment) + features.EPSILON)
        return new_p, momenta, second_moment, None

    def with_features(names):
        element_names = [n for n in names if n in features.ELEMENT_FEATURE_NAMES]

        def body(g, p, state, iteration):
            momenta, second_moment = _state_update(g, state)
            columns = features.element_features(
                g, p, momenta, second_moment, tf.cast(iteration, tf.float32), element_names
            )
            readout = tf.add_n([c * (0.1 * (i + 1)) for i, c in enumerate(columns)])
            return p - lr * readout, momenta, second_moment, None

        return body

    def with_network(network, names):
        def body(g, p, state, iteration):
            update, new_state = rule.step(network, state, g, p, iteration, 0.0, lr, feature_names=names)
            return p - update, list(new_state.momenta), new_state.second_moment, None

        return body

    def full_as_shipped(g, p, state, iteration):
        new_p, momenta, second_moment, _ = with_network(full_network, full_names)(g, p, state, iteration)
        return new_p, momenta, second_moment, compiled_update.all_finite(g, new_p)

    def local_as_shipped(g, p, state, iteration):
        # As `LearnedOptimizer.update_step` for local presets: check the
        # gradient, select the moments, then run the network on them.
        finite = tf.reduce_all(tf.math.is_finite(tf.square(g)))
        moved = rule.update_moments(state, g)
        kept = rule.RuleState(
            momenta=tuple(tf.where(finite, new, old) for new, old in zip(moved.momenta, state.momenta)),
            second_moment=tf.where(finite, moved.second_moment, state.second_moment),
        )
        update, _ = rule.step_with_moments(local_network, kept, g, p, iteration, 0.0, lr, feature_names=local_names)
        return tf.where(finite, p - update, p), list(kept.momenta), kept.second_moment, None

    def compile_variant(body):
        variables = [tf.Variable(rng.normal(0, 0.05, shape).astype("float32"))]
        variables += [tf.Variable(tf.zeros(shape)) for _ in rule.state_slot_names()]
        iteration = tf.Variable(0, dtype=tf.int64)

        @tf.function(jit_compile=True)
        def run(g):
            iteration.assign_add(1)
            old = [v.read_value() for v in variables]
            state = rule.unflatten_state(old[1:])
            new_p, momenta, second_moment, finite = body(g, old[0], state, iteration)
            for variable, before, after in zip(variables, old, (new_p, *momenta, second_moment)):
                variable.assign(after if finite is None else tf.where(finite, after, before))
            return iteration + 0

        return run

    def keras_variant(opt):
        variable = tf.Variable(rng.normal(0, 0.05, shape).astype("float32"))
        opt.build([variable])

        @tf.function(jit_compile=True)
        def run(g):
            opt.apply_gradients([(g, variable)])
            return opt.iterations + 0

        return run

    variants = {
        "Adam (keras)": keras_variant(keras.optimizers.Adam()),
        f"LearnedOptimizer() (keras, {presets.DEFAULT_PRESET})": keras_variant(keras_lopt.LearnedOptimizer()),
        "LearnedOptimizer(preset='mlp_es_v4') (keras)": keras_variant(keras_lopt.LearnedOptimizer(preset="mlp_es_v4")),
        "1. state update (3 slots) + Adam-like step": compile_variant(adam_like),
        "L2. + local element features (linear read-out)": compile_variant(with_features(local_names)),
        "L3. + network (rule.step), no non-finite check": compile_variant(with_network(local_network, local_names)),
        "L4. + gradient check, moments selected first (as shipped)": compile_variant(local_as_shipped),
        "F2. full element features (linear read-out)": compile_variant(with_features(full_names)),
        "F3. + network (rule.step), no non-finite check": compile_variant(with_network(full_network, full_names)),
        "F4. + check of gradient and new value (as shipped)": compile_variant(full_as_shipped),
    }
    for run in variants.values():
        run(gradient).numpy()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run(gradient).numpy()
            times[name].append(time.perf_counter() - start)
    return [(name, float(np.median(t))) for name, t in times.items()]


def platform():
    """The backend's framework version and the accelerators it sees."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        gpus = tf.config.list_physical_devices("GPU")
        return f"TensorFlow {tf.__version__}, GPUs: {len(gpus)}"
    if backend == "jax":
        import jax

        devices = jax.devices()
        return f"JAX {jax.__version__}, devices: {len(devices)} x {devices[0].device_kind}"
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"PyTorch {torch.__version__}, CUDA GPUs: {gpus or 0}"


def xla_label(jit_compile):
    if keras.backend.backend() == "torch":
        return "torch.compile" if jit_compile else "eager"
    return "XLA" if jit_compile else "no XLA"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _backend_argument(parser)
    parser.add_argument("--preset", help="preset name or directory (default: the default preset)")
    parser.add_argument("--pin", type=int, metavar="CORE", help="run on this core only")
    parser.add_argument("--repeats", type=int, default=2, help="first-call repeats")
    parser.add_argument(
        "--sizes",
        help=f"first-call model sizes in variables, comma-separated (default: {','.join(map(str, FIRST_CALL_SIZES))})",
    )
    parser.add_argument(
        "--short-steps",
        help=f"short-run lengths in steps, comma-separated (default: {','.join(map(str, SHORT_RUN_STEPS))})",
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating fit rounds")
    parser.add_argument("--steps", type=int, default=20, help="steps per fit round")
    parser.add_argument("--apply-repeats", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="small models, few steps (CI)")
    parser.add_argument("--large", action="store_true", help="also the fit step of a 12.6M-parameter MLP")
    parser.add_argument(
        "--sections",
        help=f"comma-separated, from {','.join(SECTIONS)} (default: all that run on the backend)",
    )
    parser.add_argument("--breakdown", action="store_true", help="also time the parts of the learned step")
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="PyTorch backend: also the fit step with jit_compile=True (torch.compile)",
    )
    parser.add_argument("--first-call-child", help=argparse.SUPPRESS)
    parser.add_argument("--short-run-child", help=argparse.SUPPRESS)
    parser.add_argument("--compilation-cache-directory", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compilation-cache",
        action="store_true",
        help="first calls in processes that load the programs an earlier process compiled "
        "(keras_lopt.enable_compilation_cache)",
    )
    parser.add_argument("--order", help=argparse.SUPPRESS)
    args = parser.parse_args()
    on_tensorflow = args.backend == "tensorflow"
    available = [s for s in SECTIONS if on_tensorflow or s not in TENSORFLOW_ONLY_SECTIONS]
    sections = args.sections.split(",") if args.sections else available
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown --sections {unknown}; expected names from {SECTIONS}")
    unavailable = sorted(set(sections) - set(available))
    if unavailable or (args.breakdown and not on_tensorflow):
        parser.error(
            f"--sections {unavailable or ''} and --breakdown need "
            f"--backend tensorflow. Received: --backend {args.backend}"
        )
    if args.torch_compile and args.backend != "torch":
        parser.error(f"--torch-compile needs --backend torch. Received: --backend {args.backend}")
    if args.pin is not None:
        # Before the first TensorFlow op sizes its thread pools; children
        # inherit it.
        os.sched_setaffinity(0, {args.pin})
        if keras.backend.backend() == "torch":
            # PyTorch sized its thread pool when Keras imported it: two
            # threads spinning on one core made every step ~50x slower.
            import torch

            torch.set_num_threads(1)
    global PRESET
    PRESET = args.preset
    # The child processes' model sizes.
    width, inputs = (8, 8) if args.quick else (128, 64)
    if args.first_call_child:
        cases = parse_cases(args.first_call_child)
        if args.compilation_cache_directory:
            keras_lopt.enable_compilation_cache(args.compilation_cache_directory)
        run_first_calls(cases, args.order.split(","), width, inputs)
        return
    if args.short_run_child:
        num_variables = QUICK_SHORT_RUN_VARIABLES if args.quick else SHORT_RUN_VARIABLES
        run_short_runs(parse_cases(args.short_run_child), args.order.split(","), num_variables, width, inputs)
        return
    if args.quick:
        args.repeats, args.rounds, args.steps, args.apply_repeats = 1, 1, 3, 5
    print(
        f"Keras {keras.__version__} on {keras.backend.backend()}, "
        f"{platform()}, "
        f"CPUs available to this process: {sorted(os.sched_getaffinity(0))}, "
        f"preset: {presets.load_preset(PRESET or presets.DEFAULT_PRESET).name}, "
        f"keras_lopt from {os.path.dirname(os.path.dirname(keras_lopt.__file__))}",
        flush=True,
    )

    if args.breakdown:
        rows = breakdown(args.apply_repeats)
        adam = rows[0][1]
        print("\n| one 1024x1024 tensor, XLA | ms | x Adam |")
        print("|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {1e3 * seconds:.2f} | {seconds / adam:.2f} |", flush=True)

    ratios = []
    print("\n| case | LearnedOptimizer | Adam | ratio |")
    print("|---|---|---|---|")

    def report(label, learned, adam, unit):
        scale, fmt = (1.0, "{:.2f} s") if unit == "s" else (1e3, "{:.2f} ms")
        ratio = learned / adam
        print(
            f"| {label} | {fmt.format(scale * learned)} | {fmt.format(scale * adam)} | {ratio:.2f} |",
            flush=True,
        )
        ratios.append((label, ratio))

    construction = []
    first_calls = {}
    if "first-call" in sections:
        sizes = QUICK_FIRST_CALL_SIZES if args.quick else FIRST_CALL_SIZES
        if args.sizes:
            sizes = [int(n) for n in args.sizes.split(",")]
        first_calls = time_first_calls(sizes, args.quick, args.repeats, args.compilation_cache)
    cached = ", compilation cache" if args.compilation_cache else ""
    for (num_variables, jit_compile), entry in first_calls.items():
        report(
            f"first fit call{cached}, {num_variables} variables, {xla_label(jit_compile)}",
            float(np.median(entry["learned"])),
            float(np.median(entry["adam"])),
            "s",
        )
        construction += entry["learned_construction"]
    for (num_variables, jit_compile), entry in first_calls.items():
        report(
            f"first fit call of a later model in the process{cached}, {num_variables} variables, "
            f"{xla_label(jit_compile)}",
            float(np.median(entry["learned_again"])),
            float(np.median(entry["adam_again"])),
            "s",
        )
    short_runs = {}
    if "short-run" in sections:
        step_counts = QUICK_SHORT_RUN_STEPS if args.quick else SHORT_RUN_STEPS
        if args.short_steps:
            step_counts = [int(n) for n in args.short_steps.split(",")]
        short_runs = time_short_runs(step_counts, args.quick, args.repeats)
    model_label = f"residual MLP, {QUICK_SHORT_RUN_VARIABLES if args.quick else SHORT_RUN_VARIABLES} variables"
    for (steps, jit_compile), entry in short_runs.items():
        report(
            f"short run, fit of {steps} steps from its first call, {model_label}, batch 32, {xla_label(jit_compile)}",
            float(np.median(entry["learned"])),
            float(np.median(entry["adam"])),
            "s",
        )
    state = {}
    fits = fit_models(args.quick, args.large) if "fit" in sections else {}
    fit_cases = JIT_COMPILE_CASES + ((True,) if args.torch_compile else ())
    for label, (build, batch_size) in fits.items():
        for jit_compile in fit_cases:
            medians, models = time_fit(build, batch_size, jit_compile, args.rounds, args.steps)
            report(
                f"fit step, {label}, {xla_label(jit_compile)}",
                medians["learned"],
                medians["adam"],
                "ms",
            )
            if label.startswith("MLP") and not state:
                params = models["adam"].count_params()
                state = {k: state_floats(m.optimizer) / params for k, m in models.items()}
    applies = apply_shapes(args.quick) if "optimizer-only" in sections else {}
    for size, shapes in applies.items():
        for jit_compile in (True, False):
            medians = time_apply(shapes, args.apply_repeats, jit_compile)
            report(
                f"optimizer only, {size}, {xla_label(jit_compile)}",
                medians["learned"],
                medians["adam"],
                "ms",
            )
    if construction:
        print(
            "\nLearnedOptimizer construction (loads the preset; not in the first "
            f"fit call): median {np.median(construction):.2f} s"
        )
    print()
    for label, ratio in ratios:
        print(f"ratio LearnedOptimizer/Adam, {label}: {ratio:.2f}")
    if state:
        print(
            f"optimizer state, floats per parameter: LearnedOptimizer {state['learned']:.2f}, Adam {state['adam']:.2f}"
        )


if __name__ == "__main__":
    main()
