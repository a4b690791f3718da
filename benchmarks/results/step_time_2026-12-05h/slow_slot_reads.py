# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): does the default read its slow
(0.99) momentum anywhere but on the alignment's sample? Two optimizers of
the default preset on the same variables (a 128x128 kernel, whose sample is
strided, and a 4096-element vector, sampled whole), the same random state
and gradients, except that the second's slow momentum differs at every
element off the sample (and, as a control, a third's everywhere, which
must change the kernel's new value). After three `apply` calls with the same gradients
(and after each), the parameters, the fast momentum, the second moment and
the per-tensor state must be bit-identical if nothing else reads it; the
slow momentum must differ off the sample only. Runs on each backend given:
`KERAS_BACKEND=jax python slow_slot_reads.py`."""

import os
import sys

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
import keras
import numpy as np

import keras_lopt
from keras_lopt import features

SHAPES = [(128, 128), (4096,)]


def run(perturb):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(0, 0.1, s).astype("float32")) for s in SHAPES]
    optimizer = keras_lopt.LearnedOptimizer()
    optimizer.build(variables)
    slots = {x.path: x for x in optimizer.variables}
    off_sample = []
    for variable, shape in zip(variables, SHAPES):
        size = int(np.prod(shape))
        mask = np.ones(size, bool)
        mask[:: features.alignment_sample_stride(size)] = False
        off_sample.append(mask)
        suffix = variable.path.split("/")[-1]
        for name in ("momentum_0p9", "momentum_0p99", "second_moment"):
            slot = next(x for path, x in slots.items() if path.endswith(f"{suffix}_{name}"))
            value = rng.normal(0, 1e-3, size).astype("float32")
            if name == "second_moment":
                value = np.abs(value) ** 2 + 1e-8
            if name == "momentum_0p99" and perturb == "off the sample":
                value[mask] += 0.05
            if name == "momentum_0p99" and perturb == "everywhere":
                value += 0.05
            slot.assign(value.reshape(shape))
    trace = []
    for _ in range(3):
        gradients = [rng.normal(0, 1e-3, s).astype("float32") for s in SHAPES]
        optimizer.apply(gradients, variables)
        everything = [*variables, *optimizer.variables]
        trace.append([(x.path, keras.ops.convert_to_numpy(x.value).copy()) for x in everything])
    return trace, off_sample


base, off_sample = run(None)
changed, _ = run("off the sample")
# The control: changed on the sample too, the parameters must move.
control, _ = run("everywhere")
assert not np.array_equal(base[0][0][1], control[0][0][1]), "the slow momentum is read nowhere"
print(f"{keras.backend.backend()}, control: the slow momentum changed on the sample too changes the kernel's step")
for step, (a, b) in enumerate(zip(base, changed)):
    # By position: the second run's fresh variables have fresh names.
    different = [name for (name, x), (_, y) in zip(a, b) if not np.array_equal(x, y)]
    print(
        f"{keras.backend.backend()}, after step {step + 1}: {len(a) - len(different)} of {len(a)} arrays "
        f"bit-identical, different: {different}"
    )
    for (name, x), (_, y) in zip(a, b):
        if np.array_equal(x, y):
            continue
        assert name.endswith("momentum_0p99"), name
        differs = (x != y).reshape(-1)
        mask = off_sample[0] if differs.size == off_sample[0].size else off_sample[1]
        assert not differs[~mask].any(), name  # identical on the sample
print("the default reads its slow momentum only on the alignment's sample")
