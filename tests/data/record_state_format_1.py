"""Records `state_format_1/`: a `.keras` file written by a keras_lopt whose
optimizer kept the per-tensor state one variable per model variable (state
format 1), and what that keras_lopt computes after one more step.

Run from a checkout of a commit of state format 1 (e.g. `git worktree add
/tmp/old d3c90ce`), with that checkout first on the path:

    PYTHONPATH=/tmp/old python tests/data/record_state_format_1.py tests/data/state_format_1

It trains a small Dense model with `LearnedOptimizer()` (the default
preset, whose controller keeps `loss_statistics [3]` and `step_control [4]`
per tensor) for 3 steps without XLA, saves `model.keras`, takes one more
step on the same batch and stores in `expected.npz` the model's weights
(`weight_<i>`), every optimizer variable (`optimizer_<i>`, with their names
in `names`) and the format the code wrote (`state_format`).
"""

import os
import sys

import keras
import numpy as np

import keras_lopt
from keras_lopt import optimizer as optimizer_module


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, 3, size=(16,))


def model_and_optimizer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3)])
    optimizer = keras_lopt.LearnedOptimizer()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False)
    return model, optimizer


def main(out):
    os.makedirs(out, exist_ok=True)
    x, y = data()
    model, optimizer = model_and_optimizer()
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    model.save(os.path.join(out, "model.keras"))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    arrays = {f"weight_{i}": np.asarray(w) for i, w in enumerate(model.weights)}
    arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    arrays["names"] = np.array([v.name for v in optimizer.variables])
    arrays["state_format"] = np.array(optimizer_module.STATE_FORMAT)
    np.savez(os.path.join(out, "expected.npz"), **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
