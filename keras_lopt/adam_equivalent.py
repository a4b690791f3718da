"""Hand-set MLP weights that make the learned rule reproduce Adam exactly.

With ReLU, `x = relu(x) - relu(-x)`: two hidden units carry the bias-corrected
normalised momentum `m_hat / (sqrt(v_hat) + eps)` (the
`momentum_0p9_normalized` feature, computed with Keras' own algebra) through
every hidden layer to the `direction` output, and `magnitude` is 0. So

    update = learning_rate * m_hat / (sqrt(v_hat) + eps)

which is `keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999,
epsilon=1e-7)`. This is the starting point for meta-training.

`adam_hypergradient_v1` adds a hand-set per-tensor step-size controller
(`hypergradient_weights`) to the same Adam direction: the
starting point for meta-training the adaptive architecture.

Regenerate the shipped presets with
`python -m keras_lopt.adam_equivalent SAVED_MODELS_DIR`.
"""

import os
import sys

import numpy as np

from keras_lopt import features, savedmodel
from keras_lopt.layers import AdaptiveMLPNetwork, MLPNetwork
from keras_lopt.layers.adaptive_mlp import CONTROLLER_INPUT_NAMES

PRESET_NAME = "adam_equivalent_v1"
HYPERGRADIENT_PRESET_NAME = "adam_hypergradient_v1"
# The hand-set controller: alignment gain and bias of
# `hypergradient_weights`.
HYPERGRADIENT_RULE = {"alignment_gain": 2.0, "bias": 0.5}
ADAM_FEATURE = "momentum_0p9_normalized"


def adam_equivalent_weights(network, feature_names=features.FEATURE_NAMES):
    """Weights (list of arrays, `network.weights` order) equal to Adam.

    Args:
        network: an `MLPNetwork` with ReLU and hidden widths of at least 2.
        feature_names: the features `network` reads (one of
            `features.FEATURE_SETS`).
    """
    if network.activation != "relu" or min(network.hidden_sizes) < 2:
        raise ValueError(
            "The Adam-equivalent weights need activation='relu' and hidden "
            "widths of at least 2. Received: "
            f"activation={network.activation!r}, "
            f"hidden_sizes={network.hidden_sizes}"
        )
    weights = [np.zeros(w.shape, np.float32) for w in network.weights]
    features.feature_set_of(feature_names)
    if network.num_features != len(feature_names):
        raise ValueError(
            f"The network takes {network.num_features} features. Expected "
            f"{len(feature_names)}, one per feature name: {list(feature_names)}"
        )
    feature = list(feature_names).index(ADAM_FEATURE)
    weights[0][feature, 0] = 1.0
    weights[0][feature, 1] = -1.0
    for layer in range(1, len(network.hidden_sizes)):
        weights[2 * layer][0, 0] = 1.0
        weights[2 * layer][1, 1] = 1.0
    weights[-2][0, 0] = 1.0
    weights[-2][1, 0] = -1.0
    return weights


def build_network(hidden_sizes=(4, 4), magnitude_scale=0.1, feature_set="full"):
    """An `MLPNetwork` holding the Adam-equivalent weights."""
    names = features.feature_names(feature_set)
    network = MLPNetwork(
        num_features=len(names),
        hidden_sizes=hidden_sizes,
        magnitude_scale=magnitude_scale,
        name=PRESET_NAME,
    )
    network.set_weights(adam_equivalent_weights(network, names))
    return network


def export_preset(path):
    """Writes the `adam_equivalent_v1` preset to `path`."""
    return savedmodel.export(
        build_network(),
        path,
        savedmodel.PresetInfo(
            name=PRESET_NAME,
            learning_rate=1e-3,
            provenance={
                "method": "hand-initialised",
                "meta_trained": False,
                "equivalent_to": "keras.optimizers.Adam(learning_rate=1e-3)",
            },
            description=(
                "Hand-set weights that reproduce Adam(learning_rate=1e-3, "
                "beta_1=0.9, beta_2=0.999, epsilon=1e-7) exactly. Not "
                "meta-trained: the starting point for meta-training."
            ),
        ),
    )


def hypergradient_weights(network, feature_names, seed=0, alignment_gain=2.0, bias=0.5):
    """Hand-set weights: Adam's direction with a hypergradient-style controller.

    The direction MLP passes the Adam-normalised fast momentum through
    (`relu(x) - relu(-x)`), so with `s = 0` the update is exactly Adam's
    at `learning_rate`. The controller moves `s` by
    `max_step_change * tanh(alignment_gain * (alignment + its average)
    + bias)` for the fast momentum's alignment. The other hidden units get
    seeded random input weights and zero output weights, so they start
    silent but can be learned. A starting point for meta-training.

    Args:
        network: an `AdaptiveMLPNetwork` with one hidden layer in each MLP.
        feature_names: the network's `F` feature names (they must include
            `momentum_0p9_normalized`).
        seed: seeds the silent units' weights.
        alignment_gain, bias: the controller's hand-set rule.

    Returns:
        A list of numpy arrays shaped like `network.weights`.
    """
    rng = np.random.default_rng(seed)
    names = list(feature_names)
    fast = f"{features.momentum_slot_names()[0]}_normalized"
    if len(names) != network.num_features or fast not in names:
        raise ValueError(f"Expected {network.num_features} feature names including {fast!r}. Received: {names}")
    if len(network.hidden_sizes) != 1 or network.hidden_sizes[0] < 2 or network.controller_hidden_size < 2:
        raise ValueError(
            "Hand-set weights need one hidden layer of width >= 2 in both "
            f"MLPs. Received: hidden_sizes={network.hidden_sizes}, "
            f"controller_hidden_size={network.controller_hidden_size}"
        )

    def silent(fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype("float32")

    width = network.hidden_sizes[0]
    kernel_0 = silent(network.num_features, width)
    kernel_0[:, :2] = 0.0
    kernel_0[names.index(fast), :2] = (1.0, -1.0)
    kernel_1 = np.zeros((width, 1), "float32")
    kernel_1[:2, 0] = (1.0, -1.0)
    inputs = list(CONTROLLER_INPUT_NAMES)
    k = network.controller_hidden_size
    controller_0 = silent(len(inputs), k)
    controller_0[:, :2] = 0.0
    for name in (
        f"alignment_{features.momentum_slot_names()[0]}",
        f"average_alignment_{features.momentum_slot_names()[0]}",
    ):
        controller_0[inputs.index(name), :2] = (alignment_gain, -alignment_gain)
    controller_1 = np.zeros((k, 1), "float32")
    controller_1[:2, 0] = (1.0, -1.0)
    return [
        kernel_0,
        np.zeros(width, "float32"),
        kernel_1,
        np.zeros(1, "float32"),
        controller_0,
        np.zeros(k, "float32"),
        controller_1,
        np.full(1, bias, "float32"),
    ]


def build_hypergradient_network(feature_set="local"):
    """An `AdaptiveMLPNetwork` with Adam's direction and the hand-set controller."""
    names = features.feature_names(feature_set)
    network = AdaptiveMLPNetwork(num_features=len(names), name=HYPERGRADIENT_PRESET_NAME)
    network.set_weights(hypergradient_weights(network, names, **HYPERGRADIENT_RULE))
    return network


def export_hypergradient_preset(path):
    """Writes the `adam_hypergradient_v1` preset to `path`."""
    return savedmodel.export(
        build_hypergradient_network(),
        path,
        savedmodel.PresetInfo(
            name=HYPERGRADIENT_PRESET_NAME,
            learning_rate=1e-3,
            provenance={
                "method": "hand-initialised",
                "meta_trained": False,
                "rule": HYPERGRADIENT_RULE,
            },
            description=(
                "Adam's direction with a hand-set per-tensor step-size "
                "controller (the step grows while the gradient agrees with the "
                "previous momentum and shrinks when it does not). Not "
                "meta-trained: the starting point for meta-training the "
                "adaptive_mlp architecture."
            ),
            feature_set="local",
        ),
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m keras_lopt.adam_equivalent SAVED_MODELS_DIR")
    print(export_preset(os.path.join(sys.argv[1], PRESET_NAME)).path)
    print(export_hypergradient_preset(os.path.join(sys.argv[1], HYPERGRADIENT_PRESET_NAME)).path)
