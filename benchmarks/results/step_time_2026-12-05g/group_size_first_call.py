# ruff: noqa: E402
"""Scratch (2026-12-05, thirteenth session): the first `fit` call of a fresh
residual MLP without XLA in the train step, with the optimizer's program
groups of the given size, e.g. `python group_size_first_call.py 10 8`
(a third argument prints a cProfile of the call; REPO: the checkout to
import, default /work/main)."""

import os
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import numpy as np
from step_time import residual_mlp

import keras_lopt
import keras_lopt.optimizer as optimizer_module

size, group = int(sys.argv[1]), int(sys.argv[2])
profile = len(sys.argv) > 3
optimizer_module.PROGRAM_GROUP_SIZE = group
model, _ = residual_mlp(size)
x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
y = np.random.default_rng(1).integers(0, 10, size=(32,))
model.compile(optimizer=keras_lopt.LearnedOptimizer(), loss="sparse_categorical_crossentropy", jit_compile=False)
if profile:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
start = time.perf_counter()
model.fit(x, y, batch_size=32, epochs=1, verbose=0)
seconds = time.perf_counter() - start
if profile:
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
print(f"size {size} group {group}: first fit {seconds:.2f} s")
