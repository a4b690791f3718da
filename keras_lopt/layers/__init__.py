"""Learned-optimizer networks, as Keras layers."""

from keras_lopt.layers.bound import BoundNetwork
from keras_lopt.layers.mlp import MLPNetwork

# Architecture kind (as written in a preset's metadata) -> layer class.
ARCHITECTURES = {MLPNetwork.kind: MLPNetwork}

__all__ = ["ARCHITECTURES", "BoundNetwork", "MLPNetwork"]
