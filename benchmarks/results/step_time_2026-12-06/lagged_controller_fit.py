# ruff: noqa: E402
"""Scratch (2026-12-06, fifteenth session): does a per-tensor controller
that waits for every variable's sums cost the JAX fit step more than its
update's kernels? Keras optimizers on the default's bare *structure*
(three moments, the alignment sums and a finiteness column in one
reduction per variable, the per-tensor controller batched over the
variables, an Adam-like direction times `exp` of the log step, every
output kept on a non-finite gradient; `jax_step_structure.py`'s
arithmetic in `keras.ops`), in two orders:

* `waits`: this step's log steps from this step's sums (the default's
  order): no variable's update can start before every gradient is there.
* `lagged`: each update uses the log step of the step before; this step's
  sums only feed the next step's controller. A variable's update needs
  its own gradient only.

and, to take the structure apart, `adam2` (Keras' Adam's arithmetic
written the same way: a calibration of this way of writing an optimizer),
`adam3` (the three moments and Adam's direction at a fixed step: no
reduction, no selection), `adam3_check`
(that, plus the finiteness column's reduction per variable and the
selection it drives) and `two_slots` (`waits` without the slow momentum:
its alignment columns and slot dropped).

Fit step of `step_time.py`'s residual MLP, these two, Keras' Adam,
`LearnedOptimizer()` and `LearnedOptimizer(preset="mlp_local_es_v1")` (a
learned per-element rule with no per-tensor state: no reduction but the
finiteness check) alternating in rounds (`step_time.time_fit`). Not a
rule of this project. `python lagged_controller_fit.py [rounds]
[jit_compile 1|0]` (`KERAS_BACKEND=tensorflow` for TensorFlow;
default JAX, XLA only).
The same file times them on TensorFlow, with and without XLA (without
XLA these updates are plain graph operations, where the shipped default
runs compiled programs per group of variables)."""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
sys.path.insert(0, os.path.join(R, "benchmarks"))
import warnings

import keras
import numpy as np
import step_time
from keras import ops

import keras_lopt

warnings.simplefilter("ignore")
D9, D99, D2, EPS = 0.9, 0.99, 0.999, 1e-8


class Structure(keras.optimizers.Optimizer):
    def __init__(self, kind, learning_rate=3e-3, **kwargs):
        super().__init__(learning_rate=learning_rate, name=kind, **kwargs)
        self.kind = kind
        self.decays = (D9,) if kind in ("two_slots", "adam2") else (D9, D99)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.slots = [
            [self.add_variable_from_reference(v, name=f"m{k}") for k in range(len(self.decays))]
            + [self.add_variable_from_reference(v, name="v")]
            for v in variables
        ]
        self.control = self.add_variable((len(variables), 4), name="control")
        self.sizes = np.asarray([float(np.prod(v.shape)) for v in variables], "float32")

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables or self._trainable_variables
        if not self.built:
            self.build(variables)
        self.iterations.assign_add(1)
        moved, sums, inverses = [], [], []
        if self.kind.startswith("adam"):
            return self._adam(grads, variables)
        for g, slots in zip(grads, self.slots):
            *momenta, v = (ops.convert_to_tensor(x) for x in slots)
            m = (*(x + (g - x) * (1 - d) for x, d in zip(momenta, self.decays)), v + (g * g - v) * (1 - D2))
            inverse = 1.0 / (ops.sqrt(m[-1]) + EPS)
            gf, inf = ops.reshape(g, [-1]), ops.reshape(inverse, [-1])
            columns = [gf * gf, ops.square(gf * inf)]
            for x, d in zip(m[:-1], self.decays):
                previous = (ops.reshape(x, [-1]) - gf * (1 - d)) / d * inf
                columns += [gf * previous, previous * previous]
            columns.append(gf * gf * 0.0)
            moved.append(m)
            inverses.append(inverse)
            sums.append(ops.sum(ops.stack(columns), axis=-1))
        sums = ops.stack(sums)
        control = ops.convert_to_tensor(self.control)
        count = len(self.decays)
        cosines = [sums[:, 2 + 2 * k] * ops.rsqrt(sums[:, 0] * sums[:, 3 + 2 * k] + 1e-30) for k in range(count)]
        averages = [control[:, 1 + k] + (c - control[:, 1 + k]) * 0.1 for k, c in enumerate(cosines)]
        averages += [control[:, 2]] * (2 - count)
        square = sums[:, 0] / self.sizes
        change = 4.5 * (cosines[0] + averages[0]) + 0.5 + 0.1 * ops.log(square / (control[:, 3] + 1e-30) + 1e-30)
        log_step = ops.clip(control[:, 0] + 0.05 * ops.tanh(change), -2.3, 2.3)
        finite = ops.isfinite(sums[:, -1])
        new_control = ops.where(finite[:, None], ops.stack([log_step, *averages, square], axis=-1), control)
        used = control[:, 0] if self.kind == "lagged" else log_step
        scale = self.learning_rate * ops.exp(used)
        for i, (p, s, m, inverse) in enumerate(zip(variables, self.slots, moved, inverses)):
            value = ops.convert_to_tensor(p)
            p.assign(ops.where(finite[i], value - scale[i] * m[0] * inverse, value))
            for slot, new in zip(s, m):
                slot.assign(ops.where(finite[i], new, ops.convert_to_tensor(slot)))
        self.control.assign(new_control)

    def _adam(self, grads, variables):
        count = ops.cast(self.iterations, "float32")
        correction = ops.sqrt(1.0 - D2**count) / (1.0 - D9**count)
        for g, p, slots in zip(grads, variables, self.slots):
            old = [ops.convert_to_tensor(x) for x in slots]
            m = [x + (g - x) * (1 - d) for x, d in zip(old[:-1], self.decays)] + [
                old[-1] + (g * g - old[-1]) * (1 - D2)
            ]
            value = ops.convert_to_tensor(p)
            new = value - self.learning_rate * correction * m[0] / (ops.sqrt(m[-1]) + EPS)
            if self.kind == "adam3_check":
                finite = ops.isfinite(ops.sum(g * g * 0.0))
                new = ops.where(finite, new, value)
                m = [ops.where(finite, a, b) for a, b in zip(m, old)]
            p.assign(new)
            for slot, x in zip(slots, m):
                slot.assign(x)


KINDS = ("adam2", "adam3", "adam3_check", "waits", "lagged", "two_slots")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    jit_compile = bool(int(sys.argv[2])) if len(sys.argv) > 2 else True
    print(f"{keras.backend.backend()}, jit_compile={jit_compile}, {rounds} rounds")
    named = {
        "adam": keras.optimizers.Adam(),
        "learned": step_time.make_optimizer("learned"),
        "mlp_local_es_v1": keras_lopt.LearnedOptimizer(preset="mlp_local_es_v1"),
        **{kind: Structure(kind) for kind in KINDS},
    }
    medians, _ = step_time.time_fit(lambda: step_time.residual_mlp(20), 32, jit_compile, rounds, 20, named)
    for name, median in medians.items():
        print(f"{name}: {1e3 * median:.3f} ms, ratio to Adam {median / medians['adam']:.2f}")


if __name__ == "__main__":
    main()
