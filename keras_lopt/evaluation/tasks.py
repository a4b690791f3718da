"""`EvalTask`, a Keras training problem of an evaluation suite, and the
data helpers the suites share."""

import dataclasses
import functools
from typing import Callable, Optional

import keras
import numpy as np

from keras_lopt import validation

__all__ = ["EvalTask", "LADDERS"]

LADDERS = ("width", "length")


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """A Keras training problem for benchmarks.

    name: unique across suites.
    description: one line for tables.
    build_model: `() -> keras.Model` (called under a fixed Keras seed).
    loss: a `keras.losses.Loss`.
    load_data: `() -> ((train_x, train_y), (valid_x, valid_y))`, numpy
        arrays, cached after the first call.
    batch_size: examples per step.
    steps: default number of training steps.
    step_ms: rough cost of one Adam training step in milliseconds on a
        2-core CPU; only used to estimate a benchmark's duration.
    ladder: "width" or "length" for the rungs of a ladder, else None.
    """

    name: str
    description: str
    build_model: Callable
    loss: object
    load_data: Callable
    batch_size: int
    steps: int
    step_ms: float
    ladder: Optional[str] = None

    def __post_init__(self):
        if self.ladder is not None and self.ladder not in LADDERS:
            raise ValueError(f"`ladder` must be one of {LADDERS} or None. Received: ladder={self.ladder!r}")
        for field in ("batch_size", "steps"):
            validation.positive_int(field, getattr(self, field))


def cached(load):
    """Caches a data loader's result (tasks reload nothing per run)."""
    return functools.cache(load)


def standardize(train_x, valid_x):
    """Both arrays scaled by the training set's mean and std, float32."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    return ((train_x - mean) / std).astype("float32"), ((valid_x - mean) / std).astype("float32")


def sklearn_split(loader, seed=0, regression=False):
    """A scikit-learn bundled data set, shuffled, split 80/20, standardized."""
    data = loader()
    x = data.data.astype("float32")
    y = data.target.astype("float32" if regression else "int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n = int(0.8 * len(x))
    tx, vx = standardize(x[:n], x[n:])
    if regression:
        mean, std = y[:n].mean(), y[:n].std()
        y = ((y - mean) / std).astype("float32")
    return (tx, y[:n]), (vx, y[n:])


def dataset(name):
    """A `keras_lopt.meta.datasets` data set with features x, y as
    ((train_x, train_y), (test_x, test_y))."""
    from keras_lopt.meta import datasets

    train, test = datasets.load_numpy(name, "train"), datasets.load_numpy(name, "test")
    return (train["x"], train["y"]), (test["x"], test["y"])


def python_chars(split):
    """Byte windows [N, 129] of `python_chars`, int32."""
    from keras_lopt.meta import datasets

    return datasets.load_numpy("python_chars", split)["tokens"]


def sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def preln_residual_mlp(inputs, outputs, width, hidden, blocks):
    """Dense(width), then `blocks` pre-LayerNorm residual blocks (LN,
    Dense(hidden, gelu), Dense(width), add), a final LayerNorm and
    Dense(outputs), on `inputs` features."""
    x = keras.Input((inputs,))
    h = keras.layers.Dense(width)(x)
    for _ in range(blocks):
        u = keras.layers.LayerNormalization()(h)
        u = keras.layers.Dense(hidden, activation="gelu")(u)
        h = h + keras.layers.Dense(width)(u)
    h = keras.layers.LayerNormalization()(h)
    return keras.Model(x, keras.layers.Dense(outputs)(h))


def mlp(inputs, widths, outputs, activation="relu"):
    layers = [keras.Input(inputs), keras.layers.Flatten()]
    layers += [keras.layers.Dense(w, activation=activation) for w in widths]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)])
