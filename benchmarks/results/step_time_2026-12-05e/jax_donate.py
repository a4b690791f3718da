# ruff: noqa: E402
"""Scratch (2026-12-05, eleventh session): the default's and Adam's JAX update
on step_time.py's residual MLP, jitted alone, with and without the state
donated (as Keras' train step donates it); best of 5 x 300 calls."""

import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
R = "/work/main"
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import jax
import jax.numpy as jnp
import keras
import step_time as st

import keras_lopt

model, _ = st.residual_mlp(20)


def run(name, donate):
    vs = model.trainable_variables
    opt = keras_lopt.LearnedOptimizer() if name == "learned" else keras.optimizers.Adam()
    opt.build(vs)
    grads = [jnp.full(v.shape, 1e-3, "float32") for v in vs]

    def step(ov, tv, g):
        tv, ov = opt.stateless_apply(ov, g, tv)
        return ov, tv

    f = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    state = ([v.value for v in opt.variables], [jnp.array(v.value) for v in vs])
    state = f(*state, grads)
    jax.block_until_ready(state)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(300):
            state = f(*state, grads)
        jax.block_until_ready(state)
        best = min(best, (time.perf_counter() - t) / 300)
    return best * 1e3


for _ in range(2):
    print(
        " ".join("%s donate=%s %.3f ms" % (n, d, run(n, d)) for n in ("adam", "learned") for d in (False, True)),
        flush=True,
    )
