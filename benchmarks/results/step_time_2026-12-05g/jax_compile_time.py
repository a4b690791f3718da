# ruff: noqa: E402
"""Scratch (2026-12-05, thirteenth session): seconds to trace and to
XLA-compile one jitted `stateless_apply` on the shapes of `step_time.py`'s
10-variable residual MLP on JAX, and its fused kernels, for each optimizer
named (`adam`, `learned` for the default preset, `adam_equivalent`, or any
preset name), e.g. `python jax_compile_time.py adam learned mlp_local_es_v1`."""

import os
import sys
import time
import warnings

os.environ["KERAS_BACKEND"] = "jax"
R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import jax
import jax.numpy as jnp
import keras
from jax_step_structure import fusions

import keras_lopt

warnings.simplefilter("ignore")
SHAPES = [(64, 128), (128,), (128,), (128,), (128, 128), (128,), (128,), (128,), (128, 10), (10,)]
MAKERS = {
    "adam": keras.optimizers.Adam,
    "learned": keras_lopt.LearnedOptimizer,
    "adam_equivalent": lambda: keras_lopt.LearnedOptimizer(preset="adam_equivalent_v1"),
}


def measure(name):
    variables = [keras.Variable(jnp.ones(s) * 0.1) for s in SHAPES]
    make = MAKERS.get(name, lambda: keras_lopt.LearnedOptimizer(preset=name))
    optimizer = make()
    optimizer.build(variables)
    values = [v.value for v in variables]
    gradients = [jnp.full(v.shape, 1e-3) for v in values]

    def step(optimizer_values, trainable_values, gradients):
        trainable_values, optimizer_values = optimizer.stateless_apply(optimizer_values, gradients, trainable_values)
        return optimizer_values, trainable_values

    start = time.perf_counter()
    lowered = jax.jit(step).lower([v.value for v in optimizer.variables], values, gradients)
    traced = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    print(
        f"{name}: trace+lower {traced - start:.2f} s, XLA compile {done - traced:.2f} s, "
        f"fused kernels {fusions(compiled)}, optimizer arrays {len(optimizer.variables)}"
    )


for name in sys.argv[1:]:
    measure(name)
