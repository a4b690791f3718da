"""A preset's SavedModel: the network and its weights as a `tf.Module` with a
`serving_default` signature (TensorFlow only; `savedmodel.export` writes
presets with it, and loading a preset never needs it).
"""

import tensorflow as tf

from keras_lopt.preset_metadata import has_tensor_state

__all__ = ["save"]


class _WeightsModule(tf.Module):
    """A network's meta-weights as variables (under `attribute`), read by
    the serving function."""

    def __init__(self, network, attribute):
        super().__init__()
        self._network = network
        self._attribute = attribute
        setattr(
            self,
            attribute,
            {w.name: tf.Variable(w.numpy(), name=w.name) for w in network.weights},
        )

    def _weights_and_columns(self, feature_matrix):
        """`([weight], [N] * F)` for `network.forward`."""
        weights = getattr(self, self._attribute)
        columns = tf.unstack(feature_matrix, num=self._network.num_features, axis=-1)
        return [weights[name] for name in self._network.weight_names()], columns


class _ExportModule(_WeightsModule):
    def __init__(self, network, attribute):
        super().__init__(network, attribute)
        self.serve = tf.function(
            self._serve,
            input_signature=[tf.TensorSpec([None, network.num_features], tf.float32)],
        )

    def _serve(self, feature_matrix):
        direction, magnitude = self._network.forward(*self._weights_and_columns(feature_matrix))
        return {"direction": direction, "magnitude": magnitude}


class _RecurrentExportModule(_WeightsModule):
    def __init__(self, network, attribute):
        super().__init__(network, attribute)
        self.serve = tf.function(
            self._serve,
            input_signature=[
                tf.TensorSpec([None, network.num_features], tf.float32),
                tf.TensorSpec([len(network.context_feature_names)], tf.float32),
                *(
                    tf.TensorSpec(list(shape), tf.float32, name=name)
                    for name, shape in zip(network.state_names, network.state_shapes)
                ),
            ],
        )

    def _serve(self, feature_matrix, context, *state):
        direction, magnitude, new_state = self._network.forward(
            *self._weights_and_columns(feature_matrix), context, tuple(state)
        )
        return {
            "direction": direction,
            "magnitude": magnitude,
            **dict(zip(self._network.state_names, new_state)),
        }


def save(network, directory, attribute):
    """Writes `network` as a SavedModel at `directory`, its weights as
    variables under `attribute/<weight name>`.

    Args:
        network: a built learned-optimizer layer.
        directory: a new directory.
        attribute: the name of the weights' dict in the saved object graph.
    """
    module_class = _RecurrentExportModule if has_tensor_state(type(network)) else _ExportModule
    module = module_class(network, attribute)
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
