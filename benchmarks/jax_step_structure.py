"""Where the default's JAX step goes on many small variables: the update's
structure against Adam's, in one run.

    python benchmarks/jax_step_structure.py [--model residual|large] [--pin CORE] [--calls 200] [--repeats 5]
                                            [--rounds 5] [--steps 100] [--quick]

On the 20 variables of `step_time.py`'s residual MLP (a 64x128 kernel,
four 128x128 ones, a 128x10 one, 14 vectors of 128 and one of 10; or,
with `--model large`, the 6 of its 12.6M-parameter MLP 1024-4096-2048-10), it
times one jitted call of each optimizer update below on fixed gradients
(best of `--repeats` means over `--calls` calls; the state is threaded
through, as in training) and counts the fused kernels of its optimised XLA
program:

* `keras Adam`: `keras.optimizers.Adam().stateless_apply`, the baseline.
* `LearnedOptimizer()`: the default preset's `stateless_apply`.
* `Adam, plain JAX`: Adam's update per variable in plain `jax.numpy`
  (bias-corrected, no finiteness check): a calibration, what the plain
  updates below would cost if they were Adam.
* `structure, per variable`: the default's update with its arithmetic cut
  to the structure it cannot lose, in plain `jax.numpy`: per variable the
  three moments (0.9, 0.99, 0.999), the six alignment sums plus a
  finiteness sum in one reduction, the per-tensor controller batched over
  the variables (one small vector computation), an Adam-like direction
  scaled by `exp` of the new log step, and the selection that keeps every
  output on a non-finite gradient.
* `structure, per-variable tensor state`: the same, but each variable's
  per-tensor state in arrays of its own, as `LearnedOptimizer` keeps it
  (one optimizer variable each): the controller's `[4]` and the loss
  statistics' `[3]`, which the update rewrites every step (the loss's
  kept, since on JAX `fit` passes no loss).
* `structure, concatenated`: the same on all variables concatenated into
  one vector (per-variable sums by slices, per-element step sizes by
  broadcasting), split back at the end.

Then the fit step of the residual MLP for both optimizers (as
`step_time.py`), and what the fit-step ratio would be with each update in
Adam's place: `(fit_adam - update_adam + update) / fit_adam`. That is an
estimate of what a rule of this structure can reach, not a measured step.
In the same rounds, the fit step of Adam carrying as many optimizer
variables as `LearnedOptimizer()` (`PaddedAdam`: the extra ones pass
through its step unchanged): what the number of optimizer arrays costs
Keras' JAX train step by itself.
The three plain structure variants are first checked to compute the same
update (after 3 steps, to 1e-5 relative); `--quick` runs a few calls and
steps only (the test runs it). Runs Keras on JAX (sets `KERAS_BACKEND`).
"""

import argparse
import os
import re
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
HERE = os.path.dirname(os.path.abspath(__file__))
# This checkout's keras_lopt, not an installed one (see step_time.py).
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lopt  # noqa: E402

DECAYS = (0.9, 0.99)
SECOND_MOMENT_DECAY = 0.999
EPSILON = 1e-8


def fusions(compiled):
    """Number of fused kernels in an optimised XLA program (multi-output
    fusions, whose type is a tuple, and the root included)."""
    return len(re.findall(r"^\s*(?:ROOT\s+)?\S+ = [^=]*?\bfusion\(", compiled.as_text(), re.M))


def time_calls(compiled, state, constant, calls, repeats):
    """Best mean time (s) of `calls` calls, threading `state` through."""
    state = compiled(*state, *constant)
    jax.block_until_ready(state)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            state = compiled(*state, *constant)
        jax.block_until_ready(state)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def keras_update(optimizer, variables, calls, repeats):
    """`(seconds, fusions)` of `optimizer.stateless_apply` on `variables`."""
    optimizer.build(variables)
    values = [v.value for v in variables]
    gradients = [jnp.full(v.shape, 1e-3, "float32") for v in values]

    def step(optimizer_values, trainable_values, gradients):
        trainable_values, optimizer_values = optimizer.stateless_apply(optimizer_values, gradients, trainable_values)
        return optimizer_values, trainable_values

    compiled = jax.jit(step).lower([v.value for v in optimizer.variables], values, gradients).compile()
    seconds = time_calls(compiled, ([v.value for v in optimizer.variables], values), (gradients,), calls, repeats)
    return seconds, fusions(compiled)


def _moments(g, slots):
    m_fast, m_slow, v = slots
    return (
        m_fast + (g - m_fast) * (1.0 - DECAYS[0]),
        m_slow + (g - m_slow) * (1.0 - DECAYS[1]),
        v + (g * g - v) * (1.0 - SECOND_MOMENT_DECAY),
    )


def _products(g, moved):
    """The alignment products of one (flat) tensor and a finiteness column."""
    m_fast, m_slow, v = moved
    inverse = 1.0 / (jnp.sqrt(v) + EPSILON)
    columns = [g * g, jnp.square(g * inverse)]
    for m, decay in zip((m_fast, m_slow), DECAYS):
        previous = (m - g * (1.0 - decay)) / decay * inverse
        columns += [g * previous, previous * previous]
    return columns + [g * g * 0.0], inverse


def _control(sums, control, sizes):
    """The per-tensor controller on `[V, 7]` sums and `[V, 4]` state."""
    cosines = [sums[:, 2 + 2 * k] * jax.lax.rsqrt(sums[:, 0] * sums[:, 3 + 2 * k] + 1e-30) for k in range(2)]
    averages = [control[:, 1 + k] + (c - control[:, 1 + k]) * 0.1 for k, c in enumerate(cosines)]
    square = sums[:, 0] / sizes
    change = 4.5 * (cosines[0] + averages[0]) + 0.5 + 0.1 * jnp.log(square / (control[:, 3] + 1e-30) + 1e-30)
    log_step = jnp.clip(control[:, 0] + 0.05 * jnp.tanh(change), -2.3, 2.3)
    finite = jnp.isfinite(sums[:, 6])
    new = jnp.stack([log_step, *averages, square], axis=-1)
    return log_step, jnp.where(finite[:, None], new, control), finite


def adam_plain(shapes):
    def step(params, slots, control, gradients, learning_rates):
        count = control[0, 0] + 1.0
        correction = jnp.sqrt(1.0 - SECOND_MOMENT_DECAY**count) / (1.0 - DECAYS[0] ** count)
        new_params, new_slots = [], []
        for i, (p, (m, _, v), g) in enumerate(zip(params, slots, gradients)):
            m = m + (g - m) * (1.0 - DECAYS[0])
            v = v + (g * g - v) * (1.0 - SECOND_MOMENT_DECAY)
            new_params.append(p - learning_rates[i] * correction * m / (jnp.sqrt(v) + EPSILON))
            new_slots.append((m, slots[i][1], v))
        return new_params, new_slots, control.at[0, 0].set(count)

    return step


def structure_per_variable(shapes, products=None, control_of=None, sizes=None):
    """The per-variable structure; `products`, `control_of` (as `_products`,
    `_control`) and the mean square's `sizes` (default: the element counts)
    replaceable, for estimates of other structures."""
    products = products or _products
    control_of = control_of or _control
    sizes = jnp.asarray([float(np.prod(s)) for s in shapes] if sizes is None else sizes)

    def step(params, slots, control, gradients, learning_rates):
        moved, sums, inverses = [], [], []
        for g, s in zip(gradients, slots):
            m = _moments(g, s)
            columns, inverse = products(g.reshape(-1), [x.reshape(-1) for x in m])
            moved.append(m)
            inverses.append(inverse.reshape(g.shape))
            sums.append(jnp.sum(jnp.stack(columns), axis=-1))
        log_step, control, finite = control_of(jnp.stack(sums), control, sizes)
        scale = learning_rates * jnp.exp(log_step)
        new_params, new_slots = [], []
        for i, (p, s, m, inverse) in enumerate(zip(params, slots, moved, inverses)):
            new_params.append(jnp.where(finite[i], p - scale[i] * m[0] * inverse, p))
            new_slots.append(tuple(jnp.where(finite[i], a, b) for a, b in zip(m, s)))
        return new_params, new_slots, control

    return step


def structure_per_variable_state(shapes):
    batched = structure_per_variable(shapes)

    def step(params, slots, control, gradients, learning_rates):
        (control, loss_statistics) = control
        params, slots, new = batched(params, slots, jnp.stack(control), gradients, learning_rates)
        # Without a loss the loss statistics are returned as they were.
        return params, slots, (list(new), loss_statistics)

    return step


def structure_concatenated(shapes):
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0, *sizes])
    size_vector = jnp.asarray(sizes, "float32")

    def flat(xs):
        return jnp.concatenate([x.reshape(-1) for x in xs])

    def per_element(x):
        return jnp.concatenate([jnp.broadcast_to(x[i], (n,)) for i, n in enumerate(sizes)])

    def split(x):
        return [x[offsets[i] : offsets[i + 1]].reshape(s) for i, s in enumerate(shapes)]

    def step(params, slots, control, gradients, learning_rates):
        g = flat(gradients)
        old = [flat([s[k] for s in slots]) for k in range(3)]
        moved = _moments(g, old)
        columns, inverse = _products(g, moved)
        products = jnp.stack(columns, axis=-1)
        sums = jnp.stack([products[offsets[i] : offsets[i + 1]].sum(0) for i in range(len(sizes))])
        log_step, control, finite = _control(sums, control, size_vector)
        keep = per_element(finite)
        p = flat(params)
        new_p = jnp.where(keep, p - per_element(learning_rates * jnp.exp(log_step)) * moved[0] * inverse, p)
        new_moments = [split(jnp.where(keep, a, b)) for a, b in zip(moved, old)]
        return split(new_p), [tuple(m[i] for m in new_moments) for i in range(len(sizes))], control

    return step


def _initial_control(make, shapes):
    """The zero per-tensor state a structure update `make` threads through."""
    if make is structure_per_variable_state:
        return [jnp.zeros(4, "float32") for _ in shapes], [jnp.zeros(3, "float32") for _ in shapes]
    return jnp.zeros((len(shapes), 4), "float32")


def _inputs(shapes):
    rng = np.random.default_rng(0)
    params = [jnp.asarray(rng.normal(size=s), "float32") for s in shapes]
    gradients = [jnp.asarray(rng.normal(size=s) * 1e-3, "float32") for s in shapes]
    slots = [tuple(jnp.zeros(s, "float32") for _ in range(3)) for s in shapes]
    return params, gradients, slots, jnp.full((len(shapes),), 3e-3, "float32")


def check_structures_agree(shapes, steps=3):
    """The largest difference between the parameter changes of the
    per-variable structure and the other two after `steps` steps, relative
    to the largest change of each tensor; raises if over 1e-5."""
    results = []
    start = _inputs(shapes)[0]
    for make in (structure_per_variable, structure_per_variable_state, structure_concatenated):
        params, gradients, slots, learning_rates = _inputs(shapes)
        control = _initial_control(make, shapes)
        step = jax.jit(make(shapes))
        for _ in range(steps):
            params, slots, control = step(params, slots, control, gradients, learning_rates)
        results.append([p - p0 for p, p0 in zip(params, start)])
    worst = max(
        float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for other in results[1:] for a, b in zip(other, results[0])
    )
    if not worst <= 1e-5:
        raise AssertionError(f"The structure variants disagree: relative difference {worst}")
    return worst


def structure_update(make, shapes, calls, repeats):
    """`(seconds, fusions)` of a plain-JAX structure update."""
    params, gradients, slots, learning_rates = _inputs(shapes)
    control = _initial_control(make, shapes)
    compiled = jax.jit(make(shapes)).lower(params, slots, control, gradients, learning_rates).compile()
    seconds = time_calls(compiled, (params, slots, control), (gradients, learning_rates), calls, repeats)
    return seconds, fusions(compiled)


# --model -> its name in the output.
MODEL_LABELS = {"residual": "residual MLP", "large": "MLP 1024-4096-2048-10 (12.6M)"}
# --model -> (step_time) -> (model builder, batch size).
MODELS = {
    "residual": lambda step_time: (lambda: step_time.residual_mlp(20), 32),
    "large": lambda step_time: (lambda: step_time.mlp((4096, 2048), 1024), 128),
}


class PaddedAdam(keras.optimizers.Adam):
    """Keras' Adam with `padding` more optimizer variables of shape `[4]`
    that its step leaves as they are: what the number of optimizer arrays
    alone costs Keras' JAX train step (each is an input and an output of
    the jitted step, and Keras' trainer walks them every step)."""

    def __init__(self, padding, **kwargs):
        super().__init__(**kwargs)
        self._padding = padding

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._padded = [
            self.add_variable(shape=(4,), dtype="float32", name=f"padding_{i}") for i in range(self._padding)
        ]


def time_fit_with_padded_adam(step_time, build, batch_size, rounds, steps):
    """`step_time.time_fit`'s medians (s) of Adam and `LearnedOptimizer()`,
    and of a `PaddedAdam` with as many optimizer variables as the latter
    (`padded`; `padding`: how many it adds), the three alternating."""
    models, timers = {}, {}
    for name in ("learned", "adam", "padded"):
        keras.utils.set_random_seed(0)
        model, input_shape = build()
        if name == "padded":
            padding = len(models["learned"].optimizer.variables) - len(models["adam"].optimizer.variables)
            optimizer = PaddedAdam(padding)
        else:
            optimizer = step_time.make_optimizer(name)
        model.compile(optimizer=optimizer, loss=step_time.LOSS, jit_compile=True)
        models[name] = model
        timers[name] = step_time.StepTimer()
        x, y = step_time.make_data(input_shape, batch_size * steps)
        # Builds the optimizer (the padding needs the variable counts).
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    fit_args = dict(batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    for _ in range(rounds):
        for name, model in models.items():
            model.fit(x, y, callbacks=[timers[name]], **fit_args)
    result = {name: float(np.median(t.times)) for name, t in timers.items()}
    result["padding"] = padding
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", type=int, metavar="CORE", help="run on this core only")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="fit rounds (step_time.py)")
    parser.add_argument("--steps", type=int, default=100, help="steps per fit round")
    parser.add_argument("--quick", action="store_true", help="a few calls and steps (CI)")
    parser.add_argument(
        "--model",
        choices=tuple(MODELS),
        default="residual",
        help="the variables: the residual MLP's 20 (default) or the 12.6M-parameter MLP's 6 (batch 128)",
    )
    args = parser.parse_args()
    if args.quick:
        args.calls, args.repeats, args.rounds, args.steps = 3, 1, 1, 5
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    import step_time

    step_time.PRESET = None
    build, batch_size = MODELS[args.model](step_time)
    model = build()[0]
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    print(f"keras_lopt from {os.path.dirname(keras_lopt.__file__)}, CPUs {sorted(os.sched_getaffinity(0))}")
    print(f"{len(shapes)} variables: {shapes}")
    print(f"structure variants agree: relative difference {check_structures_agree(shapes):.1e}\n")
    rows = {
        "keras Adam": keras_update(keras.optimizers.Adam(), model.trainable_variables, args.calls, args.repeats),
        "LearnedOptimizer()": keras_update(
            keras_lopt.LearnedOptimizer(), build()[0].trainable_variables, args.calls, args.repeats
        ),
        "Adam, plain JAX": structure_update(adam_plain, shapes, args.calls, args.repeats),
        "structure, per variable": structure_update(structure_per_variable, shapes, args.calls, args.repeats),
        "structure, per-variable tensor state": structure_update(
            structure_per_variable_state, shapes, args.calls, args.repeats
        ),
        "structure, concatenated": structure_update(structure_concatenated, shapes, args.calls, args.repeats),
    }
    fit = time_fit_with_padded_adam(step_time, build, batch_size, args.rounds, args.steps)
    fit_adam = fit["adam"]
    adam_update = rows["keras Adam"][0]
    print("| update | fused kernels | ms per call | ratio to Adam's | fit-step ratio with it in Adam's place |")
    print("|---|---|---|---|---|")
    for name, (seconds, count) in rows.items():
        estimate = (fit_adam - adam_update + seconds) / fit_adam
        print(f"| {name} | {count} | {seconds * 1e3:.3f} | {seconds / adam_update:.2f} | {estimate:.2f} |")
    print(
        f"\nfit step, {MODEL_LABELS[args.model]}, XLA: LearnedOptimizer {fit['learned'] * 1e3:.2f} ms, "
        f"Adam {fit_adam * 1e3:.2f} ms, ratio {fit['learned'] / fit_adam:.2f}"
    )
    print(
        f"fit step, {MODEL_LABELS[args.model]}, XLA: Adam carrying {fit['padding']} more optimizer arrays "
        f"(as many as LearnedOptimizer has; its step leaves them as they are) {fit['padded'] * 1e3:.2f} ms, "
        f"ratio to Adam {fit['padded'] / fit_adam:.2f}"
    )


if __name__ == "__main__":
    main()
