"""The test suite: tasks that report a candidate default and choose nothing.

Run once per candidate; never used to pick checkpoints, recipes, presets,
task settings or steps. It covers what a learned optimizer must transfer to
(issue 18): a width ladder (one model family at 1x, 4x and 16x width, the
largest over 1M parameters), a length ladder (one task at 1k, 5k and 10k
steps), a pre-LayerNorm transformer, a residual network with LayerNorm, a
recurrent language model, an ill-conditioned low-dimensional problem, a
small tabular set and a conv net with batch normalization. Some data sets
are shared with meta-training families (digits, mnist1d, Python sources)
and the selection suite, the models on them are not: batch normalization,
residual LayerNorm blocks, pre-LN attention, byte-level MLP and LSTM
language models. A meta-training family must not add these pairs.
"""

import keras
import numpy as np

from keras_lopt.evaluation.tasks import (
    EvalTask,
    cached,
    dataset,
    mlp,
    preln_residual_mlp,
    python_chars,
    sklearn_split,
    sparse_ce,
)

CONTEXT = 16  # bytes the MLP language model reads
WIDTHS = (64, 256, 1024)
LENGTHS = (1000, 5000, 10000)
LM_SEQ = 32


@cached
def _byte_contexts():
    """(previous 16 bytes [N, 16], next byte [N]) at 8 positions per window."""

    def split(name):
        tokens = python_chars(name)
        positions = range(CONTEXT, tokens.shape[1], CONTEXT)
        return (
            np.concatenate([tokens[:, p - CONTEXT : p] for p in positions]),
            np.concatenate([tokens[:, p] for p in positions]),
        )

    return split("train"), split("test")


def _byte_mlp_lm(width):
    def build():
        return keras.Sequential(
            [
                keras.Input((CONTEXT,), dtype="int32"),
                keras.layers.Embedding(256, 16),
                keras.layers.Flatten(),
                keras.layers.Dense(width, activation="gelu"),
                keras.layers.Dense(width, activation="gelu"),
                keras.layers.Dense(256),
            ]
        )

    return build


def _residual_mlp():
    """4 pre-LayerNorm residual blocks of width 64 (hidden 128)."""
    return preln_residual_mlp(40, 10, width=64, hidden=128, blocks=4)


def _preln_transformer():
    """2 pre-LayerNorm blocks (d=64, 4 heads, no mask) over 16 symbols."""
    length, symbols, dim = 16, 16, 64
    tokens = keras.Input((length,), dtype="int32")
    h = keras.layers.Embedding(symbols, dim)(tokens)
    h = h + keras.layers.Embedding(length, dim)(keras.ops.arange(length)[None, :])
    for _ in range(2):
        u = keras.layers.LayerNormalization()(h)
        h = h + keras.layers.MultiHeadAttention(4, dim // 4)(u, u)
        u = keras.layers.LayerNormalization()(h)
        h = h + keras.layers.Dense(dim)(keras.layers.Dense(2 * dim, activation="gelu")(u))
    h = keras.layers.LayerNormalization()(h)
    return keras.Model(tokens, keras.layers.Dense(symbols)(h))


@cached
def _char_sequences():
    """The 4 quarters of each window: inputs [N, 32] and next bytes [N, 32]."""

    def split(name):
        tokens = python_chars(name)
        starts = range(0, tokens.shape[1] - 1, LM_SEQ)
        return (
            np.concatenate([tokens[:, a : a + LM_SEQ] for a in starts]),
            np.concatenate([tokens[:, a + 1 : a + LM_SEQ + 1] for a in starts]),
        )

    return split("train"), split("test")


def _lstm_lm():
    return keras.Sequential(
        [
            keras.Input((LM_SEQ,), dtype="int32"),
            keras.layers.Embedding(256, 32),
            keras.layers.LSTM(128, return_sequences=True),
            keras.layers.Dense(256),
        ]
    )


@cached
def _scaled_linear():
    (tx, ty), (vx, vy) = dataset("scaled_linear_regression")
    return (tx, ty[:, None]), (vx, vy[:, None])


@cached
def _iris():
    from sklearn.datasets import load_iris

    return sklearn_split(load_iris)


def _convbn():
    def conv(filters):
        return [
            keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ]

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            *conv(32),
            *conv(32),
            keras.layers.MaxPooling2D(2),
            *conv(64),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


_cost = {64: 3.0, 256: 5.0, 1024: 20.0}
TASKS = (
    *(
        EvalTask(
            f"byte_mlp_lm_w{w}",
            f"byte MLP LM (16-byte context, 2 x Dense({w}) gelu) on Python sources",
            _byte_mlp_lm(w),
            sparse_ce(),
            _byte_contexts,
            64,
            2000,
            _cost[w],
            ladder="width",
        )
        for w in WIDTHS
    ),
    *(
        EvalTask(
            f"resmlp_ln_mnist1d_{n // 1000}k",
            f"residual MLP, 4 pre-LN blocks of 64, on mnist1d, {n} steps",
            _residual_mlp,
            sparse_ce(),
            cached(lambda: dataset("mnist1d")),
            64,
            n,
            4.0,
            ladder="length",
        )
        for n in LENGTHS
    ),
    EvalTask(
        "preln_transformer_sort",
        "pre-LN transformer (2 blocks, d=64, 4 heads) sorting 16 symbols",
        _preln_transformer,
        sparse_ce(),
        cached(lambda: dataset("synthetic_sequences/sort")),
        64,
        2000,
        10.0,
    ),
    EvalTask(
        "lstm_lm_chars",
        "LSTM 128 byte LM (32 bytes) on Python sources",
        _lstm_lm,
        sparse_ce(),
        _char_sequences,
        32,
        2000,
        40.0,
    ),
    EvalTask(
        "linear_scaled_features",
        "linear regression, 10 features of scales 1e-2..1e2",
        lambda: keras.Sequential([keras.Input((10,)), keras.layers.Dense(1)]),
        keras.losses.MeanSquaredError(),
        _scaled_linear,
        32,
        2000,
        1.0,
    ),
    EvalTask(
        "mlp_iris", "MLP 32-32 on iris (3 classes)", lambda: mlp((4,), (32, 32), 3), sparse_ce(), _iris, 16, 2000, 1.0
    ),
    EvalTask(
        "convbn_digits",
        "conv 32-32-pool-64 with BatchNormalization + GAP on 8x8 digits",
        _convbn,
        sparse_ce(),
        cached(lambda: dataset("digits")),
        32,
        2000,
        6.0,
    ),
)
