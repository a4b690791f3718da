# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): where the 10-variable first
`fit` call without XLA goes when the update is traced into the train
step's graph instead of compiled (`compiled_update.in_xla_program`
patched to True) and as shipped, against Adam's: under cProfile, the
train function's tracing (`tracing_compilation`'s `trace_function`) and
the rest of the call (graph optimisation, XLA compilation where there is
any, the first execution). One process per argument:
`python plain_first_call_profile.py adam|shipped|graph`."""

import cProfile
import os
import pstats
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
sys.path.insert(0, R + "/benchmarks")
import keras
import step_time

import keras_lopt
from keras_lopt import compiled_update

variant = sys.argv[1]
# Start-up, as step_time.py's first-call processes do.
warm = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(4), keras.layers.LayerNormalization(), keras.layers.Dense(10)]
)
step_time.first_fit_call(warm, (4,), keras.optimizers.SGD(), False)
if variant == "graph":
    compiled_update.in_xla_program = lambda: True
keras.utils.set_random_seed(0)
model, shape = step_time.residual_mlp(10)
optimizer = keras.optimizers.Adam() if variant == "adam" else keras_lopt.LearnedOptimizer()
profile = cProfile.Profile()
start = time.perf_counter()
profile.enable()
seconds = step_time.first_fit_call(model, shape, optimizer, False)
profile.disable()
stats = pstats.Stats(profile)
trace = sum(v[3] for k, v in stats.stats.items() if k[2] == "trace_function")
apply = sum(v[3] for k, v in stats.stats.items() if k[2] == "apply" and "optimizer" in k[0])
print(
    f"{variant}: first fit call {seconds:.2f} s under the profiler; tracing the train function {trace:.2f} s "
    f"(of it the optimizer's apply {apply:.2f} s); the rest {seconds - trace:.2f} s"
)
if len(sys.argv) > 2:
    # The keras_lopt functions with the most cumulative time (nested calls
    # counted in each caller).
    rows = [(v[3], v[0], k) for k, v in stats.stats.items() if "keras_lopt" in k[0]]
    for cumulative, calls, (path, line, name) in sorted(rows, reverse=True)[: int(sys.argv[2])]:
        print(f"  {cumulative:.3f} s cumulative, {calls} calls: {os.path.basename(path)}:{line} {name}")
