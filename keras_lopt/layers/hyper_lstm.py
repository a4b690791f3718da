"""Per-tensor LSTM hypernetwork learned optimizer (VeLO style, Metz et al. 2022)."""

import keras
import numpy as np
from keras import ops

from keras_lopt import validation
from keras_lopt.layers.lstm import RecurrentNetwork
from keras_lopt.layers.mlp import matvec_transposed


@keras.saving.register_keras_serializable(package="keras_lopt")
class HyperLSTMNetwork(RecurrentNetwork):
    """Per-tensor LSTM that generates the weights of a per-parameter MLP.

    As in VeLO, each parameter tensor has an LSTM state, updated from the
    tensor's context `[C]` (training progress, loss features when the loss
    is known, gradient and momentum summaries). From its hidden vector
    `h [H]` a softmax gives mixing coefficients `a = softmax(h W + b) [K]`
    over a bank of `K` MLP weight sets, and the tensor's per-parameter MLP
    `F -> hidden_sizes -> 2` uses the weights `sum_k a_k * bank_k`. The mixed
    output bias acts as a per-tensor step-size and direction offset. Mixing
    is per tensor; the per-element cost is that of an `MLPNetwork` of the
    same hidden sizes.

    Weights, in order: `lstm_kernel [C, 4H]`, `lstm_recurrent_kernel [H, 4H]`,
    `lstm_bias [4H]`, `mixing_kernel [H, K]`, `mixing_bias [K]`, then
    `bank_kernel_0 [K, F, h0]`, `bank_bias_0 [K, h0]`, ...

    Args:
        bank_size: `K`, the number of MLP weight sets mixed.
        Others: as `RecurrentNetwork`.
    """

    kind = "hyper_lstm"
    config_keys = RecurrentNetwork.config_keys + ("bank_size",)

    def __init__(self, num_features, num_context_features, bank_size=4, **kwargs):
        validation.positive_int("bank_size", bank_size)
        super().__init__(num_features, num_context_features, **kwargs)
        self.bank_size = bank_size
        self.add_weight(
            shape=(self.lstm_hidden_size, bank_size),
            initializer="glorot_uniform",
            name="mixing_kernel",
        )
        self.add_weight(shape=(bank_size,), initializer="zeros", name="mixing_bias")
        for name, shape in zip([w.name for w in self._mlp.layer.weights], self.mlp_shapes()):
            self.add_weight(
                shape=(bank_size, *shape),
                initializer="zeros" if name.startswith("bias") else "glorot_uniform",
                name=f"bank_{name}",
            )

    def _parameter_forward(self, weights, columns, hidden):
        mixing_kernel, mixing_bias, *bank = weights
        coefficients = ops.softmax(matvec_transposed(mixing_kernel, hidden) + mixing_bias)
        mixed = [ops.tensordot(coefficients, w, axes=1) for w in bank]
        return self._mlp.layer.forward(mixed, columns)

    def weights_from_mlp(self, mlp_network, mlp_weights):
        """This network's weights with every bank member set to an MLP's.

        The LSTM and mixing weights are this network's current ones. Any
        convex mix of equal members is that member, so the result computes
        exactly what `mlp_network` with `mlp_weights` computes (e.g. Adam,
        from `adam_equivalent_v1`): a meta-training start.

        Args:
            mlp_network: an `MLPNetwork` with the same `num_features`,
                `hidden_sizes` and `activation`.
            mlp_weights: its weights (arrays, `mlp_network.weights` order).

        Returns:
            A list of arrays in `self.weights` order.
        """
        mlp_weights = self._check_mlp(mlp_network, mlp_weights)
        own = [w.numpy() for w in self.weights[:5]]
        return own + [np.stack([w] * self.bank_size) for w in mlp_weights]

    def get_config(self):
        config = super().get_config()
        config["bank_size"] = self.bank_size
        return config
