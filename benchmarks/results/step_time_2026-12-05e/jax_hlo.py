# ruff: noqa: E402
"""Scratch (2026-12-05, eleventh session): the fused kernels of the default's
JAX update on variables of the given shapes, e.g. `python jax_hlo.py 128,128`
(REPO: the checkout to import; default /work/main)."""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import jax
import jax.numpy as jnp
import keras
from jax_step_structure import fusions

import keras_lopt

shapes = [tuple(int(s) for s in a.split("x")) for a in sys.argv[1].split(",")]
name = sys.argv[2] if len(sys.argv) > 2 else "learned"
variables = [keras.Variable(jnp.ones(s) * 0.1, name=f"v{i}") for i, s in enumerate(shapes)]
opt = keras_lopt.LearnedOptimizer() if name == "learned" else keras.optimizers.Adam()
opt.build(variables)
values = [v.value for v in variables]
grads = [jnp.full(v.shape, 1e-3, "float32") for v in values]


def step(ov, tv, g):
    tv, ov = opt.stateless_apply(ov, g, tv)
    return ov, tv


c = jax.jit(step).lower([v.value for v in opt.variables], values, grads).compile()
print("fusions", fusions(c), "optimizer vars", len(opt.variables))
txt = c.as_text()
entry = txt[txt.index("ENTRY") :]
for line in entry.splitlines():
    if "fusion(" in line or "custom-call" in line or " reduce(" in line or "copy(" in line:
        print(line.strip()[:230])
