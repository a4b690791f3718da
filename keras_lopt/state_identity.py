"""The optimizer's state identity as a TensorFlow trackable (TensorFlow
backend only): `tf.train.Checkpoint` saves it beside the optimizer's
variables, and restoring another preset's or layout's state raises."""

import json

import tensorflow as tf

from keras_lopt.saved_state import identity_mismatch

__all__ = ["StateIdentity"]


class StateIdentity(tf.Module):
    """What wrote an optimizer's state, checked when a checkpoint is restored.

    `tf.train.Checkpoint` saves it next to the optimizer's variables (as one
    string) and hands it back through `_restore_from_tensors` before the
    optimizer runs again. A checkpoint written by another preset or another
    state layout raises there, in `checkpoint.restore(...)`, whether or not
    the optimizer has been built yet.
    """

    def __init__(self, optimizer_name, identity):
        super().__init__(name="state_identity")
        self._optimizer_name = optimizer_name
        # A JSON string: tf.Module would wrap a dict attribute for tracking.
        self._identity = json.dumps(identity, sort_keys=True)

    @property
    def identity(self):
        """The identity, a dict of JSON values."""
        return json.loads(self._identity)

    def _serialize_to_tensors(self):
        return {"identity": tf.constant(self._identity)}

    def _restore_from_tensors(self, restored_tensors):
        stored = restored_tensors["identity"]
        if tf.executing_eagerly():
            reason = identity_mismatch(json.loads(stored.numpy().decode()), self.identity)
            if reason:
                raise ValueError(f"Cannot restore the state of LearnedOptimizer '{self._optimizer_name}': {reason}.")
            return tf.no_op()
        # Traced restore functions (e.g. of a SavedModel) compare in-graph.
        return tf.debugging.assert_equal(
            stored,
            tf.constant(self._identity),
            message=f"LearnedOptimizer '{self._optimizer_name}': the "
            "checkpoint was written by another preset or state layout.",
        )
