"""Task families for meta-training: named sets of task variants, and the
models and data the built-in families train.

A `TaskFamily` holds a few variants (structures) of one kind of problem; a
meta-training run samples a family, then a variant, per task slot. The
built-in families are named in configs (`MetaTrainConfig.task_families`,
`family_names()`) and built on first use (`get_family`).
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from keras_lopt.meta import tasks

__all__ = ["TaskFamily", "family_names", "get_family"]


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


class PatchConv2D(keras.layers.Layer):
    """`Conv2D(filters, kernel_size, padding="same")` as shifted slices and
    one matmul.

    The same function and the same initial weights as Keras' layer (kernel
    `[k, k, C, filters]`, glorot-uniform; zero bias), written so that its
    gradient vectorises over ES members: `tf.vectorized_map` has no rule for
    the filter gradient of a convolution and runs it as a loop over
    members, which made a conv family cost ~10x an MLP family per step.
    """

    def __init__(self, filters, kernel_size, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        shape = (self.kernel_size, self.kernel_size, input_shape[-1], self.filters)
        self.kernel = self.add_weight(shape=shape, initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, inputs):
        k = self.kernel_size
        before = (k - 1) // 2
        height, width = inputs.shape[1], inputs.shape[2]
        padded = keras.ops.pad(inputs, [[0, 0], [before, k - 1 - before], [before, k - 1 - before], [0, 0]])
        # [B, H, W, k * k * C], ordered as the kernel's first three axes.
        patches = keras.ops.concatenate(
            [padded[:, i : i + height, j : j + width, :] for i in range(k) for j in range(k)], axis=-1
        )
        kernel = keras.ops.reshape(self.kernel, (-1, self.filters))
        return self.activation(keras.ops.matmul(patches, kernel) + self.bias)


def _conv(input_shape, channels, outputs, activation):
    layers = [keras.Input(input_shape)]
    for c in channels:
        layers.append(PatchConv2D(c, 3, activation=activation))
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


def _keras_family(name, loss, train, valid, variants):
    """A family of Keras tasks on one data set.

    `variants` lists `(structure, build_model, batch_size)`.
    """
    return TaskFamily(
        name,
        [
            functools.partial(tasks.keras_task, structure, build, loss, train, valid, batch, _AUGMENT)
            for structure, build, batch in variants
        ],
    )


def _variant_family(name, data, build, input_shape, outputs, loss, variants):
    """A family of `build(input_shape, sizes, outputs, activation)` models.

    `variants` lists `(sizes, activation, batch_size)`; the structure name is
    `{name}_{sizes joined by x}_{activation}_b{batch_size}`.
    """
    train, valid = _data(data)
    return _keras_family(
        name,
        loss,
        train,
        valid,
        [
            (
                f"{name}_{'x'.join(map(str, sizes))}_{activation}_b{batch}",
                functools.partial(build, input_shape, sizes, outputs, activation),
                batch,
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


def _mlp_width_mnist1d_family():
    """Two-layer MLPs from 64 to 512 units: a step that suits one width
    but not another shows here (with a fan-in base, the wide ones train
    with a smaller step per kernel)."""
    variants = [((64, 64), "relu", 64), ((256, 256), "relu", 64), ((512, 512), "gelu", 64)]
    return _variant_family("mlp_width_mnist1d", "mnist1d", _mlp, (40,), 10, "classification", variants)


def _mlp_noisy_teacher_family():
    """MLPs on 4000 examples with 20% random labels (the "meta" teacher, not
    the selection suite's): gradients stay noisy while the clean labels are
    fit, and a step that grows there stalls the training loss (the default
    of 2026-12-03 grew to its largest step on the selection suite's draw)."""
    variants = [((64, 64), "relu", 32), ((128,), "gelu", 64)]
    return _variant_family(
        "mlp_noisy_teacher", "noisy_teacher_classification/meta", _mlp, (24,), 6, "classification", variants
    )


def _resmlp_noisy_teacher_family():
    """Pre-LayerNorm residual MLPs on the noisy-label data of
    `mlp_noisy_teacher`: the kind of task where a step grown on noisy
    gradients stalled the training loss of a candidate on the selection
    suite (2026-12-04), here in meta-training so that the objective sees it."""
    variants = [((64, 2), "gelu", 32), ((96, 3), "relu", 32)]
    return _variant_family(
        "resmlp_noisy_teacher",
        "noisy_teacher_classification/meta",
        _residual_mlp,
        (24,),
        6,
        "classification",
        variants,
    )


def _resmlp_digits_family():
    variants = [((32, 2), "gelu", 64), ((64, 3), "relu", 32)]
    return _variant_family("resmlp_digits", "digits", _residual_mlp, (8, 8, 1), 10, "classification", variants)


def _mlp_regression_family():
    variants = [((32,), "relu", 64), ((64, 64), "tanh", 32)]
    return _variant_family("mlp_regression", "synthetic_regression", _mlp, (16,), 4, "regression", variants)


def _parity_family(name, variants):
    """`variants`: `(structure, build_model)`, each reading parity sequences
    in batches of 32."""
    train, valid = _data("synthetic_sequences/parity")
    return _keras_family(name, "sequence", train, valid, [(structure, build, 32) for structure, build in variants])


def _lstm_parity_family():
    return _parity_family("lstm_parity", [("lstm_parity_16_b32", functools.partial(_lstm, 16, 2, 8, 16, 2, True))])


def _gru_parity_family():
    return _parity_family(
        "gru_parity",
        [(f"gru_parity_16_u{units}_b32", functools.partial(_gru, 16, 2, 8, units, 2, True)) for units in (16, 32)],
    )


def _attention_parity_family():
    return _parity_family(
        "attention_parity",
        [(f"attention_parity_16_d{dim}_h2_b32", functools.partial(_transformer, 16, 2, dim, 2, 2)) for dim in (16, 32)],
    )


def _gru_reverse_family():
    """GRUs recalling 8 symbols in reverse order: a recurrent task that keeps
    improving with large steps for thousands of steps (Adam's best rate
    for GRU 32 over 2000 steps is 1e-2)."""
    train, valid = _data("synthetic_sequences/reverse")
    return _keras_family(
        "gru_reverse",
        "sequence",
        train,
        valid,
        [
            (f"gru_reverse_8_u{units}_b{batch}", functools.partial(_gru, 17, 8, 8, units, 8, True), batch)
            for units, batch in ((32, 32), (64, 64))
        ],
    )


def _autoencoder_mnist1d_family():
    (train_x, _), (valid_x, _) = _data("mnist1d")
    train_x, valid_x = np.asarray(train_x), np.asarray(valid_x)
    return _keras_family(
        "autoencoder_mnist1d",
        "regression",
        (train_x, train_x),
        (valid_x, valid_x),
        [
            (
                f"autoencoder_mnist1d_{'x'.join(map(str, sizes))}_{activation}_b{batch}",
                functools.partial(_autoencoder, None, sizes, 40, activation),
                batch,
            )
            for sizes, activation, batch in [((16,), "relu", 64), ((32, 8), "tanh", 32)]
        ],
    )


def _transformer_chars_family():
    train, valid = _char_data(32)
    return _keras_family(
        "transformer_chars",
        "sequence",
        train,
        valid,
        [("transformer_chars_d16_h2_s32_b16", functools.partial(_transformer, 32, 256, 16, 2, 256), 16)],
    )


def _quadratic_family():
    return TaskFamily(
        "quadratic",
        [functools.partial(tasks.quadratic_task, dim=d, seed=s) for d in (8, 32) for s in (0, 1)],
    )


def _rosenbrock_family():
    return TaskFamily("rosenbrock", [tasks.rosenbrock_task])


_FAMILY_BUILDERS = {
    "mlp_digits": _mlp_digits_family,
    "conv_digits": _conv_digits_family,
    "mlp_mnist1d": _mlp_mnist1d_family,
    "mlp_wide_mnist1d": _mlp_wide_mnist1d_family,
    "mlp_width_mnist1d": _mlp_width_mnist1d_family,
    "resmlp_digits": _resmlp_digits_family,
    "resmlp_noisy_teacher": _resmlp_noisy_teacher_family,
    "mlp_noisy_teacher": _mlp_noisy_teacher_family,
    "mlp_regression": _mlp_regression_family,
    "lstm_parity": _lstm_parity_family,
    "gru_parity": _gru_parity_family,
    "gru_reverse": _gru_reverse_family,
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
