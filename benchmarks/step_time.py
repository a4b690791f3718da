"""Step time of LearnedOptimizer against Adam, measured in the same run.

    python benchmarks/step_time.py [--preset NAME_OR_PATH] [--rounds 6] [--steps 20]
                                   [--quick] [--breakdown]

For each model it trains one copy with `keras_lopt.LearnedOptimizer(preset=preset)`
(default: the package's default preset) and
one with `keras.optimizers.Adam()` (`model.fit`, `jit_compile=True`), in
alternating rounds of `--steps` steps so that both see the same machine
load, and reports the median time of a train step. A callback reads the loss
as a float at the end of every batch, so each timed step includes the wait
for its result (unsynchronised timings were bimodal on a loaded CPU). The
first `fit` of each model (tracing and XLA compilation) is timed apart.

It also times the optimizer alone: `apply_gradients` on fixed random
gradients inside `tf.function(jit_compile=True)`, alternating the two
optimizers call by call, at about 1M and 10M parameters.

The last lines are the ratios LearnedOptimizer / Adam (medians), then the
optimizer state in floats per model parameter: the sizes of the optimizer's
variables, without its scalars and the learned network's weights, divided
by the number of model parameters.

`--breakdown` first times the parts of the learned step on one 1024x1024
tensor under XLA, as cumulative variants of the update, for the default's
"local" rule and for the "full" rule of mlp_es_v4 (see `breakdown`).
Pin the process to one core (`taskset -c 1`) on a shared machine.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lopt  # noqa: E402
from keras_lopt import features, optimizer, presets, rule  # noqa: E402
from keras_lopt.layers import BoundNetwork  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(quick):
    """784 -> 1024 -> 256 -> 10: 1.07M parameters (quick: 784 -> 32 -> 10)."""
    hidden = (32,) if quick else (1024, 256)
    layers = [keras.Input((784,))]
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers += [keras.layers.Dense(10)]
    return keras.Sequential(layers), (784,), 10, None


def conv(quick):
    """Three 3x3 convolutions (32, 64, 64 filters) on 32x32x3 images.

    quick: one convolution with 4 filters on 8x8x3 images.
    """
    size, widths = (8, (4,)) if quick else (32, (32, 64, 64))
    layers = [keras.Input((size, size, 3))]
    for i, width in enumerate(widths):
        if i:
            layers.append(keras.layers.MaxPooling2D())
        layers.append(keras.layers.Conv2D(width, 3, activation="relu", padding="same"))
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers), (size, size, 3), 10, None


def lstm(quick):
    """Embedding(10000, 64) + LSTM(128) on sequences of 50 tokens (quick: smaller)."""
    vocab, embed, units, length = (100, 8, 8, 10) if quick else (10000, 64, 128, 50)
    model = keras.Sequential(
        [
            keras.Input((length,), dtype="int32"),
            keras.layers.Embedding(vocab, embed),
            keras.layers.LSTM(units),
            keras.layers.Dense(2),
        ]
    )
    return model, (length,), 2, vocab


MODELS = {"mlp": mlp, "conv": conv, "lstm": lstm}


PRESET = None  # set from --preset in `main`


def optimizers():
    return {
        "learned": keras_lopt.LearnedOptimizer(preset=PRESET),
        "adam": keras.optimizers.Adam(),
    }


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


def make_data(input_shape, classes, vocab, n, seed=0):
    rng = np.random.default_rng(seed)
    if vocab is None:
        x = rng.normal(size=(n, *input_shape)).astype("float32")
    else:
        x = rng.integers(0, vocab, size=(n, *input_shape)).astype("int32")
    y = rng.integers(0, classes, size=(n,)).astype("int32")
    return x, y


def time_fit(name, batch_size, rounds, steps, quick):
    """Median fit step (s) and first-fit time (s) per optimizer; the models."""
    models, timers, first = {}, {}, {}
    for opt_name, opt in optimizers().items():
        keras.utils.set_random_seed(0)
        model, input_shape, classes, vocab = MODELS[name](quick)
        model.compile(optimizer=opt, loss=LOSS, jit_compile=True)
        models[opt_name] = model
        timers[opt_name] = StepTimer()
    x, y = make_data(input_shape, classes, vocab, batch_size * steps)
    fit_args = dict(batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    for opt_name, model in models.items():
        start = time.perf_counter()
        model.fit(x, y, **fit_args)
        first[opt_name] = time.perf_counter() - start
    for _ in range(rounds):
        for opt_name, model in models.items():
            model.fit(x, y, callbacks=[timers[opt_name]], **fit_args)
    medians = {k: float(np.median(t.times)) for k, t in timers.items()}
    return medians, first, models


def time_apply(shapes, repeats):
    """Median `apply_gradients` time (s) and first-call time (s) per optimizer."""
    rng = np.random.default_rng(0)
    runs, first = {}, {}
    for opt_name, opt in optimizers().items():
        variables = [
            tf.Variable(rng.normal(0, 0.05, s).astype("float32")) for s in shapes
        ]
        grads = [tf.constant(rng.normal(0, 1e-3, s).astype("float32")) for s in shapes]
        opt.build(variables)

        @tf.function(jit_compile=True)
        def apply(grads, opt=opt, variables=variables):
            opt.apply_gradients(zip(grads, variables))
            return opt.iterations + 0

        start = time.perf_counter()
        apply(grads).numpy()
        first[opt_name] = time.perf_counter() - start
        runs[opt_name] = (apply, grads)
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for opt_name, (apply, grads) in runs.items():
            start = time.perf_counter()
            apply(grads).numpy()
            times[opt_name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}, first


def state_floats(opt):
    """Optimizer state elements, without scalars and the network's weights."""
    network = {id(v) for v in getattr(opt, "_network_weights", [])}
    return sum(
        int(np.prod(v.shape))
        for v in opt.variables
        if id(v) not in network and len(v.shape) > 0
    )


def apply_shapes(quick):
    if quick:
        return {"25k": [(784, 32), (32,), (32, 10), (10,)]}
    return {
        "1M": [(784, 1024), (1024,), (1024, 256), (256,), (256, 10), (10,)],
        "10M": [(4096, 2048), (2048,), (2048, 1024), (1024,), (1024, 10), (10,)],
    }


def _state_update(gradient, state):
    """The rule's momenta and second-moment update (as in `rule.step`)."""
    momenta = [
        m + (gradient - m) * (1.0 - d)
        for m, d in zip(state.momenta, features.MOMENTUM_DECAYS)
    ]
    second_moment = state.second_moment + (
        tf.square(gradient) - state.second_moment
    ) * (1.0 - features.SECOND_MOMENT_DECAY)
    return momenta, second_moment


def breakdown(repeats, shape=(1024, 1024)):
    """Times cumulative variants of the learned step on one tensor (XLA).

    Each variant reads the parameter and the three state slots from
    variables and writes them back, so every one pays the same memory
    traffic for its inputs and outputs. Within each group the difference
    between consecutive rows is the cost of what the later row adds. The
    first group builds up the default's rule (`"local"` features), the second
    the `"full"` features of `mlp_es_v4`.

    Returns `[(name, median seconds)]`, Adam first.
    """
    rng = np.random.default_rng(0)
    gradient = tf.constant(rng.normal(0, 1e-3, shape).astype("float32"))
    lr = 1e-3

    def bound(preset):
        loaded = presets.load_preset(preset)
        network = BoundNetwork(loaded.network, [tf.constant(w) for w in loaded.weights])
        return network, loaded.feature_names

    local_network, local_names = bound(presets.DEFAULT_PRESET)
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
            update, new_state = rule.step(
                network, state, g, p, iteration, 0.0, lr, feature_names=names
            )
            return p - update, list(new_state.momenta), new_state.second_moment, None

        return body

    def full_as_shipped(g, p, state, iteration):
        new_p, momenta, second_moment, _ = with_network(full_network, full_names)(
            g, p, state, iteration
        )
        return new_p, momenta, second_moment, optimizer._all_finite(g, new_p)

    def local_as_shipped(g, p, state, iteration):
        # As `LearnedOptimizer.update_step` for local presets: check the
        # gradient, select the moments, then run the network on them.
        finite = tf.reduce_all(tf.math.is_finite(tf.square(g)))
        moved = rule.update_moments(state, g)
        kept = rule.RuleState(
            momenta=tuple(
                tf.where(finite, new, old) for new, old in zip(moved.momenta, state.momenta)
            ),
            second_moment=tf.where(finite, moved.second_moment, state.second_moment),
        )
        update, _ = rule.step_with_moments(
            local_network, kept, g, p, iteration, 0.0, lr, feature_names=local_names
        )
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
            for variable, before, after in zip(
                variables, old, (new_p, *momenta, second_moment)
            ):
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
        f"LearnedOptimizer() (keras, {presets.DEFAULT_PRESET})": keras_variant(
            keras_lopt.LearnedOptimizer()
        ),
        "LearnedOptimizer(preset='mlp_es_v4') (keras)": keras_variant(
            keras_lopt.LearnedOptimizer(preset="mlp_es_v4")
        ),
        "1. state update (3 slots) + Adam-like step": compile_variant(adam_like),
        "L2. + local element features (linear read-out)": compile_variant(
            with_features(local_names)
        ),
        "L3. + network (rule.step), no non-finite check": compile_variant(
            with_network(local_network, local_names)
        ),
        "L4. + gradient check, moments selected first (as shipped)": compile_variant(
            local_as_shipped
        ),
        "F2. full element features (linear read-out)": compile_variant(
            with_features(full_names)
        ),
        "F3. + network (rule.step), no non-finite check": compile_variant(
            with_network(full_network, full_names)
        ),
        "F4. + check of gradient and new value (as shipped)": compile_variant(
            full_as_shipped
        ),
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset", help="preset name or directory (default: the default preset)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating fit rounds")
    parser.add_argument("--steps", type=int, default=20, help="steps per fit round")
    parser.add_argument("--apply-repeats", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="small models, few steps (CI)")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the parts of the learned step"
    )
    args = parser.parse_args()
    global PRESET
    PRESET = args.preset
    if args.quick:
        args.rounds, args.steps, args.apply_repeats = 1, 5, 10
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"CPUs available to this process: {sorted(os.sched_getaffinity(0))}, "
        f"preset: {presets.load_preset(PRESET or presets.DEFAULT_PRESET).name}"
    )

    if args.breakdown:
        rows = breakdown(args.apply_repeats)
        adam = rows[0][1]
        print("\n| one 1024x1024 tensor, XLA | ms | x Adam |")
        print("|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {1e3 * seconds:.2f} | {seconds / adam:.2f} |", flush=True)

    ratios, state = [], {}
    print(
        "\n| case | parameters | LearnedOptimizer ms | Adam ms | ratio "
        "| first call s (Learned / Adam) |"
    )
    print("|---|---|---|---|---|---|")

    def report(label, params, medians, first):
        ratio = medians["learned"] / medians["adam"]
        print(
            f"| {label} | {params:,} | {1e3 * medians['learned']:.2f} | "
            f"{1e3 * medians['adam']:.2f} | {ratio:.2f} | "
            f"{first['learned']:.1f} / {first['adam']:.1f} |",
            flush=True,
        )
        ratios.append((label, ratio))

    for name, batch_size in (("mlp", 128), ("conv", 64), ("lstm", 64)):
        medians, first, models = time_fit(
            name, batch_size, args.rounds, args.steps, args.quick
        )
        params = models["adam"].count_params()
        report(f"fit step, {name}, batch {batch_size}", params, medians, first)
        if name == "mlp":
            state = {k: state_floats(m.optimizer) / params for k, m in models.items()}
    for size, shapes in apply_shapes(args.quick).items():
        medians, first = time_apply(shapes, args.apply_repeats)
        params = sum(int(np.prod(s)) for s in shapes)
        report(f"optimizer only, {size}", params, medians, first)
    print()
    for label, ratio in ratios:
        print(f"ratio LearnedOptimizer/Adam, {label}: {ratio:.2f}")
    print(
        "optimizer state, floats per parameter: "
        f"LearnedOptimizer {state['learned']:.2f}, Adam {state['adam']:.2f}"
    )


if __name__ == "__main__":
    main()
