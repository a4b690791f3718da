"""The held-out evaluation set: tasks that meta-training never sees.

None of these data set / architecture pairs is in a meta-training family
(`tasks.py`): they use other data sets (scikit-learn's wine, breast cancer
and diabetes; the adding and copy sequence tasks; Python source text), or
architectures the training families lack (conv nets, GRU, attention,
autoencoders), and by default they run for 2000 steps, longer than most
meta-training trajectories.

Each task is trained through the public Keras API (a compiled train step
calling `optimizer.apply_gradients`), exactly as a user would.
"""

import dataclasses
from typing import Callable, Tuple

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class EvalTask:
    """A Keras training problem for benchmarks.

    build_model: `() -> keras.Model` (called under a fixed Keras seed).
    loss: a `keras.losses.Loss`.
    train, valid: `(x, y)` numpy arrays.
    batch_size: examples per step.
    description: one line for tables.
    """

    name: str
    build_model: Callable
    loss: object
    train: Tuple
    valid: Tuple
    batch_size: int
    description: str


def _standardize(train_x, valid_x):
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    return ((train_x - mean) / std).astype("float32"), ((valid_x - mean) / std).astype("float32")


def _sklearn_split(loader, seed=0, regression=False):
    data = loader()
    x = data.data.astype("float32")
    y = data.target.astype("float32" if regression else "int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n = int(0.8 * len(x))
    tx, vx = _standardize(x[:n], x[n:])
    if regression:
        mean, std = y[:n].mean(), y[:n].std()
        y = ((y - mean) / std).astype("float32")
    return (tx, y[:n]), (vx, y[n:])


def _data(name):
    from keras_lopt.meta import datasets

    train, test = datasets.load_numpy(name, "train"), datasets.load_numpy(name, "test")
    return (train["x"], train["y"]), (test["x"], test["y"])


def _sparse_ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _mlp(inputs, widths, outputs, activation="relu"):
    layers = [keras.Input(inputs), keras.layers.Flatten()]
    layers += [keras.layers.Dense(w, activation=activation) for w in widths]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)])


def _wine():
    from sklearn.datasets import load_wine

    train, valid = _sklearn_split(load_wine)
    return EvalTask("mlp_wine", lambda: _mlp((13,), (64, 64), 3), _sparse_ce(), train, valid, 32,
                    "MLP 64-64 on wine (3 classes)")


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    train, valid = _sklearn_split(load_breast_cancer)
    return EvalTask("mlp_breast_cancer", lambda: _mlp((30,), (128,), 2, "tanh"), _sparse_ce(), train,
                    valid, 64, "MLP 128 tanh on breast cancer (2 classes)")


def _diabetes():
    from sklearn.datasets import load_diabetes

    train, valid = _sklearn_split(load_diabetes, regression=True)
    return EvalTask("regression_diabetes", lambda: _mlp((10,), (64, 64), 1), keras.losses.MeanSquaredError(),
                    (train[0], train[1][:, None]), (valid[0], valid[1][:, None]), 32,
                    "MLP 64-64 regression on diabetes")


def _conv_digits():
    def build():
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ])

    train, valid = _data("digits")
    return EvalTask("conv_digits", build, _sparse_ce(), train, valid, 64, "Conv 16-32 + GAP on 8x8 digits")


def _conv1d_mnist1d():
    def build():
        return keras.Sequential([
            keras.Input((40,)),
            keras.layers.Reshape((40, 1)),
            keras.layers.Conv1D(32, 5, padding="same", activation="relu"),
            keras.layers.Conv1D(32, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ])

    train, valid = _data("mnist1d")
    return EvalTask("conv1d_mnist1d", build, _sparse_ce(), train, valid, 128, "Conv1D 32-32 on mnist1d")


def _autoencoder_digits():
    train, valid = _data("digits")
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731

    def build():
        return keras.Sequential([
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(8),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(64),
        ])

    return EvalTask("autoencoder_digits", build, keras.losses.MeanSquaredError(),
                    (flat(train[0]), flat(train[0])), (flat(valid[0]), flat(valid[0])), 64,
                    "MLP autoencoder 64-32-8-32-64 on digits")


def _lstm_adding():
    def build():
        return keras.Sequential([
            keras.Input((50, 2)),
            keras.layers.LSTM(32),
            keras.layers.Dense(1),
        ])

    (tx, ty), (vx, vy) = _data("synthetic_sequences/adding")
    return EvalTask("lstm_adding", build, keras.losses.MeanSquaredError(), (tx, ty[:, None]),
                    (vx, vy[:, None]), 64, "LSTM 32 on the adding problem (length 50)")


def _gru_copy():
    def build():
        return keras.Sequential([
            keras.Input((21,), dtype="int32"),
            keras.layers.Embedding(10, 16),
            keras.layers.GRU(64, return_sequences=True),
            keras.layers.Dense(10),
        ])

    train, valid = _data("synthetic_sequences/copy")
    return EvalTask("gru_copy", build, _sparse_ce(), train, valid, 64, "GRU 64 on the copy task")


def _transformer_chars():
    from keras_lopt.meta import datasets

    seq = 64

    def split(name):
        tokens = datasets.load_numpy("python_chars", name)["tokens"]
        return tokens[:, :seq], tokens[:, 1 : seq + 1]

    def build():
        tokens = keras.Input((seq,), dtype="int32")
        h = keras.layers.Embedding(256, 64)(tokens)
        h = h + keras.layers.Embedding(seq, 64)(keras.ops.arange(seq)[None, :])
        for _ in range(2):
            a = keras.layers.MultiHeadAttention(4, 16)(h, h, use_causal_mask=True)
            h = keras.layers.LayerNormalization()(h + a)
            f = keras.layers.Dense(128, activation="gelu")(h)
            h = keras.layers.LayerNormalization()(h + keras.layers.Dense(64)(f))
        return keras.Model(tokens, keras.layers.Dense(256)(h))

    return EvalTask("transformer_chars", build, _sparse_ce(), split("train"), split("test"), 32,
                    "2-layer transformer (d=64, 4 heads) byte LM on Python sources")


EVAL_TASKS = {
    "mlp_wine": _wine,
    "mlp_breast_cancer": _breast_cancer,
    "regression_diabetes": _diabetes,
    "conv_digits": _conv_digits,
    "conv1d_mnist1d": _conv1d_mnist1d,
    "autoencoder_digits": _autoencoder_digits,
    "lstm_adding": _lstm_adding,
    "gru_copy": _gru_copy,
    "transformer_chars": _transformer_chars,
}


def eval_task_names():
    return sorted(EVAL_TASKS)


def get_eval_task(name):
    if name not in EVAL_TASKS:
        raise ValueError(f"Unknown evaluation task {name!r}. Valid names: {eval_task_names()}")
    return EVAL_TASKS[name]()
