"""The first and the later `apply` of one variable, LearnedOptimizer against
Adam in the same run (TensorFlow backend, eager `apply`, which runs the
learned step as its per-signature XLA program: the first call traces and
compiles it).

    python benchmarks/first_apply.py [--preset NAME] [--shape 17,33] [--repeats 200]
"""

import argparse
import os
import sys
import time

# The checkout this script is in, not whichever keras_lopt is installed
# (an editable install points at another worktree): comparing two commits
# means running each one's copy of this script.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lopt  # noqa: E402


def timed_applies(optimizer, shape, repeats):
    """(seconds of the first apply, seconds per later apply)."""
    variable = keras.Variable(np.zeros(shape, "float32"))
    optimizer.build([variable])
    gradient = np.random.default_rng(0).normal(size=shape).astype("float32")
    start = time.perf_counter()
    optimizer.apply([gradient], [variable])
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        optimizer.apply([gradient], [variable])
    return first, (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="preset name or directory (default: the default preset)")
    parser.add_argument("--shape", default="17,33", help="the variable's shape, comma-separated")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"first_apply.py measures the TensorFlow backend. Received: {keras.backend.backend()!r}")
    shape = tuple(int(n) for n in args.shape.split(","))
    learned = keras_lopt.LearnedOptimizer(preset=args.preset)
    learned_first, learned_later = timed_applies(learned, shape, args.repeats)
    adam_first, adam_later = timed_applies(keras.optimizers.Adam(), shape, args.repeats)
    print(f"preset {learned.preset}, variable {shape}")
    print(f"first apply: {learned_first:.2f} s / Adam {adam_first:.2f} s = {learned_first / adam_first:.2f}")
    ratio = learned_later / adam_later
    print(f"later apply: {learned_later * 1e3:.3f} ms / Adam {adam_later * 1e3:.3f} ms = {ratio:.2f}")


if __name__ == "__main__":
    main()
