"""The Keras backends keras_lopt runs on, checked when it is imported.

The update rule and the optimizer are written in TensorFlow, so Keras must
run on its TensorFlow backend. Support for another backend is one more name
in `SUPPORTED_BACKENDS`, once the code runs there.
"""

import keras

SUPPORTED_BACKENDS = ("tensorflow",)


def check_backend(backend=None):
    """Raises an `ImportError` unless keras_lopt runs on Keras' backend.

    Args:
        backend: a backend name; defaults to `keras.backend.backend()`.
    """
    backend = keras.backend.backend() if backend is None else backend
    if backend not in SUPPORTED_BACKENDS:
        raise ImportError(
            f"keras_lopt needs Keras' TensorFlow backend, but Keras is using "
            f"the {backend!r} backend. Set the environment variable "
            "KERAS_BACKEND=tensorflow before Keras is imported (or "
            '"backend": "tensorflow" in ~/.keras/keras.json).'
        )
