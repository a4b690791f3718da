"""keras_lopt: learned optimizers for Keras 3 (TensorFlow, JAX and PyTorch backends)."""

import os as _os
import sys as _sys

# TensorFlow logs informational lines (CPU instruction sets, ...) to stderr
# when it starts. Hide those, and only those (level 1 keeps warnings), unless
# the user chose a level or TensorFlow already started.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from keras_lopt.backend import check_backend as _check_backend  # noqa: E402

_check_backend()

from keras_lopt.callbacks import TrainingHorizon  # noqa: E402
from keras_lopt.compilation_cache import enable_compilation_cache  # noqa: E402
from keras_lopt.guard import AdamGuard  # noqa: E402
from keras_lopt.optimizer import LearnedOptimizer  # noqa: E402
from keras_lopt.presets import list_presets, preset_info  # noqa: E402
from keras_lopt.version import __version__  # noqa: E402


def load_learned_optimizer(path_or_preset, **kwargs):
    """Returns a `LearnedOptimizer` for a preset name or preset directory.

    Args:
        path_or_preset: a name from `list_presets()` or a SavedModel
            directory written by `keras_lopt.savedmodel.export`.
        **kwargs: further `LearnedOptimizer` arguments.
    """
    return LearnedOptimizer(preset=path_or_preset, **kwargs)


__all__ = [
    "AdamGuard",
    "LearnedOptimizer",
    "TrainingHorizon",
    "__version__",
    "enable_compilation_cache",
    "list_presets",
    "load_learned_optimizer",
    "preset_info",
]
