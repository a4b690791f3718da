"""The per-parameter MLP learned-optimizer network."""

import keras
import numpy as np
from keras import ops

from keras_lopt import validation


def _relu(x):
    # max(x, 0): what `relu` computes, as an operation that TensorFlow
    # lowers to XLA directly (its `Relu` goes through an MLIR pipeline per
    # use: milliseconds of compilation each, and the direction MLP has
    # several per variable).
    return ops.maximum(x, 0.0)


ACTIVATIONS = {"relu": _relu, "tanh": ops.tanh}


def _scalars(kernel):
    """`[I, J]` tensor -> nested lists `[I][J]` of its scalars."""
    rows, columns = kernel.shape
    flat = ops.unstack(ops.reshape(kernel, [-1]), num=rows * columns)
    return [flat[i * columns : (i + 1) * columns] for i in range(rows)]


def matvec_transposed(matrix, vector):
    """`matrix [I, J]`, `vector [I]` -> `vector @ matrix`, `[J]`."""
    if keras.backend.backend() == "tensorflow":
        # The op the meta-trained presets were trained and golden-tested
        # with: other contractions may round differently.
        import tensorflow as tf

        return tf.linalg.matvec(matrix, vector, transpose_a=True)
    return ops.matmul(ops.expand_dims(vector, 0), matrix)[0]


def add_dense_weights(layer, sizes, prefix=""):
    """Adds the weights of a dense stack `sizes[0] -> ... -> sizes[-1]` to
    `layer`: `{prefix}kernel_i [sizes[i], sizes[i + 1]]` (Glorot uniform)
    and `{prefix}bias_i [sizes[i + 1]]` (zeros), in that order."""
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer.add_weight(shape=(fan_in, fan_out), initializer="glorot_uniform", name=f"{prefix}kernel_{i}")
        layer.add_weight(shape=(fan_out,), initializer="zeros", name=f"{prefix}bias_{i}")


def exact_zeros(kernels):
    """Where each kernel is exactly zero: a static pattern for
    `elementwise_mlp`'s `zeros`.

    Args:
        kernels: the MLP's kernels `[I, J]` in layer order, concrete arrays.

    Returns:
        A tuple with one `[I][J]` nested tuple of bools per kernel.
    """
    return tuple(tuple(tuple(bool(v == 0.0) for v in row) for row in np.asarray(k)) for k in kernels)


def _live_units(zeros, num_outputs):
    """The units of each layer that reach an output through a weight that is
    not exactly zero: one sorted list per layer, the outputs' last."""
    live = [list(range(num_outputs))]
    for kernel_zeros in reversed(zeros[1:]):
        later = live[0]
        live.insert(0, [j for j, row in enumerate(kernel_zeros) if any(not row[k] for k in later)])
    return live


def split_weights(weights):
    """`weights` of `elementwise_mlp` split into their scalars once, for
    several calls with the same weights (`elementwise_mlp(..., split=)`):
    eagerly (PyTorch) each split is one operation per weight tensor per
    call, which repeated for every variable of a step cost about a quarter
    of the step.

    Returns:
        `(kernels, biases)`: per layer, `kernels[l][i][j]`; per layer after
        the first, `biases[l - 1][j]` (the first layer's bias takes the
        scalar columns in each call, so it is split there).
    """
    return tuple(_scalars(k) for k in weights[0::2]), tuple(ops.unstack(b) for b in weights[3::2])


def elementwise_mlp(weights, columns, activation, zeros=None, split=None):
    """An MLP applied to every element of its input columns independently.

    Args:
        weights: `[kernel_0 [F, h0], bias_0 [h0], kernel_1, bias_1, ...]`.
        columns: list of `F` float32 tensors broadcastable to one shape `S`.
            Scalar (rank-0) columns are folded into the first layer's bias
            before any per-element work.
        activation: a key of `ACTIVATIONS`, applied after every layer but
            the last.
        zeros: None, or `exact_zeros` of the kernels' values: the per-element
            terms of kernel entries that are exactly zero, and the units no
            output reads, are left out. For finite columns the outputs are
            the same (adding `x * 0` changes no sum; XLA may fuse, and so
            round, the smaller program differently); the LearnedOptimizer
            passes the pattern of its preset's fixed weights, meta-training
            none (its weights move).
        split: None, or `split_weights(weights)` of these same weights.

    Returns:
        A list of the last layer's outputs, float32 tensors of shape `S`.
    """
    activation = ACTIVATIONS[activation]
    kernel, bias = weights[0], weights[1]
    scalar_idx = [i for i, c in enumerate(columns) if len(c.shape) == 0]
    element_idx = [i for i, c in enumerate(columns) if len(c.shape) != 0]
    first_bias = bias
    if scalar_idx:
        scalars = ops.stack([columns[i] for i in scalar_idx])
        first_bias = bias + matvec_transposed(ops.take(kernel, scalar_idx, axis=0), scalars)
    num_layers = len(weights) // 2
    num_outputs = weights[-1].shape[0]
    if zeros is None:
        zeros = tuple(tuple((False,) * w.shape[1] for _ in range(w.shape[0])) for w in weights[0::2])
    live = _live_units(zeros, num_outputs)
    element_shape = tuple(columns[element_idx[0]].shape) if element_idx else ()
    # Unrolled over the tiny widths so XLA fuses the whole network (and the
    # feature computation before it) into one elementwise pass. Each weight
    # tensor is split into its scalars by one op, not one slice per scalar:
    # the traced program, and so tracing and XLA compilation, stay small.
    kernels, biases = split if split is not None else split_weights(weights)
    kernel = kernels[0]
    first_bias = ops.unstack(first_bias)
    hidden = {}
    for j in live[0]:
        acc = first_bias[j]
        for i in element_idx:
            if not zeros[0][i][j]:
                acc = acc + columns[i] * kernel[i][j]
        hidden[j] = acc if num_layers == 1 else activation(acc)
    for layer in range(1, num_layers):
        kernel, bias = kernels[layer], biases[layer - 1]
        is_output = layer == num_layers - 1
        outputs = {}
        for j in live[layer]:
            acc = bias[j]
            for i, h in hidden.items():
                if not zeros[layer][i][j]:
                    acc = acc + h * kernel[i][j]
            outputs[j] = acc if is_output else activation(acc)
        hidden = outputs
    # An output that reads no element feature is a scalar: give it the shape.
    return [
        hidden[j] if len(hidden[j].shape) or not element_idx else ops.broadcast_to(hidden[j], element_shape)
        for j in range(num_outputs)
    ]


class PresetNetworkLayer(keras.layers.Layer):
    """Base of the learned-optimizer networks: an architecture whose weights
    are a preset's.

    Keras files do not hold these weights. Keras saves every Keras object an
    optimizer exposes, so `LearnedOptimizer.network` would otherwise put a
    second copy of the network into `.keras` files and load it apart from
    the optimizer's state; the optimizer saves the weights as its own
    `network_*` variables, restored with the rest of its state or not at all.
    """

    def save_own_variables(self, store):
        del store

    def load_own_variables(self, store):
        del store


@keras.saving.register_keras_serializable(package="keras_lopt")
class MLPNetwork(PresetNetworkLayer):
    """Per-parameter MLP: features `[N, F]` -> (direction `[N]`, magnitude `[N]`).

    The same small MLP is applied to every parameter element independently,
    in the style of small_fc_lopt. Its cost is paid for every parameter on
    every step, so the default is two hidden layers of width 4.

    The math lives in `forward`, a pure function of an explicit weight list,
    so the optimizer (weights held as optimizer variables) and meta-training
    (perturbed weights) run exactly the same computation as `call`.

    Args:
        num_features: `F`, the number of input features.
        hidden_sizes: widths of the hidden layers.
        activation: `"relu"` or `"tanh"`.
        magnitude_scale: `b` in `update = lr * direction * exp(b * magnitude)`.
        max_log_multiplier: `B`, or None. When set, the log step multiplier
            `b * magnitude` is squashed to `B * tanh(b * magnitude / B)`, so
            the step stays within `[exp(-B), exp(B)]` times
            `lr * direction` whatever the inputs: a trained network cannot
            blow up on a task unlike those it was meta-trained on. Near
            zero the squash is the identity.
    """

    kind = "mlp"
    # No per-tensor recurrent state (see `layers/lstm.py` for networks with).
    state_names = ()
    state_shapes = ()
    reads_loss = False

    def __init__(
        self,
        num_features,
        hidden_sizes=(4, 4),
        activation="relu",
        magnitude_scale=0.1,
        max_log_multiplier=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        validation.positive_int("num_features", num_features)
        hidden_sizes = validation.positive_ints("hidden_sizes", hidden_sizes)
        validation.one_of("activation", activation, sorted(ACTIVATIONS))
        validation.require(
            validation.is_number(magnitude_scale) and magnitude_scale > 0,
            "magnitude_scale",
            magnitude_scale,
            "positive",
        )
        if max_log_multiplier is not None:
            validation.positive_number("max_log_multiplier", max_log_multiplier, rule="a positive number or None")
        self.num_features = num_features
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.magnitude_scale = float(magnitude_scale)
        self.max_log_multiplier = None if max_log_multiplier is None else float(max_log_multiplier)
        add_dense_weights(self, (num_features, *hidden_sizes, 2))
        self.built = True

    def weight_names(self):
        """Names of `self.weights`, in order: kernel_0, bias_0, kernel_1, ..."""
        return [w.name for w in self.weights]

    def exact_zeros(self, weights):
        """`elementwise_mlp`'s `zeros` for concrete `weights` (arrays shaped
        like `self.weights`)."""
        return exact_zeros(weights[0::2])

    def forward(self, weights, columns, zeros=None):
        """Applies the MLP with explicit weights.

        Args:
            weights: list of float32 tensors shaped like `self.weights`.
            columns: list of `F` float32 tensors, one per feature, all
                broadcastable to one shape `S`. Scalar (rank-0) columns are
                folded into the first layer's bias before any per-element
                work.
            zeros: None, or `self.exact_zeros` of the values `weights` hold:
                terms of exactly zero weights are left out.

        Returns:
            `(direction, magnitude)`, float32 tensors of shape `S`.
        """
        if len(columns) != self.num_features:
            raise ValueError(f"Expected {self.num_features} feature columns. Received: {len(columns)} columns")
        direction, magnitude = elementwise_mlp(weights, columns, self.activation, zeros)
        if self.max_log_multiplier is not None:
            bound, scale = self.max_log_multiplier, self.magnitude_scale
            magnitude = (bound / scale) * ops.tanh(magnitude * (scale / bound))
        return direction, magnitude

    def call(self, features):
        """features `[N, F]` -> (direction `[N]`, magnitude `[N]`)."""
        features = ops.convert_to_tensor(features, "float32")
        columns = ops.unstack(features, num=self.num_features, axis=-1)
        return self.forward([w.value for w in self.weights], columns)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_features": self.num_features,
                "hidden_sizes": list(self.hidden_sizes),
                "activation": self.activation,
                "magnitude_scale": self.magnitude_scale,
                "max_log_multiplier": self.max_log_multiplier,
            }
        )
        return config
