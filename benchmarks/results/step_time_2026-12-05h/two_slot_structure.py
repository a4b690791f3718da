# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): what a rule with Adam's two
slots would cost, against the default's three-slot structure and Adam, in
plain JAX beside `jax_step_structure.py` and `lagged_structure.py`.

`two slots, sampled`: per variable Adam's two moments (0.9, 0.999), the
alignment of the gradient with the fast momentum's previous direction over
the rule's alignment sample (four products and a finiteness column), the
batched controller reading that alignment (its running average standing in
for the slow momentum's alignment), then the step scaled by the new log
step, every output kept on a non-finite gradient. Not a rule of this
project: an estimate of what such a rule's update would cost.
`three slots, the slow one on the sample only`: the three-slot sampled
structure whose slow momentum is kept only on the alignment's sample (the
only place the default reads it). Prints fused
kernels and the best mean call time on the residual MLP's 20 shapes (with
`large`: the 12.6M-parameter MLP's 6 of `jax_step_structure.py --model
large`), with
the three-slot sampled structure, plain-JAX Adam and Keras' Adam in the
same run, e.g. `taskset -c 1 python two_slot_structure.py`."""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R + "/benchmarks/results/step_time_2026-12-05g")
sys.path.insert(0, R)
import jax
import jax.numpy as jnp
import jax_step_structure as structure
import keras
import numpy as np

from keras_lopt import features

EPSILON = structure.EPSILON


def two_slot_structure(shapes):
    sizes = jnp.asarray([float(features.alignment_sample_count(int(np.prod(s)))) for s in shapes])

    def step(params, slots, control, gradients, learning_rates):
        moved, sums, inverses = [], [], []
        for g, (m, _, v) in zip(gradients, slots):
            m_new = m + (g - m) * (1.0 - structure.DECAYS[0])
            v_new = v + (g * g - v) * (1.0 - structure.SECOND_MOMENT_DECAY)
            inverse = 1.0 / (jnp.sqrt(v_new) + EPSILON)
            stride = features.alignment_sample_stride(g.size)
            gs = g.reshape(-1)[::stride]
            ms = m.reshape(-1)[::stride]
            inv = inverse.reshape(-1)[::stride]
            previous = ms * inv
            columns = [gs * gs, jnp.square(gs * inv), gs * previous, previous * previous, gs * gs * 0.0]
            sums.append(jnp.sum(jnp.stack(columns), axis=-1))
            moved.append((m_new, v_new))
            inverses.append(inverse)
        sums = jnp.stack(sums)
        cosine = sums[:, 2] * jax.lax.rsqrt(sums[:, 1] * sums[:, 3] + 1e-30)
        average = control[:, 2] + (cosine - control[:, 2]) * 0.01
        square = sums[:, 0] / sizes
        change = 4.5 * (cosine + average) + 0.5 + 0.1 * jnp.log(square / (control[:, 3] + 1e-30) + 1e-30)
        log_step = jnp.clip(control[:, 0] + 0.05 * jnp.tanh(change), -2.3, 2.3)
        finite = jnp.isfinite(sums[:, 4])
        new = jnp.stack([log_step, control[:, 1], average, square], axis=-1)
        control = jnp.where(finite[:, None], new, control)
        scale = learning_rates * jnp.exp(log_step)
        new_params, new_slots = [], []
        for i, (p, s, (m_new, v_new), inverse) in enumerate(zip(params, slots, moved, inverses)):
            new_params.append(jnp.where(finite[i], p - scale[i] * m_new * inverse, p))
            new_slots.append((jnp.where(finite[i], m_new, s[0]), s[1], jnp.where(finite[i], v_new, s[2])))
        return new_params, new_slots, control

    return step


def three_slot_sampled(shapes):
    """`jax_step_structure`'s per-variable structure over the rule's sample
    (as `lagged_structure.py`'s "per variable, sampled")."""

    def products(g, moved):
        stride = features.alignment_sample_stride(g.shape[0])
        columns, inverse = structure._products(g[::stride], [x[::stride] for x in moved])
        if stride == 1:
            return columns, inverse
        return columns, 1.0 / (jnp.sqrt(moved[2]) + EPSILON)

    sizes = [features.alignment_sample_count(int(np.prod(s))) for s in shapes]
    return structure.structure_per_variable(shapes, products, None, sizes)


def sampled_slow_slot(shapes):
    """The three-slot sampled structure with the slow momentum kept on the
    alignment's sample only (`[sample]` instead of the tensor's shape): it
    is read nowhere else."""
    sizes = jnp.asarray([float(features.alignment_sample_count(int(np.prod(s)))) for s in shapes])

    def step(params, slots, control, gradients, learning_rates):
        moved, sums, inverses = [], [], []
        for g, (m, m_slow, v) in zip(gradients, slots):
            m_new = m + (g - m) * (1.0 - structure.DECAYS[0])
            v_new = v + (g * g - v) * (1.0 - structure.SECOND_MOMENT_DECAY)
            inverse = 1.0 / (jnp.sqrt(v_new) + EPSILON)
            stride = features.alignment_sample_stride(g.size)
            gs = g.reshape(-1)[::stride]
            ms = m_new.reshape(-1)[::stride]
            inv = inverse.reshape(-1)[::stride]
            slow_new = m_slow + (gs - m_slow) * (1.0 - structure.DECAYS[1])
            columns = [gs * gs, jnp.square(gs * inv)]
            for moment, decay in ((ms, structure.DECAYS[0]), (slow_new, structure.DECAYS[1])):
                previous = (moment - gs * (1.0 - decay)) / decay * inv
                columns += [gs * previous, previous * previous]
            sums.append(jnp.sum(jnp.stack(columns + [gs * gs * 0.0]), axis=-1))
            moved.append((m_new, slow_new, v_new))
            inverses.append(inverse)
        log_step, control, finite = structure._control(jnp.stack(sums), control, sizes)
        scale = learning_rates * jnp.exp(log_step)
        new_params, new_slots = [], []
        for i, (p, s, m, inverse) in enumerate(zip(params, slots, moved, inverses)):
            new_params.append(jnp.where(finite[i], p - scale[i] * m[0] * inverse, p))
            new_slots.append(tuple(jnp.where(finite[i], a, b) for a, b in zip(m, s)))
        return new_params, new_slots, control

    return step


def _sampled_slots(shapes, slots):
    out = []
    for s, (m, m_slow, v) in zip(shapes, slots):
        stride = features.alignment_sample_stride(int(np.prod(s)))
        out.append((m, m_slow.reshape(-1)[::stride], v))
    return out


def main():
    shapes = [(64, 128), (128,)] + [(128,), (128,), (128, 128), (128,)] * 4 + [(128, 10), (10,)]
    calls = 200
    if sys.argv[1:] == ["large"]:
        shapes, calls = [(1024, 4096), (4096,), (4096, 2048), (2048,), (2048, 10), (10,)], 10
    variables = [keras.Variable(np.zeros(s, "float32")) for s in shapes]
    for repeat in range(3):
        rows = []
        seconds, kernels = structure.keras_update(keras.optimizers.Adam(), variables, calls, 5)
        rows.append(("keras Adam", kernels, seconds))
        for name, make in (
            ("Adam, plain JAX", structure.adam_plain),
            ("three slots, sampled", three_slot_sampled),
            ("two slots, sampled", two_slot_structure),
            ("three slots, the slow one on the sample only", sampled_slow_slot),
        ):
            params, gradients, slots, learning_rates = structure._inputs(shapes)
            if make is sampled_slow_slot:
                slots = _sampled_slots(shapes, slots)
            control = jnp.zeros((len(shapes), 4), "float32")
            compiled = jax.jit(make(shapes)).lower(params, slots, control, gradients, learning_rates).compile()
            call = structure.time_calls(compiled, (params, slots, control), (gradients, learning_rates), calls, 5)
            rows.append((name, structure.fusions(compiled), call))
        for name, kernels, call in rows:
            print(f"round {repeat}: {name}: {kernels} fused kernels, {call * 1e3:.3f} ms a call", flush=True)


if __name__ == "__main__":
    main()
