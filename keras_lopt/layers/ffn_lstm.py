"""FFN+LSTM learned optimizer (Metz et al. 2020, "Tasks, stability,
architecture, and compute")."""

import keras
import numpy as np
from keras import ops

from keras_lopt.layers.lstm import RecurrentNetwork


@keras.saving.register_keras_serializable(package="keras_lopt")
class FFNLSTMNetwork(RecurrentNetwork):
    """Per-tensor LSTM whose output conditions a per-parameter feed-forward net.

    For each parameter tensor, an LSTM reads the tensor's context `[C]`
    (mean and RMS of the Adam-normalised gradient and momenta, training
    progress, tensor size, loss features) and updates its state. Its hidden
    vector `h [H]` is appended to every element's `F` features, and the MLP
    `F + H -> hidden_sizes -> 2` gives `(direction, magnitude)`. Since `h` is
    constant over the tensor, it folds into the MLP's first bias: the
    per-element cost is that of an `MLPNetwork` of the same hidden sizes.

    Weights, in order: `lstm_kernel [C, 4H]`, `lstm_recurrent_kernel [H, 4H]`,
    `lstm_bias [4H]`, then `ffn_kernel_0 [F + H, h0]`, `ffn_bias_0 [h0]`, ...
    (the rows of `ffn_kernel_0` after the first `F` read `h`).

    Args: as `RecurrentNetwork`.
    """

    kind = "ffn_lstm"

    def __init__(self, num_features, num_context_features, **kwargs):
        super().__init__(num_features, num_context_features, **kwargs)
        for name, shape in zip([w.name for w in self._mlp.layer.weights], self.mlp_shapes()):
            self.add_weight(
                shape=shape,
                initializer="zeros" if name.startswith("bias") else "glorot_uniform",
                name=f"ffn_{name}",
            )

    def _extra_mlp_inputs(self):
        return self.lstm_hidden_size

    def _parameter_forward(self, weights, columns, hidden):
        conditioning = ops.unstack(hidden, num=self.lstm_hidden_size)
        return self._mlp.layer.forward(weights, [*columns, *conditioning])

    def weights_from_mlp(self, mlp_network, mlp_weights):
        """This network's weights with the per-parameter part set from an MLP.

        The LSTM weights are this network's current ones; the MLP's first
        kernel gets zero rows for `h`, so the result computes exactly what
        `mlp_network` with `mlp_weights` computes (e.g. Adam, from
        `adam_equivalent_v1`), whatever the LSTM does: a meta-training start.

        Args:
            mlp_network: an `MLPNetwork` with the same `num_features`,
                `hidden_sizes` and `activation`.
            mlp_weights: its weights (arrays, `mlp_network.weights` order).

        Returns:
            A list of arrays in `self.weights` order.
        """
        mlp_weights = self._check_mlp(mlp_network, mlp_weights)
        first = np.concatenate(
            [
                mlp_weights[0],
                np.zeros((self.lstm_hidden_size, mlp_weights[0].shape[1]), np.float32),
            ]
        )
        lstm = [w.numpy() for w in self.weights[:3]]
        return lstm + [first] + mlp_weights[1:]
