# ruff: noqa: E402
"""Scratch (2026-12-05, thirteenth session): what a rule of the default's
structure would cost if its per-tensor controller read the previous
step's statistics and non-finite gradients were kept out per element, in
plain JAX beside `jax_step_structure.py`'s "structure, per variable".

`structure, per variable` (as measured there): per variable the three
moments, the alignment sums and a finiteness sum in one reduction, the
batched controller, then the step scaled by the new log step, every output
kept on a non-finite gradient. `structure, lagged`: per variable the three
moments and the step with the log step the controller wrote at the previous
step (so the step waits for no reduction), non-finite gradient elements
keeping their old values elementwise (no per-variable check), and the
alignment sums of this step reduced for the controller, which writes the
next step's log step. `structure, slow alignment only`: the per-variable
structure with four alignment products instead of six (the squared
gradient, its normalised square, the slow momentum's product and square;
no fast-momentum alignment). `sampled` variants: the alignment products
over the sample the shipped rule reads (`features.alignment_sample_stride`:
every element up to 4096, else a prime stride), as `LearnedOptimizer` does
and `jax_step_structure.py`'s structure does not. Not rules of this
project: estimates of what such a rule's update would cost. Prints fused
kernels, XLA compile seconds and the best mean call time on the
10-variable and the 20-variable residual MLPs' shapes, e.g. `taskset -c 1 python lagged_structure.py`."""

import os
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import jax
import jax.numpy as jnp
import jax_step_structure as structure
from jax_step_structure import _control, _inputs, _moments, _products, fusions, time_calls

from keras_lopt import features


def structure_lagged(shapes):
    sizes = jnp.asarray([float(structure.np.prod(s)) for s in shapes])

    def step(params, slots, control, gradients, learning_rates):
        scale = learning_rates * jnp.exp(control[:, 0])
        new_params, new_slots, sums = [], [], []
        for i, (p, s, g) in enumerate(zip(params, slots, gradients)):
            finite = jnp.isfinite(g)
            g = jnp.where(finite, g, 0.0)
            moved = _moments(g, s)
            moved = tuple(jnp.where(finite, a, b) for a, b in zip(moved, s))
            columns, inverse = _products(g.reshape(-1), [x.reshape(-1) for x in moved])
            sums.append(jnp.sum(jnp.stack(columns), axis=-1))
            new_params.append(jnp.where(finite, p - scale[i] * moved[0] * inverse.reshape(g.shape), p))
            new_slots.append(moved)
        _, control, _ = _control(jnp.stack(sums), control, sizes)
        return new_params, new_slots, control

    return step


def _slow_products(g, moved):
    """`_products` without the fast momentum's two columns."""
    _, m_slow, v = moved
    inverse = 1.0 / (jnp.sqrt(v) + structure.EPSILON)
    previous = (m_slow - g * (1.0 - structure.DECAYS[1])) / structure.DECAYS[1] * inverse
    return [g * g, jnp.square(g * inverse), g * previous, previous * previous, g * g * 0.0], inverse


def _slow_control(sums, control, sizes):
    """`_control` on the slow momentum's alignment alone (`[V, 5]` sums)."""
    cosine = sums[:, 2] * jax.lax.rsqrt(sums[:, 1] * sums[:, 3] + 1e-30)
    average = control[:, 2] + (cosine - control[:, 2]) * 0.1
    square = sums[:, 0] / sizes
    change = 4.5 * (cosine + average) + 0.5 + 0.1 * jnp.log(square / (control[:, 3] + 1e-30) + 1e-30)
    log_step = jnp.clip(control[:, 0] + 0.05 * jnp.tanh(change), -2.3, 2.3)
    finite = jnp.isfinite(sums[:, 4])
    new = jnp.stack([log_step, control[:, 1], average, square], axis=-1)
    return log_step, jnp.where(finite[:, None], new, control), finite


def structure_slow_only(shapes):
    return structure.structure_per_variable(shapes, _slow_products, _slow_control)


def sampled(products):
    """`products` over the shipped rule's alignment sample of each tensor."""

    def sampled_products(g, moved):
        stride = features.alignment_sample_stride(g.shape[0])
        columns, inverse = products(g[::stride], [x[::stride] for x in moved])
        if stride == 1:
            return columns, inverse
        return columns, 1.0 / (jnp.sqrt(moved[2]) + structure.EPSILON)

    return sampled_products


def sampled_structure(products, control):
    """The per-variable structure with `products` over the rule's sample."""

    def make(shapes):
        sizes = [features.alignment_sample_count(int(structure.np.prod(s))) for s in shapes]
        return structure.structure_per_variable(shapes, sampled(products), control, sizes)

    return make


def measure(make, shapes, calls=200, repeats=5):
    params, gradients, slots, learning_rates = _inputs(shapes)
    control = jnp.zeros((len(shapes), 4), "float32")
    lowered = jax.jit(make(shapes)).lower(params, slots, control, gradients, learning_rates)
    start = time.perf_counter()
    compiled = lowered.compile()
    seconds = time.perf_counter() - start
    call = time_calls(compiled, (params, slots, control), (gradients, learning_rates), calls, repeats)
    return fusions(compiled), seconds, call


TEN = [(64, 128), (128,), (128,), (128,), (128, 128), (128,), (128,), (128,), (128, 10), (10,)]
TWENTY = [(64, 128), (128,)] + [(128,), (128,), (128, 128), (128,)] * 4 + [(128, 10), (10,)]
for label, shapes in (("10 variables", TEN), ("20 variables", TWENTY)):
    variants = (
        ("per variable", structure.structure_per_variable),
        ("lagged", structure_lagged),
        ("slow alignment only", structure_slow_only),
        ("per variable, sampled", sampled_structure(_products, _control)),
        ("slow alignment only, sampled", sampled_structure(_slow_products, _slow_control)),
    )
    for name, make in variants:
        kernels, compile_seconds, call = measure(make, shapes)
        print(
            f"{label}, structure {name}: {kernels} fused kernels, XLA compile {compile_seconds:.2f} s, "
            f"{call * 1e3:.3f} ms a call"
        )
