"""metadata.json of a preset: the format's versions, writing and checks.

`format_version` counts the format's history; each version adds to the one
before:

    1  per-element networks (`mlp`): `serving_default` maps a float32
       `feature_matrix [N, F]` to `{"direction": [N], "magnitude": [N]}`;
       metadata.json holds `_REQUIRED_FIELDS` (and a `description`).
    2  networks with per-tensor state (`ffn_lstm`, `hyper_lstm`,
       `adaptive_mlp`, `adaptive_loss_mlp`): `serving_default` also takes the tensor's `context`
       `[C]` and its state (named as `network_state` names it) and also
       returns the new state; metadata.json adds `context_feature_names` and
       `network_state` (`names`, `shapes`).
    3  a step scaled down by each kernel's fan-in (`keras_lopt.fan_in`):
       `output.fan_in_base`, a positive number; with per-tensor state, the
       fields of version 2 too.

A preset is written in the oldest version that holds it
(`format_version_of`): an `mlp` preset is version 1, one with per-tensor
state version 2, one with a `fan_in_base` version 3, so every keras_lopt
that reads presets of a kind reads the ones written later. The version is thus a function of the contents, and a
file whose version and contents disagree is refused. A change to the format
adds a version to `FORMAT_HISTORY`.

`read_metadata` validates a file field by field (`_METADATA_CHECKS`) and
raises a `ValueError` naming the path, the field, what was expected and
what was found.
"""

import json
import math
import os
from typing import Any, Callable, Dict, Optional, Tuple

from keras_lopt import features, validation
from keras_lopt.layers import ADAPTIVE_KINDS, ARCHITECTURES
from keras_lopt.version import __version__

__all__ = [
    "DTYPE",
    "FAN_IN_VERSION",
    "FORMAT_HISTORY",
    "METADATA_FILE",
    "TENSOR_STATE_VERSION",
    "build_metadata",
    "format_version_of",
    "has_tensor_state",
    "invalid",
    "network_state_of",
    "read_metadata",
]

METADATA_FILE = "metadata.json"
DTYPE = "float32"
_REQUIRED_FIELDS = (
    "format_version",
    "name",
    "architecture",
    "feature_names",
    "output",
    "dtype",
    "provenance",
    "keras_lopt_version",
)
# What each format version added to the one before.
FORMAT_HISTORY = {
    1: "per-element networks",
    2: "networks with per-tensor state: context_feature_names, network_state",
    3: "a step scaled by fan-in: output.fan_in_base",
}
TENSOR_STATE_VERSION = 2
FAN_IN_VERSION = 3


def has_tensor_state(network_class) -> bool:
    """Whether `network_class` keeps per-tensor state (format version 2)."""
    return bool(network_class.state_names)


def format_version_of(network_class, fan_in_base=None) -> int:
    """The oldest format version that holds a preset of `network_class`
    (with a step scaled by fan-in if `fan_in_base` is not None)."""
    if fan_in_base is not None:
        return FAN_IN_VERSION
    return TENSOR_STATE_VERSION if has_tensor_state(network_class) else 1


def network_state_of(network) -> Dict[str, list]:
    """metadata.json's `network_state` of `network`."""
    return {
        "names": list(network.state_names),
        "shapes": [list(shape) for shape in network.state_shapes],
    }


def _architecture_of(network):
    config = network.get_config()
    if has_tensor_state(type(network)):
        keys = list(network.config_keys)
    else:
        keys = ["hidden_sizes", "activation", "magnitude_scale"]
    # Optional fields: written only when set, so presets without a bound (or
    # an odd direction) keep the metadata they always had.
    if config.get("max_log_multiplier") is not None:
        keys.append("max_log_multiplier")
    if config.get("odd_direction"):
        keys.append("odd_direction")
    return {"kind": network.kind, "config": {k: config[k] for k in keys}}


def _formula_of(network):
    if network.kind in ADAPTIVE_KINDS:
        return (
            "update = learning_rate * direction * exp(s); s <- clip(s + "
            "max_step_change * tanh(controller(inputs)), *log_step_range) per tensor"
        )
    log_multiplier = "magnitude_scale * magnitude"
    bound = getattr(network, "max_log_multiplier", None)
    if bound is not None:
        log_multiplier = f"max_log_multiplier * tanh({log_multiplier} / max_log_multiplier)"
    return f"update = learning_rate * direction * exp({log_multiplier})"


def build_metadata(network, info) -> Dict[str, Any]:
    """metadata.json of `network` exported with `info` (a
    `savedmodel.PresetInfo`)."""
    metadata = {
        "format_version": format_version_of(type(network), info.fan_in_base),
        "name": info.name,
        "description": info.description,
        "architecture": _architecture_of(network),
        "feature_names": list(features.feature_names(info.feature_set)),
        "output": {
            "learning_rate": float(info.learning_rate),
            "magnitude_scale": network.magnitude_scale,
            "formula": _formula_of(network),
        },
        "dtype": DTYPE,
        "provenance": info.provenance,
        "keras_lopt_version": __version__,
    }
    if info.fan_in_base is not None:
        metadata["output"]["fan_in_base"] = float(info.fan_in_base)
    if has_tensor_state(type(network)):
        metadata["context_feature_names"] = list(network.context_feature_names)
        metadata["network_state"] = network_state_of(network)
    return metadata


def invalid(path, field: str, expected, received) -> ValueError:
    """The error for a preset at `path` whose `field` is not `expected`."""
    return ValueError(
        f"Invalid learned-optimizer SavedModel at {path!r}: field `{field}` "
        f"is wrong. Expected: {expected}. Received: {received!r}"
    )


# A check of metadata.json returns None, or `(field, expected, received)`
# for `invalid`. `_METADATA_CHECKS` runs them in order; each may assume
# that the ones before it passed.
_Problem = Optional[Tuple[str, Any, Any]]


def _kind(metadata):
    architecture = metadata["architecture"]
    return architecture.get("kind") if isinstance(architecture, dict) else None


def _check_required_fields(metadata) -> _Problem:
    missing = [k for k in _REQUIRED_FIELDS if k not in metadata]
    if missing:
        return missing[0], f"all of {list(_REQUIRED_FIELDS)}", "missing"
    return None


def _check_format_version(metadata) -> _Problem:
    version, kind = metadata["format_version"], _kind(metadata)
    if kind in ARCHITECTURES and isinstance(metadata["output"], dict):
        expected = format_version_of(ARCHITECTURES[kind], metadata["output"].get("fan_in_base"))
        if version != expected:
            return "format_version", expected, version
    elif version not in FORMAT_HISTORY:
        return "format_version", f"one of {list(FORMAT_HISTORY)}", version
    return None


def _check_tensor_state_fields(metadata) -> _Problem:
    kind = _kind(metadata)
    if kind in ARCHITECTURES:
        if not has_tensor_state(ARCHITECTURES[kind]):
            return None
    elif metadata["format_version"] < TENSOR_STATE_VERSION:
        return None
    for key in ("context_feature_names", "network_state"):
        if key not in metadata:
            return key, f"present in format version {TENSOR_STATE_VERSION}", "missing"
    expected = list(
        getattr(ARCHITECTURES.get(_kind(metadata)), "context_feature_names", features.CONTEXT_FEATURE_NAMES)
    )
    if metadata["context_feature_names"] != expected:
        return (
            "context_feature_names",
            f"this version's context features {expected}",
            metadata["context_feature_names"],
        )
    return None


def _check_feature_names(metadata) -> _Problem:
    names = metadata["feature_names"]
    if not isinstance(names, list) or tuple(names) not in features.FEATURE_SETS.values():
        sets = {k: list(v) for k, v in features.FEATURE_SETS.items()}
        return "feature_names", f"the features of one of this version's feature sets {sets}", names
    return None


def _check_dtype(metadata) -> _Problem:
    if metadata["dtype"] != DTYPE:
        return "dtype", repr(DTYPE), metadata["dtype"]
    return None


def _check_positive_output(key, optional=False) -> Callable[[Dict], _Problem]:
    def check(metadata):
        output = metadata["output"]
        if optional and isinstance(output, dict) and key not in output:
            return None
        value = output.get(key) if isinstance(output, dict) else None
        if not (validation.is_number(value) and math.isfinite(value) and value > 0):
            return f"output.{key}", "a positive number", value
        return None

    return check


_METADATA_CHECKS = (
    _check_required_fields,
    _check_format_version,
    _check_tensor_state_fields,
    _check_feature_names,
    _check_dtype,
    _check_positive_output("learning_rate"),
    _check_positive_output("magnitude_scale"),
    _check_positive_output("fan_in_base", optional=True),
)


def _read_json(path):
    metadata_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise ValueError(f"Invalid learned-optimizer SavedModel at {path!r}: missing file `{METADATA_FILE}`.")
    try:
        with open(metadata_path) as f:
            metadata = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"Invalid learned-optimizer SavedModel at {path!r}: `{METADATA_FILE}` is not valid JSON ({e})."
        ) from None
    if not isinstance(metadata, dict):
        raise invalid(path, METADATA_FILE, "a JSON object", metadata)
    return metadata


def read_metadata(path) -> Dict[str, Any]:
    """The validated `metadata.json` of a preset directory (a dict)."""
    metadata = _read_json(path)
    for check in _METADATA_CHECKS:
        problem = check(metadata)
        if problem is not None:
            raise invalid(path, *problem)
    return metadata
