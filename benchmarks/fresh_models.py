"""Many fresh models in one process: first-fit time and memory per model.

    python benchmarks/fresh_models.py [--models 8] [--steps 200] [--quick]

A cross-validation loop, a keras-tuner search or `keras-lopt benchmark`
trains one fresh model after another in one Python process. For Adam and for
`keras_lopt.LearnedOptimizer()` (each in a fresh process of its own, with
and without XLA), this trains `--models` fresh copies of a small residual
MLP with LayerNorm (10 variables, `keras.utils.clear_session()` between
them) for `--steps` steps each and records each model's `fit` time and the
process's resident memory after it (after `gc.collect()`).

Printed per optimizer and XLA setting: the first model's fit, the median fit
of the later ones, and the median growth of resident memory per later model;
then the ratios LearnedOptimizer / Adam of the later fits and of the growth.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import time

CHILD_TAG = "fresh models: "


def child(name, jit_compile, models, steps):
    """In a fresh process: trains the models; prints one JSON line."""
    import keras
    from step_time import make_data, residual_mlp
    from unroll_memory import resident_mb

    import keras_lopt

    x, y = make_data((64,), 32 * steps)
    seconds, memory = [], []
    for index in range(models):
        keras.utils.clear_session()
        keras.utils.set_random_seed(index)
        model, _ = residual_mlp(10)
        optimizer = keras.optimizers.Adam() if name == "adam" else keras_lopt.LearnedOptimizer()
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        float(history.history["loss"][-1])
        seconds.append(time.perf_counter() - start)
        del model, optimizer, history
        gc.collect()
        memory.append(resident_mb())
    row = {"name": name, "jit_compile": jit_compile, "seconds": seconds, "resident_mb": memory}
    print(CHILD_TAG + json.dumps(row), flush=True)


def run_child(name, jit_compile, models, steps):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"{name}:{int(jit_compile)}",
        "--models",
        str(models),
        "--steps",
        str(steps),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} process failed ({result.returncode}):\n{result.stderr[-3000:]}")
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(CHILD_TAG)]
    return json.loads(line[len(CHILD_TAG) :])


def summary(row):
    """`(first fit s, median later fit s, median MiB growth per later model)`."""
    import numpy as np

    seconds, memory = row["seconds"], row["resident_mb"]
    return seconds[0], float(np.median(seconds[1:])), float(np.median(np.diff(memory)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="fresh models per process (at least 3)")
    parser.add_argument("--steps", type=int, default=200, help="train steps per model")
    parser.add_argument("--quick", action="store_true", help="3 models of 20 steps (the test runs it)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.models, args.steps = 3, 20
    if args.models < 3:
        parser.error(f"--models must be at least 3; received {args.models}")
    if args.child:
        name, jit = args.child.split(":")
        child(name, bool(int(jit)), args.models, args.steps)
        return
    print(f"{args.models} fresh residual MLPs (10 variables) of {args.steps} steps each, one process per row")
    print("| optimizer | XLA | first fit (s) | later fits, median (s) | memory growth per later model, median (MiB) |")
    print("|---|---|---|---|---|")
    ratios = []
    for jit_compile in (True, False):
        rows = {name: summary(run_child(name, jit_compile, args.models, args.steps)) for name in ("adam", "learned")}
        for name, (first, later, growth) in rows.items():
            label = "Adam" if name == "adam" else "LearnedOptimizer"
            print(f"| {label} | {'yes' if jit_compile else 'no'} | {first:.2f} | {later:.2f} | {growth:.1f} |")
        xla = "XLA" if jit_compile else "no XLA"
        ratios.append(f"ratio LearnedOptimizer/Adam, later fit, {xla}: {rows['learned'][1] / rows['adam'][1]:.2f}")
        ratios.append(
            f"memory growth per later model, {xla}: LearnedOptimizer {rows['learned'][2]:.1f} MiB, "
            f"Adam {rows['adam'][2]:.1f} MiB"
        )
    print("\n".join(ratios))


if __name__ == "__main__":
    main()
