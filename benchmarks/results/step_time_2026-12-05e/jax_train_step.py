# ruff: noqa: E402
"""Scratch (2026-12-05, eleventh session): Keras' jitted JAX train step of
step_time.py's residual MLP called alone (no `fit` loop), Adam against
`LearnedOptimizer()`, best of 5 x 300 calls per round (ROUNDS, default 3;
REPO: the checkout to import)."""

import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import jax
import jax.numpy as jnp
import keras
import step_time as st
from jax_step_structure import fusions

import keras_lopt


def state_of(model):
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )


res = {}
for rnd in range(int(os.environ.get("ROUNDS", 3))):
    for name in ("adam", "learned"):
        keras.utils.set_random_seed(0)
        model, shape = st.residual_mlp(20)
        opt = keras_lopt.LearnedOptimizer() if name == "learned" else keras.optimizers.Adam()
        model.compile(optimizer=opt, loss=st.LOSS, jit_compile=True)
        x, y = st.make_data(shape, 64)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        state = state_of(model)
        data = (jnp.asarray(x[:32]), jnp.asarray(y[:32]))
        step = jax.jit(model.train_step, donate_argnums=0)
        compiled = step.lower(state, data).compile()
        logs, state = compiled(state, data)
        jax.block_until_ready(state)
        best = 1e9
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(300):
                logs, state = compiled(state, data)
            jax.block_until_ready(state)
            best = min(best, (time.perf_counter() - t) / 300)
        res.setdefault(name, []).append(best)
        if rnd == 0:
            print(name, "fusions", fusions(compiled), "arrays", sum(len(s) for s in state))
for k, v in res.items():
    print(k, ["%.3f ms" % (1e3 * t) for t in v])
print("ratio", [lt / a for lt, a in zip(res["learned"], res["adam"])])
