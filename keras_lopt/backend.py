"""The Keras backends keras_lopt runs on, checked when it is imported.

The optimizer's update path is written in `keras.ops` and runs on the
TensorFlow, JAX and PyTorch backends (tested on each: the same trajectories
as on TensorFlow). The meta-trainer (`meta/`), exporting presets,
`tf.train.Checkpoint` and `tf.distribute` need TensorFlow (a dependency);
on JAX and PyTorch nothing imports it, and presets are read with numpy
(`tensor_bundle`), so the optimizer runs where TensorFlow is not installed.
Support for another backend is one more name in `SUPPORTED_BACKENDS`, once
it is tested there.
"""

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax", "torch")


def check_backend(backend=None):
    """Raises an `ImportError` unless keras_lopt runs on Keras' backend.

    Args:
        backend: a backend name; defaults to `keras.backend.backend()`.
    """
    backend = keras.backend.backend() if backend is None else backend
    if backend not in SUPPORTED_BACKENDS:
        raise ImportError(
            f"keras_lopt runs on Keras' TensorFlow, JAX or PyTorch backend, but "
            f"Keras is using the {backend!r} backend. Set the environment variable "
            "KERAS_BACKEND to tensorflow, jax or torch before Keras is "
            'imported (or "backend": "jax" in ~/.keras/keras.json).'
        )


def dense(x):
    """A dense tensor of Keras' backend from a tensor, variable or
    `tf.IndexedSlices`.

    TensorFlow gives the gradient of an embedding lookup as `IndexedSlices`
    (one row per lookup, repeated indices not yet summed), and `keras.ops`
    keeps them sparse: `ops.square` would square each lookup's row before
    the rows are summed. The rule needs the summed, dense gradient.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(x)
    return keras.ops.convert_to_tensor(x)
