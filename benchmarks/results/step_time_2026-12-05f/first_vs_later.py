"""Scratch (2026-12-05, twelfth session): the first `fit` call of two fresh
10-variable residual MLPs with XLA in one process, under cProfile: the
optimizer's `apply` (its tracing), TensorFlow's tracing of the train step,
and `call_flat` (XLA's compilation and the step). `python first_vs_later.py
learned|adam` (REPO: the checkout to import; default /work/main)."""

# ruff: noqa: E402
import cProfile
import os
import pstats
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import keras
import numpy as np
import step_time

import keras_lopt


def cumulative(stats, suffix):
    """The largest cumulative time of a function whose `file:name` ends
    with `suffix` (0 if none)."""
    times = [v[3] for k, v in stats.stats.items() if f"{k[0].split('/')[-1]}:{k[2]}".endswith(suffix)]
    return max(times, default=0.0)


name = sys.argv[1]
x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
y = np.zeros(32, "int64")
for which in ("first", "later"):
    model, shape = step_time.residual_mlp(10)
    optimizer = keras_lopt.LearnedOptimizer() if name == "learned" else keras.optimizers.Adam()
    model.compile(optimizer=optimizer, loss=step_time.LOSS, jit_compile=True)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    profile.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profile)
    apply = cumulative(stats, "optimizer.py:apply") or cumulative(stats, "base_optimizer.py:apply")
    print(
        name,
        which,
        "total",
        round(total, 2),
        "apply",
        round(apply, 2),
        "trace_function",
        round(cumulative(stats, "tracing_compilation.py:trace_function"), 2),
        "call_flat",
        round(cumulative(stats, "atomic_function.py:call_flat"), 2),
    )
