"""What the two recurrent architectures share: a per-tensor LSTM and its checks.

Both `FFNLSTMNetwork` and `HyperLSTMNetwork` run one small LSTM per parameter
tensor (shared weights, separate state) on the tensor's context vector
(`features.CONTEXT_FEATURE_NAMES`: summaries of the element features,
training progress, loss features), then a per-parameter MLP whose inputs
(FFN+LSTM) or weights (hyper-LSTM) the LSTM's output sets. The per-element
work is that of an `MLPNetwork` with the same hidden sizes; the LSTM costs a
few hundred flops per tensor.

The recurrent state is two vectors of `lstm_hidden_size` floats per
parameter tensor (`state_names`, `state_shapes`).
"""

import numpy as np
from keras import ops

from keras_lopt import features, validation
from keras_lopt.layers.mlp import MLPNetwork, PresetNetworkLayer, matvec_transposed


class _Untracked:
    """Holds a layer without Keras tracking it (its weights stay out of ours)."""

    def __init__(self, layer):
        self.layer = layer


def lstm_cell(kernel, recurrent_kernel, bias, inputs, hidden, cell):
    """One LSTM step on vectors.

    Args:
        kernel: `[I, 4H]`, gates in Keras' order (input, forget, cell, output).
        recurrent_kernel: `[H, 4H]`.
        bias: `[4H]`.
        inputs: `[I]`.
        hidden, cell: `[H]`.

    Returns:
        `(new_hidden [H], new_cell [H])`.
    """
    z = matvec_transposed(kernel, inputs) + matvec_transposed(recurrent_kernel, hidden) + bias
    i, f, g, o = ops.split(z, 4)
    new_cell = ops.sigmoid(f) * cell + ops.sigmoid(i) * ops.tanh(g)
    return ops.sigmoid(o) * ops.tanh(new_cell), new_cell


class RecurrentNetwork(PresetNetworkLayer):
    """Base of the per-tensor-LSTM architectures (not used on its own).

    Subclasses add the per-parameter weights after the LSTM's (in their
    `__init__`) and define `_parameter_forward`.

    Args:
        num_features: `F`, the number of per-element input features
            (element and tensor features, as for `MLPNetwork`).
        num_context_features: `C`, the size of the per-tensor context vector.
        lstm_hidden_size: `H`, the LSTM's width.
        hidden_sizes: widths of the per-parameter MLP's hidden layers.
        activation: the per-parameter MLP's activation, `"relu"` or `"tanh"`.
        magnitude_scale: `b` in `update = lr * direction * exp(b * magnitude)`.
        max_log_multiplier: as for `MLPNetwork`.
    """

    state_names = ("lstm_hidden", "lstm_cell")
    reads_loss = True
    context_feature_names = features.CONTEXT_FEATURE_NAMES
    # The preset-metadata keys of `get_config()` (besides the optional
    # `max_log_multiplier`), extended by subclasses.
    config_keys = ("hidden_sizes", "activation", "magnitude_scale", "lstm_hidden_size")

    def __init__(
        self,
        num_features,
        num_context_features,
        lstm_hidden_size=4,
        hidden_sizes=(4, 4),
        activation="relu",
        magnitude_scale=0.1,
        max_log_multiplier=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        validation.positive_int("num_features", num_features)
        validation.positive_int("num_context_features", num_context_features)
        validation.positive_int("lstm_hidden_size", lstm_hidden_size)
        self.num_features = num_features
        self.num_context_features = num_context_features
        self.lstm_hidden_size = lstm_hidden_size
        # The per-parameter MLP's math and validation; its own weights are
        # unused (ours are passed to `forward`).
        self._mlp = _Untracked(
            MLPNetwork(
                num_features=num_features + self._extra_mlp_inputs(),
                hidden_sizes=hidden_sizes,
                activation=activation,
                magnitude_scale=magnitude_scale,
                max_log_multiplier=max_log_multiplier,
                name=f"{self.name}_mlp_template",
            )
        )
        mlp = self._mlp.layer
        self.hidden_sizes = mlp.hidden_sizes
        self.activation = mlp.activation
        self.magnitude_scale = mlp.magnitude_scale
        self.max_log_multiplier = mlp.max_log_multiplier
        h = lstm_hidden_size
        self.state_shapes = ((h,), (h,))
        self.add_weight(
            shape=(num_context_features, 4 * h),
            initializer="glorot_uniform",
            name="lstm_kernel",
        )
        self.add_weight(shape=(h, 4 * h), initializer="orthogonal", name="lstm_recurrent_kernel")
        # Forget-gate bias 1 (Keras' `unit_forget_bias`): the state persists
        # from the start.
        forget_bias = np.concatenate([np.zeros(h), np.ones(h), np.zeros(2 * h)]).astype("float32")
        self.add_weight(
            shape=(4 * h,),
            initializer=lambda shape, dtype: forget_bias,
            name="lstm_bias",
        )
        self.built = True

    def _extra_mlp_inputs(self):
        """Per-tensor inputs appended to the MLP's `F` features."""
        return 0

    def mlp_shapes(self):
        """Weight shapes of the per-parameter MLP: kernel_0, bias_0, ..."""
        return [tuple(w.shape) for w in self._mlp.layer.weights]

    def weight_names(self):
        """Names of `self.weights`, in order."""
        return [w.name for w in self.weights]

    def forward(self, weights, columns, context, state):
        """Applies the network with explicit weights.

        Args:
            weights: list of float32 tensors shaped like `self.weights`.
            columns: list of `F` float32 feature columns, as for
                `MLPNetwork.forward` (scalars for tensor features).
            context: float32 `[C]`, the tensor's context vector.
            state: `(lstm_hidden [H], lstm_cell [H])`.

        Returns:
            `(direction, magnitude, new_state)`: float32 tensors of the
            columns' shape `S` and the new `(lstm_hidden, lstm_cell)`.
        """
        if len(columns) != self.num_features:
            raise ValueError(f"Expected {self.num_features} feature columns. Received: {len(columns)} columns")
        hidden, cell = lstm_cell(*weights[:3], context, *state)
        direction, magnitude = self._parameter_forward(weights[3:], columns, hidden)
        return direction, magnitude, (hidden, cell)

    def call(self, features, context, lstm_hidden, lstm_cell):
        """features `[N, F]`, context `[C]`, state `[H]` x 2 ->
        (direction `[N]`, magnitude `[N]`, (lstm_hidden `[H]`, lstm_cell `[H]`))."""
        features = ops.convert_to_tensor(features, "float32")
        columns = ops.unstack(features, num=self.num_features, axis=-1)
        return self.forward(
            [w.value for w in self.weights],
            columns,
            ops.convert_to_tensor(context, "float32"),
            (
                ops.convert_to_tensor(lstm_hidden, "float32"),
                ops.convert_to_tensor(lstm_cell, "float32"),
            ),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_features": self.num_features,
                "num_context_features": self.num_context_features,
                "lstm_hidden_size": self.lstm_hidden_size,
                "hidden_sizes": list(self.hidden_sizes),
                "activation": self.activation,
                "magnitude_scale": self.magnitude_scale,
                "max_log_multiplier": self.max_log_multiplier,
            }
        )
        return config

    def _check_mlp(self, mlp_network, mlp_weights):
        if not isinstance(mlp_network, MLPNetwork) or (
            mlp_network.hidden_sizes != self.hidden_sizes
            or mlp_network.activation != self.activation
            or mlp_network.num_features != self.num_features
        ):
            raise ValueError(
                f"Expected an MLPNetwork with num_features={self.num_features}, "
                f"hidden_sizes={self.hidden_sizes}, activation="
                f"{self.activation!r} to start {type(self).__name__} from. "
                f"Received: {mlp_network!r}"
            )
        return [np.asarray(w, np.float32) for w in mlp_weights]
