# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): the distribution of synchronised
fit steps (`step_time.py`'s timer: each step waits for its loss) over one
long `fit` of the 20-variable residual MLP, per optimizer, with and
without XLA: median, mean, 90th and 99th percentiles, the total, and the
medians of the first and the last 500 steps.
`python step_distribution.py [steps]`."""

import os
import sys

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
sys.path.insert(0, R + "/benchmarks")
import keras
import numpy as np
import step_time

import keras_lopt


def main(steps):
    for jit_compile in (True, False):
        for name in ("adam", "learned", "adam", "learned"):
            keras.utils.set_random_seed(0)
            model, shape = step_time.residual_mlp(20)
            optimizer = keras.optimizers.Adam() if name == "adam" else keras_lopt.LearnedOptimizer()
            model.compile(optimizer=optimizer, loss=step_time.LOSS, jit_compile=jit_compile)
            x, y = step_time.make_data(shape, 32 * steps)
            model.fit(x[:320], y[:320], batch_size=32, epochs=1, verbose=0, shuffle=False)
            timer = step_time.StepTimer()
            model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
            t = np.asarray(timer.times[1:]) * 1e3
            print(
                f"{name}, jit_compile={jit_compile}: median {np.median(t):.2f} ms, mean {t.mean():.2f}, "
                f"p90 {np.percentile(t, 90):.2f}, p99 {np.percentile(t, 99):.2f}, max {t.max():.1f}, "
                f"total {t.sum() / 1e3:.2f} s; median of the first 500 steps {np.median(t[:500]):.2f} ms, "
                f"of the last 500 {np.median(t[-500:]):.2f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
