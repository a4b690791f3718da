"""Training tasks for meta-training, and families that sample them.

A `Task` is everything the inner loop needs, as pure functions of tensors:

* `init_params(seed)` -> list of numpy arrays (fresh initial parameters),
* `pooled_init_params(seed, pool_size)` -> the same from a pool of
  `pool_size` initialisations per task, seeded-shuffled (optional; cheap
  where `init_params` builds a model),
* `loss(params, batch)` -> scalar, the training loss,
* `sample_batch(data, seed)` -> a batch, drawn statelessly from `seed`,
* `train_data` / `valid_data`: tuples of arrays held in memory.

`Task.structure` names everything that fixes tensor shapes (architecture,
widths, batch size, data set). Tasks with the same structure share compiled
unroll functions; seeds, initialisation scale and horizons vary freely.

Keras models run statelessly (`stateless_call`) inside the unroll, so any
Keras model without non-trainable state can be a task.
"""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Task:
    """One training problem. See the module docstring."""

    structure: str
    init_params: Callable
    loss: Callable
    sample_batch: Callable
    train_data: Tuple
    valid_data: Tuple
    pooled_init_params: Optional[Callable] = None

    def initial_params(self, seed, pool_size=None):
        """`init_params(seed)`, or `pooled_init_params(seed, pool_size)` when
        a pool size is given and the task has a pool."""
        if pool_size is None or self.pooled_init_params is None:
            return self.init_params(seed)
        return self.pooled_init_params(seed, pool_size)


def _sample_rows(data, seed, batch_size):
    n = data[0].shape[0]
    idx = tf.random.stateless_uniform(
        [batch_size], seed=seed, minval=0, maxval=n, dtype=tf.int32
    )
    return tuple(tf.gather(a, idx) for a in data)


# ----------------------------------------------------------------------------
# Keras-model tasks


def _classification_loss(y, logits):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=logits
        )
    )


def _regression_loss(y, prediction):
    return tf.reduce_mean(tf.square(prediction - y))


def _sequence_loss(y, logits):
    return _classification_loss(tf.reshape(y, [-1]), tf.reshape(logits, [-1, logits.shape[-1]]))


LOSSES = {
    "classification": _classification_loss,
    "regression": _regression_loss,
    "sequence": _sequence_loss,
}


# Random stream (with the trajectory seed) of a pooled initialisation's shuffle.
_POOL_SHUFFLE_STREAM = 15485863


def shuffled_like_init(weight, rng):
    """`weight` permuted along every axis and sign-flipped along its first
    and last, if its rank is >= 2 (else a copy).

    For a tensor drawn i.i.d. from a symmetric distribution, or an
    orthogonal matrix, the result is another draw of the same kind; vectors
    (biases, LayerNorm scales, an LSTM's forget-gate bias) keep their
    structured initial values.
    """
    weight = np.array(weight, np.float32)
    if weight.ndim < 2:
        return weight
    for axis, size in enumerate(weight.shape):
        weight = np.take(weight, rng.permutation(size), axis=axis)
    for axis in (0, weight.ndim - 1):
        shape = [1] * weight.ndim
        shape[axis] = weight.shape[axis]
        weight = weight * rng.choice(np.float32([-1.0, 1.0]), size=shape)
    return weight


def keras_task(structure, build_model, loss, train_data, valid_data, batch_size, init_scale_range=(1.0, 1.0)):
    """A Task over a Keras model.

    Args:
        structure: unique name of the shapes (model, batch size, data).
        build_model: `() -> keras.Model`, built. Called once per
            `init_params` seed under a fixed Keras seed. Non-trainable state
            (seed generators; avoid BatchNormalization) stays at its
            initial value during the unroll.
        loss: key of `LOSSES`.
        train_data, valid_data: `(x, y)` numpy arrays.
        batch_size: examples per inner step.
        init_scale_range: `(low, high)`; each initialisation seed multiplies
            the model's initial weights by a log-uniform factor in it.
    """
    template = build_model()
    # Non-trainable state (e.g. an RNG seed) is held at its initial value.
    frozen = [v.value for v in template.non_trainable_variables]
    loss_fn = LOSSES[loss]

    low, high = init_scale_range

    def init_scale(seed):
        return np.float32(np.exp(np.random.default_rng(int(seed)).uniform(np.log(low), np.log(high))))

    def init_params(seed):
        keras.utils.set_random_seed(int(seed))
        model = build_model()
        return [init_scale(seed) * np.asarray(v.numpy(), np.float32) for v in model.trainable_variables]

    pool = {}

    def pooled_init_params(seed, pool_size):
        index = int(seed) % pool_size
        if index not in pool:
            keras.utils.set_random_seed(index)
            pool[index] = [np.asarray(v.numpy(), np.float32) for v in build_model().trainable_variables]
        rng = np.random.default_rng([int(seed), _POOL_SHUFFLE_STREAM])
        return [init_scale(seed) * shuffled_like_init(w, rng) for w in pool[index]]

    def task_loss(params, batch):
        x, y = batch
        outputs, _ = template.stateless_call(list(params), frozen, x, training=True)
        return loss_fn(y, outputs)

    return Task(
        structure=structure,
        init_params=init_params,
        loss=task_loss,
        sample_batch=functools.partial(_sample_rows, batch_size=batch_size),
        train_data=tuple(np.asarray(a) for a in train_data),
        valid_data=tuple(np.asarray(a) for a in valid_data),
        pooled_init_params=pooled_init_params,
    )


def _mlp(input_shape, widths, outputs, activation):
    layers = [keras.Input(input_shape), keras.layers.Flatten()]
    layers += [keras.layers.Dense(w, activation=activation) for w in widths]
    layers.append(keras.layers.Dense(outputs))
    return keras.Sequential(layers)


def _residual_mlp(input_shape, sizes, outputs, activation):
    """`sizes = (width, blocks)`: pre-LayerNorm residual blocks
    `h + Dense(width)(act(Dense(width)(LayerNorm(h))))`, then LayerNorm."""
    width, blocks = sizes
    inputs = keras.Input(input_shape)
    h = keras.layers.Dense(width)(keras.layers.Flatten()(inputs))
    for _ in range(blocks):
        branch = keras.layers.LayerNormalization()(h)
        branch = keras.layers.Dense(width, activation=activation)(branch)
        h = h + keras.layers.Dense(width)(branch)
    h = keras.layers.LayerNormalization()(h)
    return keras.Model(inputs, keras.layers.Dense(outputs)(h))


def _conv(input_shape, channels, outputs, activation):
    layers = [keras.Input(input_shape)]
    for c in channels:
        layers.append(keras.layers.Conv2D(c, 3, padding="same", activation=activation))
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(outputs)]
    return keras.Sequential(layers)


def _recurrent(cell, seq_len, vocab, embed, units, outputs, sequence_outputs):
    return keras.Sequential(
        [
            keras.Input((seq_len,), dtype="int32"),
            keras.layers.Embedding(vocab, embed),
            # Unrolled: the symbolic while loop of a rolled RNN does not vectorise.
            cell(units, return_sequences=sequence_outputs, unroll=True),
            keras.layers.Dense(outputs),
        ]
    )


_lstm = functools.partial(_recurrent, keras.layers.LSTM)
_gru = functools.partial(_recurrent, keras.layers.GRU)


def _autoencoder(input_shape, widths, outputs, activation):
    """MLP encoder `widths`, mirrored decoder, linear reconstruction `[outputs]`."""
    del input_shape  # the input and output width are both `outputs`
    layers = [keras.Input((outputs,))]
    layers += [keras.layers.Dense(w, activation=activation) for w in widths + widths[-2::-1]]
    layers.append(keras.layers.Dense(outputs))
    return keras.Sequential(layers)


def _transformer(seq_len, vocab, dim, heads, outputs):
    tokens = keras.Input((seq_len,), dtype="int32")
    h = keras.layers.Embedding(vocab, dim)(tokens)
    positions = keras.layers.Embedding(seq_len, dim)(tf.range(seq_len)[None, :])
    h = h + positions
    causal = np.tril(np.ones((seq_len, seq_len), bool))[None]
    attended = keras.layers.MultiHeadAttention(heads, dim // heads)(h, h, attention_mask=causal)
    h = keras.layers.LayerNormalization()(h + attended)
    ff = keras.layers.Dense(2 * dim, activation="gelu")(h)
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(dim)(ff))
    return keras.Model(tokens, keras.layers.Dense(outputs)(h))


# ----------------------------------------------------------------------------
# Analytic tasks for tests


def quadratic_task(dim=16, noise=0.1, seed=0):
    """`0.5 * sum(scales * (x - center)^2)` with gradient noise of std `noise`.

    Scales are log-uniform in [0.1, 10] (fixed by `seed`); the noise enters as
    a random linear term per batch, so the loss is an unbiased estimate.
    """
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), dim)).astype(np.float32)
    center = rng.normal(size=dim).astype(np.float32)

    def init_params(s):
        return [np.random.default_rng(int(s)).normal(size=dim).astype(np.float32)]

    def loss(params, batch):
        (x,) = params
        (direction,) = batch
        return 0.5 * tf.reduce_sum(scales * tf.square(x - center)) + noise * tf.reduce_sum(direction * x)

    def sample_batch(data, seed):
        return (tf.random.stateless_normal([dim], seed=seed),)

    empty = (np.zeros((1, 1), np.float32),)
    return Task(f"quadratic_{dim}_{seed}", init_params, loss, sample_batch, empty, empty)


def rosenbrock_task(seed=0):
    """The 2-D Rosenbrock function, deterministic, starting near (-1.2, 1)."""

    def init_params(s):
        jitter = np.random.default_rng(int(s)).normal(scale=0.1, size=2)
        return [np.array([-1.2, 1.0], np.float32) + jitter.astype(np.float32)]

    def loss(params, batch):
        (p,) = params
        return tf.square(1.0 - p[0]) + 100.0 * tf.square(p[1] - tf.square(p[0]))

    def sample_batch(data, seed):
        return ()

    empty = (np.zeros((1, 1), np.float32),)
    return Task("rosenbrock", init_params, loss, sample_batch, empty, empty)


# ----------------------------------------------------------------------------
# Families


class TaskFamily:
    """A named, finite set of task variants (structures), sampled by seed.

    Args:
        name: family name, as used in meta-training configs.
        variants: sequence of zero-argument callables, each returning a Task.
            They are built on first use and cached.
    """

    def __init__(self, name, variants):
        self.name = name
        self._variants = tuple(variants)
        self._built = {}

    def __len__(self):
        return len(self._variants)

    def task(self, index):
        """The variant with this index (built once, then cached)."""
        if index not in self._built:
            self._built[index] = self._variants[index]()
        return self._built[index]

    def sample(self, rng):
        """`(index, Task)` drawn uniformly with numpy Generator `rng`."""
        index = int(rng.integers(len(self._variants)))
        return index, self.task(index)


_AUGMENT = (0.5, 2.0)


def _data(name):
    from keras_lopt.meta import datasets

    train = datasets.load_numpy(name, "train")
    test = datasets.load_numpy(name, "test")
    return (train["x"], train["y"]), (test["x"], test["y"])


def _char_data(seq_len):
    from keras_lopt.meta import datasets

    def split(name):
        tokens = datasets.load_numpy("python_chars", name)["tokens"]
        return tokens[:, :seq_len], tokens[:, 1 : seq_len + 1]

    return split("train"), split("test")


def _variant_family(name, data, build, input_shape, outputs, loss, variants):
    """A family of `build(input_shape, sizes, outputs, activation)` models.

    `variants` lists `(sizes, activation, batch_size)`; the structure name is
    `{name}_{sizes joined by x}_{activation}_b{batch_size}`.
    """
    train, valid = _data(data)
    return TaskFamily(
        name,
        [
            functools.partial(
                keras_task,
                f"{name}_{'x'.join(map(str, sizes))}_{activation}_b{batch}",
                functools.partial(build, input_shape, sizes, outputs, activation),
                loss, train, valid, batch, _AUGMENT,
            )
            for sizes, activation, batch in variants
        ],
    )


def _mlp_digits_family():
    variants = [((32,), "relu", 64), ((64,), "tanh", 128), ((32, 32), "relu", 64), ((16, 16), "tanh", 32)]
    return _variant_family("mlp_digits", "digits", _mlp, (8, 8, 1), 10, "classification", variants)


def _conv_digits_family():
    variants = [((8,), "relu", 64), ((8, 16), "relu", 32)]
    return _variant_family("conv_digits", "digits", _conv, (8, 8, 1), 10, "classification", variants)


def _mlp_mnist1d_family():
    variants = [((64,), "relu", 64), ((32, 32), "gelu", 128)]
    return _variant_family("mlp_mnist1d", "mnist1d", _mlp, (40,), 10, "classification", variants)


def _mlp_wide_mnist1d_family():
    variants = [((128, 128), "relu", 64), ((256, 256), "gelu", 64)]
    return _variant_family("mlp_wide_mnist1d", "mnist1d", _mlp, (40,), 10, "classification", variants)


def _resmlp_digits_family():
    variants = [((32, 2), "gelu", 64), ((64, 3), "relu", 32)]
    return _variant_family("resmlp_digits", "digits", _residual_mlp, (8, 8, 1), 10, "classification", variants)


def _mlp_regression_family():
    variants = [((32,), "relu", 64), ((64, 64), "tanh", 32)]
    return _variant_family("mlp_regression", "synthetic_regression", _mlp, (16,), 4, "regression", variants)


def _recurrent_parity_family(name, build, variants):
    """`variants`: `(structure, units)`; each model reads parity sequences."""
    train, valid = _data("synthetic_sequences/parity")
    return TaskFamily(
        name,
        [
            functools.partial(
                keras_task,
                structure,
                functools.partial(build, 16, 2, 8, units, 2, True),
                "sequence", train, valid, 32, _AUGMENT,
            )
            for structure, units in variants
        ],
    )


def _lstm_parity_family():
    return _recurrent_parity_family("lstm_parity", _lstm, [("lstm_parity_16_b32", 16)])


def _gru_parity_family():
    return _recurrent_parity_family(
        "gru_parity", _gru, [(f"gru_parity_16_u{units}_b32", units) for units in (16, 32)]
    )


def _attention_parity_family():
    train, valid = _data("synthetic_sequences/parity")
    return TaskFamily(
        "attention_parity",
        [
            functools.partial(
                keras_task,
                f"attention_parity_16_d{dim}_h2_b32",
                functools.partial(_transformer, 16, 2, dim, 2, 2),
                "sequence", train, valid, 32, _AUGMENT,
            )
            for dim in (16, 32)
        ],
    )


def _autoencoder_mnist1d_family():
    (train_x, _), (valid_x, _) = _data("mnist1d")
    train_x, valid_x = np.asarray(train_x), np.asarray(valid_x)
    variants = [((16,), "relu", 64), ((32, 8), "tanh", 32)]
    return TaskFamily(
        "autoencoder_mnist1d",
        [
            functools.partial(
                keras_task,
                f"autoencoder_mnist1d_{'x'.join(map(str, sizes))}_{activation}_b{batch}",
                functools.partial(_autoencoder, None, sizes, 40, activation),
                "regression", (train_x, train_x), (valid_x, valid_x), batch, _AUGMENT,
            )
            for sizes, activation, batch in variants
        ],
    )


def _transformer_chars_family():
    train, valid = _char_data(32)
    return TaskFamily(
        "transformer_chars",
        [
            functools.partial(
                keras_task,
                "transformer_chars_d16_h2_s32_b16",
                functools.partial(_transformer, 32, 256, 16, 2, 256),
                "sequence", train, valid, 16, _AUGMENT,
            )
        ],
    )


def _quadratic_family():
    return TaskFamily(
        "quadratic",
        [functools.partial(quadratic_task, dim=d, seed=s) for d in (8, 32) for s in (0, 1)],
    )


def _rosenbrock_family():
    return TaskFamily("rosenbrock", [rosenbrock_task])


_FAMILY_BUILDERS = {
    "mlp_digits": _mlp_digits_family,
    "conv_digits": _conv_digits_family,
    "mlp_mnist1d": _mlp_mnist1d_family,
    "mlp_wide_mnist1d": _mlp_wide_mnist1d_family,
    "resmlp_digits": _resmlp_digits_family,
    "mlp_regression": _mlp_regression_family,
    "lstm_parity": _lstm_parity_family,
    "gru_parity": _gru_parity_family,
    "attention_parity": _attention_parity_family,
    "autoencoder_mnist1d": _autoencoder_mnist1d_family,
    "transformer_chars": _transformer_chars_family,
    "quadratic": _quadratic_family,
    "rosenbrock": _rosenbrock_family,
}
_FAMILIES = {}


def family_names():
    return sorted(_FAMILY_BUILDERS)




def get_family(name):
    """The TaskFamily called `name` (built once per process)."""
    if name not in _FAMILY_BUILDERS:
        raise ValueError(f"Unknown task family {name!r}. Valid names: {family_names()}")
    if name not in _FAMILIES:
        _FAMILIES[name] = _FAMILY_BUILDERS[name]()
    return _FAMILIES[name]
