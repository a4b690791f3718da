"""The presets shipped in saved_models/, by name."""

import importlib.resources
import os

from keras_lopt import savedmodel

DEFAULT_PRESET = "mlp_local_es_v1"


def presets_dir():
    """The folder holding the shipped presets.

    Installed wheels carry it as the package `keras_lopt.saved_models`; a
    source checkout has it at the repository root.
    """
    installed = importlib.resources.files("keras_lopt") / "saved_models"
    if installed.is_dir():
        return os.fspath(installed)
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "saved_models")


def list_presets():
    """Sorted names of the shipped presets."""
    root = presets_dir()
    return sorted(
        name
        for name in os.listdir(root)
        if os.path.isfile(os.path.join(root, name, savedmodel.METADATA_FILE))
    )


def resolve(path_or_preset):
    """Maps a preset name or a SavedModel directory to a directory path."""
    if not isinstance(path_or_preset, (str, os.PathLike)):
        raise ValueError(
            "Expected a preset name or a SavedModel directory path. "
            f"Received: {path_or_preset!r}"
        )
    value = os.fspath(path_or_preset)
    if value in list_presets():
        return os.path.join(presets_dir(), value)
    if os.path.isdir(value):
        return value
    raise ValueError(
        f"{value!r} is neither a shipped preset nor a SavedModel directory. "
        f"Shipped presets: {list_presets()}"
    )


def load_preset(path_or_preset):
    """Loads and validates a preset by name or path -> `LoadedPreset`."""
    return savedmodel.load(resolve(path_or_preset))
