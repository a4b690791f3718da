"""The preset format: a TensorFlow SavedModel plus a validated metadata.json.

A preset directory holds

    saved_model.pb, variables/   a SavedModel whose `serving_default` maps a
                                 float32 feature matrix `[N, F]` (and, for
                                 networks with per-tensor state, a context
                                 and the state) to `direction`, `magnitude`
                                 (and the new state)
    metadata.json                what the network is and where it came from:
                                 `preset_metadata` (its format versions too)

The SavedModel is the distribution format. At run time the network is the
layers/ code with its weights read from `variables/`; loading reads only the
checkpoint and the JSON, so it never executes anything stored in the preset.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np

from keras_lopt import features, tensor_bundle, validation
from keras_lopt.layers import ARCHITECTURES
from keras_lopt.preset_metadata import (
    FORMAT_HISTORY,
    METADATA_FILE,
    TENSOR_STATE_VERSION,
    build_metadata,
    format_version_of,
    has_tensor_state,
    invalid,
    network_state_of,
    read_metadata,
)

__all__ = [
    "FORMAT_HISTORY",
    "METADATA_FILE",
    "TENSOR_STATE_VERSION",
    "LoadedPreset",
    "PresetInfo",
    "export",
    "format_version_of",
    "load",
    "read_metadata",
]

_WEIGHTS_ATTRIBUTE = "network_weights"


@dataclasses.dataclass(frozen=True)
class PresetInfo:
    """What an exported preset says about itself.

    Args:
        name: readable preset name, e.g. `"adam_equivalent_v1"`.
        learning_rate: the default `lr` of `update = lr * direction * ...`.
        provenance: how the weights were made (JSON-serialisable dict):
            meta-training task families, estimator, steps, seeds, wall time,
            final meta-loss, or `{"method": "hand-initialised", ...}`.
        description: one paragraph for humans.
        feature_set: the network's inputs, one of `features.FEATURE_SETS`
            (written to metadata.json as their `feature_names`).
        fan_in_base: a kernel's step is scaled by `min(1, fan_in_base /
            fan_in)` (`keras_lopt.fan_in`); None: no scaling.
    """

    name: str
    learning_rate: float
    provenance: dict
    description: str = ""
    feature_set: str = features.DEFAULT_FEATURE_SET
    fan_in_base: Optional[float] = None

    def __post_init__(self):
        validation.require(
            isinstance(self.name, str) and self.name.isidentifier(),
            "name",
            self.name,
            "a valid identifier such as 'small_mlp_v1'",
        )
        validation.positive_number("learning_rate", self.learning_rate)
        if self.fan_in_base is not None:
            validation.positive_number("fan_in_base", self.fan_in_base)
        validation.require(isinstance(self.provenance, dict), "provenance", self.provenance, "a dict")
        features.feature_names(self.feature_set)


@dataclasses.dataclass(frozen=True)
class LoadedPreset:
    """A validated preset: its path, metadata, network and weight values.

    `weights` are numpy arrays in `network.weights` order, kept so that
    variables can be initialised from them inside traced functions.
    """

    path: str
    metadata: dict
    network: object
    weights: tuple

    @property
    def name(self):
        return self.metadata["name"]

    @property
    def learning_rate(self):
        return self.metadata["output"]["learning_rate"]

    @property
    def fan_in_base(self):
        """`output.fan_in_base` (`keras_lopt.fan_in`), or None."""
        return self.metadata["output"].get("fan_in_base")

    @property
    def feature_names(self):
        """The features the network reads (a tuple, `rule.step`'s order)."""
        return tuple(self.metadata["feature_names"])

    @property
    def feature_set(self):
        """The name of `feature_names` in `features.FEATURE_SETS`."""
        return features.feature_set_of(self.feature_names)


def export(network, path, info: PresetInfo) -> LoadedPreset:
    """Writes `network` as a preset directory at `path`.

    The directory is written next to `path` and renamed into place, so a
    reader never sees a half-written preset. An existing directory at `path`
    is replaced.

    Args:
        network: a built learned-optimizer layer, e.g. `MLPNetwork`.
        path: directory to create.
        info: `PresetInfo`.

    Returns:
        The `LoadedPreset` read back from `path` (which validates it).
    """
    feature_names = features.feature_names(info.feature_set)
    if network.num_features != len(feature_names):
        raise ValueError(
            f"The network takes {network.num_features} features but the "
            f"feature set {info.feature_set!r} has {len(feature_names)}: "
            f"{list(feature_names)}"
        )
    recurrent = has_tensor_state(type(network))
    expected_context = tuple(getattr(type(network), "context_feature_names", ()))
    if recurrent and network.num_context_features != len(expected_context):
        raise ValueError(
            f"The network takes {network.num_context_features} context "
            f"features but this version of keras_lopt builds "
            f"{len(expected_context)} for a {network.kind!r} network: "
            f"{list(expected_context)}"
        )
    for w in network.weights:
        if not np.all(np.isfinite(w.numpy())):
            raise ValueError(f"Refusing to export non-finite network weight `{w.name}`.")
    # Writing a SavedModel needs TensorFlow; reading a preset does not.
    from keras_lopt import serving

    metadata = build_metadata(network, info)
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    os.chmod(staging, 0o755)
    try:
        serving.save(network, staging, _WEIGHTS_ATTRIBUTE)
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load(path)


def _build_network(path, metadata):
    architecture = metadata["architecture"]
    kind = architecture.get("kind") if isinstance(architecture, dict) else None
    if kind not in ARCHITECTURES:
        raise invalid(path, "architecture.kind", f"one of {sorted(ARCHITECTURES)}", kind)
    config = dict(architecture.get("config") or {})
    network_class = ARCHITECTURES[kind]
    configured_scale = config.get("magnitude_scale", getattr(network_class, "magnitude_scale", None))
    if configured_scale != metadata["output"]["magnitude_scale"]:
        raise invalid(
            path,
            "architecture.config.magnitude_scale",
            f"output.magnitude_scale={metadata['output']['magnitude_scale']}",
            configured_scale,
        )
    if has_tensor_state(network_class):
        config["num_context_features"] = len(metadata["context_feature_names"])
    try:
        network = network_class(
            num_features=len(metadata["feature_names"]),
            name=metadata["name"],
            **config,
        )
    except (TypeError, ValueError) as e:
        raise invalid(path, "architecture.config", "a valid config", config) from e
    if has_tensor_state(network_class) and metadata["network_state"] != network_state_of(network):
        raise invalid(
            path,
            "network_state",
            network_state_of(network),
            metadata["network_state"],
        )
    return network


def _read_weights(path, network):
    prefix = os.path.join(path, "variables", "variables")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"Invalid learned-optimizer SavedModel at {path!r}: missing file `saved_model.pb`.")
    try:
        stored = tensor_bundle.read_bundle(prefix, names=lambda name: name.startswith(_WEIGHTS_ATTRIBUTE + "/"))
    except (OSError, ValueError) as e:
        raise ValueError(
            f"Invalid learned-optimizer SavedModel at {path!r}: the "
            f"variables file `variables/` cannot be read "
            f"({type(e).__name__}: {str(e).splitlines()[0]})."
        ) from None
    values = []
    for w in network.weights:
        key = f"{_WEIGHTS_ATTRIBUTE}/{w.name}/.ATTRIBUTES/VARIABLE_VALUE"
        if key not in stored:
            raise invalid(path, f"variables/{w.name}", f"shape {tuple(w.shape)}", "missing")
        value = stored.pop(key)
        if value.shape != tuple(w.shape) or value.dtype != np.float32:
            raise invalid(
                path,
                f"variables/{w.name}",
                f"float32 of shape {tuple(w.shape)}",
                f"{value.dtype} of shape {value.shape}",
            )
        if not np.all(np.isfinite(value)):
            raise invalid(path, f"variables/{w.name}", "finite values", "NaN or inf")
        values.append(value)
    if stored:
        raise invalid(path, "variables", "only the architecture's weights", sorted(stored))
    return values


def load(path) -> LoadedPreset:
    """Reads and validates a preset directory.

    Args:
        path: directory written by `export`.

    Returns:
        `LoadedPreset` whose `network` holds the stored weights.

    Raises:
        ValueError: naming the path and the field, if anything is missing,
            of the wrong version or does not match this version's features.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"No learned-optimizer SavedModel directory at {path!r}.")
    metadata = read_metadata(path)
    network = _build_network(path, metadata)
    weights = _read_weights(path, network)
    network.set_weights(weights)
    return LoadedPreset(path=path, metadata=metadata, network=network, weights=tuple(weights))
