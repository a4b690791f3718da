"""keras_lopt: learned optimizers for Keras 3."""

from keras_lopt.callbacks import TrainingHorizon
from keras_lopt.guard import AdamGuard
from keras_lopt.optimizer import LearnedOptimizer
from keras_lopt.presets import list_presets
from keras_lopt.version import __version__


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
    "list_presets",
    "load_learned_optimizer",
]
