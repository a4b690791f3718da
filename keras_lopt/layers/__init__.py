"""Learned-optimizer networks, as Keras layers."""

from keras_lopt.layers.adaptive_mlp import AdaptiveLossMLPNetwork, AdaptiveMLPNetwork
from keras_lopt.layers.bound import BoundNetwork
from keras_lopt.layers.ffn_lstm import FFNLSTMNetwork
from keras_lopt.layers.hyper_lstm import HyperLSTMNetwork
from keras_lopt.layers.mlp import MLPNetwork

# Architecture kind (as written in a preset's metadata) -> layer class.
ARCHITECTURES = {
    cls.kind: cls for cls in (MLPNetwork, FFNLSTMNetwork, HyperLSTMNetwork, AdaptiveMLPNetwork, AdaptiveLossMLPNetwork)
}
# The kinds with a per-tensor step-size controller (`AdaptiveMLPNetwork`).
ADAPTIVE_KINDS = (AdaptiveMLPNetwork.kind, AdaptiveLossMLPNetwork.kind)

__all__ = [
    "ADAPTIVE_KINDS",
    "ARCHITECTURES",
    "AdaptiveLossMLPNetwork",
    "AdaptiveMLPNetwork",
    "BoundNetwork",
    "FFNLSTMNetwork",
    "HyperLSTMNetwork",
    "MLPNetwork",
]
