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
next step's log step. Not a rule of this project: an estimate of what such
a rule's update would cost. Prints fused kernels, XLA compile seconds and
the best mean call time on the 10-variable and the 20-variable residual
MLPs' shapes, e.g. `taskset -c 1 python lagged_structure.py`."""

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
    for name, make in (("per variable", structure.structure_per_variable), ("lagged", structure_lagged)):
        kernels, compile_seconds, call = measure(make, shapes)
        print(
            f"{label}, structure {name}: {kernels} fused kernels, XLA compile {compile_seconds:.2f} s, "
            f"{call * 1e3:.3f} ms a call"
        )
