# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): without XLA in the train step,
the default's batched step as plain graph operations against its compiled
(XLA) group programs, by variable size.

A model `Input(w) -> Dense(w, no bias) -> Dense(10)` at batch 32, one
`w x w` kernel dominating, for several `w`; Keras' default train step
(`jit_compile=False`). Three optimizers in alternating `fit` rounds: Adam,
`LearnedOptimizer()` as shipped (each group of variables one XLA program),
`LearnedOptimizer()` whose steps are traced into the train step's graph
(`compiled_update.in_xla_program` patched to True while that model's train
step is traced), and the same without nested per-shape programs
(`NESTED_MIN_REPEATS` patched). `residual` for `step_time.py`'s residual
MLP of 20 variables. Prints median step times, e.g.
`python plain_by_size.py 128,256,512,1024`."""

import os
import sys

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
sys.path.insert(0, R + "/benchmarks")
import keras
import numpy as np
from step_time import StepTimer

import keras_lopt
from keras_lopt import compiled_update


def build(width):
    keras.utils.set_random_seed(0)
    if width == "residual":
        import step_time

        return step_time.residual_mlp(20)[0]
    return keras.Sequential([keras.Input((width,)), keras.layers.Dense(width, use_bias=False), keras.layers.Dense(10)])


def main(widths, rounds=6, steps=100):
    original = compiled_update.in_xla_program
    nested = compiled_update.NESTED_MIN_REPEATS
    for width in widths:
        inputs = 64 if width == "residual" else width
        x = np.random.default_rng(0).normal(size=(32 * steps, inputs)).astype("float32")
        y = np.random.default_rng(1).integers(0, 10, size=(32 * steps,)).astype("int32")
        models, timers = {}, {}
        for name in ("adam", "learned, XLA programs", "learned, graph ops", "learned, graph ops, not nested"):
            model = build(width)
            optimizer = keras.optimizers.Adam() if name == "adam" else keras_lopt.LearnedOptimizer()
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False)
            if name.startswith("learned, graph ops"):
                compiled_update.in_xla_program = lambda: True
            if name.endswith("not nested"):
                compiled_update.NESTED_MIN_REPEATS = 10**9
            model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
            compiled_update.in_xla_program = original
            compiled_update.NESTED_MIN_REPEATS = nested
            models[name], timers[name] = model, StepTimer()
        for _ in range(rounds):
            for name, model in models.items():
                model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[timers[name]])
        medians = {name: float(np.median(t.times)) * 1e3 for name, t in timers.items()}
        adam = medians["adam"]
        print(
            f"w={width}: " + ", ".join(f"{name} {ms:.3f} ms ({ms / adam:.2f}x)" for name, ms in medians.items()),
            flush=True,
        )


if __name__ == "__main__":
    main([w if w == "residual" else int(w) for w in sys.argv[1].split(",")])
