"""The presets shipped in saved_models/, by name, and their registry.

`saved_models/presets.json` says what each shipped preset is for: its status
(one of `STATUSES`), a description and its measured step cost. The preset
directories say what it computes (architecture, feature set). Exactly one
preset has the status "default": changing the default, or adding a preset,
is an edit of that file (and a directory for a new preset).

Names and paths: a string that is the name of a shipped preset means that
preset, even where a directory of the same name exists (a warning says so);
any other string, and any `os.PathLike`, is a preset directory. Write
`"./mlp_es_v4"` or pass a `pathlib.Path` to use a local directory that has a
shipped preset's name.
"""

import dataclasses
import functools
import importlib.resources
import json
import math
import os
import warnings

from keras_lopt import features, savedmodel

REGISTRY_FILE = "presets.json"
REGISTRY_SCHEMA_VERSION = 1
# "reference": hand-made, not meta-trained; "unstable": diverges on held-out
# tasks, not offered by `list_presets()`.
STATUSES = ("default", "reference", "experimental", "superseded", "unstable")


@dataclasses.dataclass(frozen=True)
class PresetDetails:
    """What the registry and the preset directory say about a shipped preset.

    Args:
        name: the preset's name.
        status: one of `STATUSES`.
        description: what it is and how it did on held-out tasks.
        architecture: the network's kind (`keras_lopt.layers.ARCHITECTURES`).
        feature_set: the features it reads (`keras_lopt.features.FEATURE_SETS`).
        fit_step_vs_adam: measured step cost, time of a `fit` step over
            Adam's (the case is `step_cost_case`).
        step_cost_source: where the measurement is reported.
        step_cost_case: what was timed.
        path: the preset directory.
    """

    name: str
    status: str
    description: str
    architecture: str
    feature_set: str
    fit_step_vs_adam: float
    step_cost_source: str
    step_cost_case: str
    path: str


def presets_dir():
    """The folder holding the shipped presets.

    Installed wheels carry it as the package `keras_lopt.saved_models`; a
    source checkout has it at the repository root.
    """
    installed = importlib.resources.files("keras_lopt") / "saved_models"
    if installed.is_dir():
        return os.fspath(installed)
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "saved_models")


def _invalid_registry(path, field, expected, received):
    return ValueError(
        f"Invalid preset registry {path!r}: `{field}` is wrong. Expected: {expected}. Received: {received!r}"
    )


def _validate_entry(path, name, entry):
    if not isinstance(entry, dict) or set(entry) != {"status", "description", "step_cost"}:
        raise _invalid_registry(path, f"presets.{name}", "an object with status, description, step_cost", entry)
    if entry["status"] not in STATUSES:
        raise _invalid_registry(path, f"presets.{name}.status", f"one of {STATUSES}", entry["status"])
    if not (isinstance(entry["description"], str) and entry["description"]):
        raise _invalid_registry(path, f"presets.{name}.description", "a non-empty string", entry["description"])
    cost = entry["step_cost"]
    ratio = cost.get("fit_step_vs_adam") if isinstance(cost, dict) else None
    if not (
        isinstance(cost, dict)
        and set(cost) == {"fit_step_vs_adam", "source"}
        and isinstance(ratio, (int, float))
        and math.isfinite(ratio)
        and ratio > 0
        and isinstance(cost["source"], str)
    ):
        raise _invalid_registry(
            path,
            f"presets.{name}.step_cost",
            "{'fit_step_vs_adam': a positive number, 'source': a string}",
            cost,
        )


@functools.cache
def _registry():
    """The validated registry: `(step_cost_case, {name: entry})`."""
    root = presets_dir()
    path = os.path.join(root, REGISTRY_FILE)
    try:
        with open(path) as f:
            registry = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"Cannot read the preset registry {path!r}: {e}") from None
    if not isinstance(registry, dict):
        raise _invalid_registry(path, "(top level)", "a JSON object", registry)
    if registry.get("schema_version") != REGISTRY_SCHEMA_VERSION:
        raise _invalid_registry(path, "schema_version", REGISTRY_SCHEMA_VERSION, registry.get("schema_version"))
    if set(registry) != {"schema_version", "step_cost_case", "presets"}:
        raise _invalid_registry(path, "(keys)", ["schema_version", "step_cost_case", "presets"], sorted(registry))
    entries = registry["presets"]
    if not isinstance(entries, dict):
        raise _invalid_registry(path, "presets", "an object {name: entry}", entries)
    for name, entry in entries.items():
        _validate_entry(path, name, entry)
    defaults = [name for name, entry in entries.items() if entry["status"] == "default"]
    if len(defaults) != 1:
        raise _invalid_registry(path, "status", "exactly one preset with status 'default'", defaults)
    directories = sorted(
        name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, savedmodel.METADATA_FILE))
    )
    if sorted(entries) != directories:
        raise _invalid_registry(path, "presets", f"one entry per preset directory {directories}", sorted(entries))
    return registry["step_cost_case"], entries


def default_preset():
    """The name of the preset `LearnedOptimizer()` uses (status "default")."""
    _, entries = _registry()
    return next(name for name, entry in entries.items() if entry["status"] == "default")


DEFAULT_PRESET = default_preset()


def list_presets(include_unstable=False):
    """Sorted names of the shipped presets.

    Args:
        include_unstable: also name the presets whose status is "unstable"
            (they load, with a warning, but diverge on held-out tasks).
    """
    _, entries = _registry()
    return sorted(name for name, entry in entries.items() if include_unstable or entry["status"] != "unstable")


def preset_info(name):
    """What a shipped preset is: its status, description, architecture,
    feature set and measured step cost (a `PresetDetails`).

    Args:
        name: a shipped preset, e.g. one of `list_presets()`.
    """
    case, entries = _registry()
    if name not in entries:
        raise ValueError(f"`name` must be a shipped preset, one of {sorted(entries)}. Received: name={name!r}")
    entry = entries[name]
    path = os.path.join(presets_dir(), name)
    metadata = savedmodel.read_metadata(path)
    return PresetDetails(
        name=name,
        status=entry["status"],
        description=entry["description"],
        architecture=metadata["architecture"]["kind"],
        feature_set=features.feature_set_of(metadata["feature_names"]),
        fit_step_vs_adam=float(entry["step_cost"]["fit_step_vs_adam"]),
        step_cost_source=entry["step_cost"]["source"],
        step_cost_case=case,
        path=path,
    )


def markdown_table():
    """The shipped presets as a Markdown table, the default first (the
    README's table is this text; a test keeps them equal)."""
    order = {status: i for i, status in enumerate(STATUSES)}
    details = sorted(
        (preset_info(name) for name in list_presets(include_unstable=True)),
        key=lambda d: (order[d.status], d.name),
    )
    lines = [
        "| preset | status | architecture | features | fit step vs Adam | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for d in details:
        lines.append(
            f"| `{d.name}` | {d.status} | {d.architecture} | {d.feature_set} | "
            f"{d.fit_step_vs_adam:.2f}x | {d.description} |"
        )
    return "\n".join(lines)


def is_shipped(path_or_preset):
    """Whether `path_or_preset` names a shipped preset (a `str` only)."""
    _, entries = _registry()
    return isinstance(path_or_preset, str) and path_or_preset in entries


def resolve(path_or_preset):
    """Maps a preset name or a preset directory to a directory path.

    A shipped name wins over a directory of the same name (with a warning);
    loading an "unstable" preset warns. Directories come back absolute.
    """
    if not isinstance(path_or_preset, (str, os.PathLike)):
        raise ValueError(f"Expected a preset name or a SavedModel directory path. Received: {path_or_preset!r}")
    if is_shipped(path_or_preset):
        name = path_or_preset
        if os.path.isdir(name):
            warnings.warn(
                f"{name!r} is the name of a shipped preset and of a directory in "
                f"{os.getcwd()!r}: the shipped preset is used. To use the directory, "
                f"pass it as a path, e.g. './{name}'.",
                stacklevel=3,
            )
        _, entries = _registry()
        if entries[name]["status"] == "unstable":
            warnings.warn(
                f"Preset {name!r} is unstable: {entries[name]['description']}",
                stacklevel=3,
            )
        return os.path.join(presets_dir(), name)
    value = os.fspath(path_or_preset)
    if os.path.isdir(value):
        return os.path.abspath(value)
    raise ValueError(
        f"{value!r} is neither a shipped preset nor a SavedModel directory. Shipped presets: {list_presets()}"
    )


def load_preset(path_or_preset):
    """Loads and validates a preset by name or path -> `LoadedPreset`."""
    return savedmodel.load(resolve(path_or_preset))
