# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): does the step get slower
during a long `fit`? One `fit` of `steps` steps on `step_time.py`'s
20-variable residual MLP (batch 32, the same data), per optimizer and XLA
setting, in one process; a callback records the wall clock every `window`
batches (reading nothing), printed as ms a step per window.
`python long_fit_windows.py [steps] [window]`."""

import os
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
sys.path.insert(0, R + "/benchmarks")
import keras
import numpy as np
import step_time

import keras_lopt


class Windows(keras.callbacks.Callback):
    def __init__(self, window):
        super().__init__()
        self.window, self.marks = window, []

    def on_train_batch_end(self, batch, logs=None):
        if batch % self.window == 0:
            self.marks.append(time.perf_counter())


def main(steps, window):
    for jit_compile in (False, True):
        for name in ("adam", "learned"):
            keras.utils.set_random_seed(0)
            model, shape = step_time.residual_mlp(20)
            optimizer = keras.optimizers.Adam() if name == "adam" else keras_lopt.LearnedOptimizer()
            model.compile(optimizer=optimizer, loss=step_time.LOSS, jit_compile=jit_compile)
            x, y = step_time.make_data(shape, 32 * steps)
            windows = Windows(window)
            history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[windows])
            per_step = np.diff(windows.marks) / window * 1e3
            print(
                f"{name}, jit_compile={jit_compile}: ms a step per {window}-step window: "
                + " ".join(f"{t:.2f}" for t in per_step)
                + f"; final loss {history.history['loss'][-1]:.4g}",
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10000, int(sys.argv[2]) if len(sys.argv) > 2 else 1000)
