"""What identifies a `LearnedOptimizer`'s saved state, and checks on restoring it.

The state (slots, network weights, counters) only makes sense for the preset
and the state layout that wrote it: one preset's network run on another's
momenta is a silent wrong result. So the optimizer saves an identity with
its variables: the state layout and a fingerprint of the preset.

- `tf.train.Checkpoint` saves `state_identity.StateIdentity` (a trackable) beside the
  variables; `checkpoint.restore(...)` raises a `ValueError` on a mismatch.
- Keras files (`.keras`, `.weights.h5`) hold the identity as one more entry
  of the optimizer's variables (`IDENTITY_KEY`, JSON as uint8 bytes). State
  that does not fit is skipped with a warning, as Keras' own optimizers skip
  it, and the optimizer keeps its state.
"""

import hashlib
import json

import numpy as np

from keras_lopt import rule

IDENTITY_KEY = "state_identity"
_LAYOUT_KEYS = ("state_format", "slots", "state_dtype")


def preset_fingerprint(loaded):
    """A short hash of what a preset computes: architecture, features, weights.

    The preset's name, path and default learning rate are left out: the same
    network under another name or path is the same rule.
    """
    digest = hashlib.sha256()
    metadata = loaded.metadata
    digest.update(
        json.dumps(
            [metadata["architecture"], metadata["feature_names"]],
            sort_keys=True,
        ).encode()
    )
    for value in loaded.weights:
        value = np.ascontiguousarray(value, dtype="<f4")
        digest.update(repr(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def upgradable_format(stored, expected):
    """Whether state of identity `stored` is in format 1 where `expected` is
    in format 2, with the same slots and dtype. Format 2 keeps the
    per-tensor state of all variables in one variable per kind, after the
    per-parameter slots; format 1 kept one per variable, after its
    per-parameter slots. For networks without per-tensor state the two
    layouts are the same; with it, `upgrade_format_1` converts the values."""
    return (
        stored.get("state_format") == 1
        and expected["state_format"] == 2
        and all(stored.get(k) == expected[k] for k in _LAYOUT_KEYS if k != "state_format")
    )


def _holds_tensor_state(identity):
    """Whether the state of `identity` holds per-tensor state (slots beyond
    the per-parameter ones)."""
    return tuple(identity["slots"]) != tuple(rule.state_slot_names())


def upgrade_format_1(values, head, per_parameter, tensor_shapes, rows):
    """State format 1's variable values in format 2's order.

    Args:
        values: the format-1 values, in variable order: `head` values, then
            per variable with slots its `per_parameter` slots and one
            per-tensor state per entry of `tensor_shapes`, then the rest.
        head, per_parameter, rows: the numbers of values before the slots,
            of per-parameter slots and of variables with slots.
        tensor_shapes: the shape of each per-tensor state kind.

    Returns:
        The values in format 2's order: the head, every variable's
        per-parameter slots, per kind the per-tensor states stacked
        (`[rows, *shape]`), the rest.
    """
    width = per_parameter + len(tensor_shapes)
    blocks = [values[head + r * width : head + (r + 1) * width] for r in range(rows)]
    tensor = [
        np.stack([block[per_parameter + k] for block in blocks]) if rows else np.zeros((0, *shape), np.float32)
        for k, shape in enumerate(tensor_shapes)
    ]
    per_parameter_values = [value for block in blocks for value in block[:per_parameter]]
    return [*values[:head], *per_parameter_values, *tensor, *values[head + rows * width :]]


def identity_mismatch(stored, expected, converts_format_1=False):
    """Why state saved with identity `stored` does not fit an optimizer whose
    identity is `expected` (a sentence), or None when it fits. State of
    format 1 fits a format-2 optimizer where the layouts are the same (no
    per-tensor state) or where the caller converts it
    (`converts_format_1`; `upgrade_format_1`)."""
    layout = dict(stored)
    if upgradable_format(stored, expected) and (converts_format_1 or not _holds_tensor_state(expected)):
        layout["state_format"] = expected["state_format"]
    if any(layout.get(k) != expected[k] for k in _LAYOUT_KEYS):
        return (
            "the state is in an incompatible layout. Expected: "
            f"{[(k, expected[k]) for k in _LAYOUT_KEYS]}. "
            f"Received: {[(k, stored.get(k)) for k in _LAYOUT_KEYS]}"
        )
    if stored.get("preset_fingerprint") != expected["preset_fingerprint"]:
        return (
            f"it was written with preset {stored.get('preset')!r} "
            f"(fingerprint {stored.get('preset_fingerprint')}), but this "
            f"optimizer uses preset {expected['preset']!r} (fingerprint "
            f"{expected['preset_fingerprint']}). The network weights and "
            "momenta in it belong to the other preset; create the optimizer "
            "with that preset to resume training"
        )
    return None


def encode_identity(identity):
    """The identity as a uint8 array [B] (JSON bytes) for a Keras store."""
    return np.frombuffer(json.dumps(identity, sort_keys=True).encode(), np.uint8)


def read_keras_store(store, expected):
    """The variable values of a Keras store and why they do not fit, if so.

    Args:
        store: what Keras hands to `load_own_variables`: `str(i)` -> value,
            and `IDENTITY_KEY` when a `LearnedOptimizer` wrote it.
        expected: the loading optimizer's identity.

    Returns:
        `(values, reason, state_format)`: the arrays in variable order, None
        or a sentence saying why the state must be skipped, and the state
        format that wrote them (None if unknown). Format 1 is accepted
        where `upgradable_format`: the caller converts the values
        (`upgrade_format_1`).
    """
    keys = set(store.keys())
    values = [np.asarray(store[str(i)]) for i in range(len(keys - {IDENTITY_KEY}))]
    if IDENTITY_KEY not in keys:
        return (
            values,
            (
                f"the file holds {len(values)} optimizer variables and no "
                "LearnedOptimizer state identity: it is the state of another "
                "optimizer (such as Adam), or of a keras_lopt that saved none"
            ),
            None,
        )
    try:
        stored = json.loads(np.asarray(store[IDENTITY_KEY], np.uint8).tobytes())
    except (ValueError, UnicodeDecodeError):
        return values, "its LearnedOptimizer state identity is unreadable", None
    if not isinstance(stored, dict):
        return values, "its LearnedOptimizer state identity is unreadable", None
    return values, identity_mismatch(stored, expected, converts_format_1=True), stored.get("state_format")


def variables_mismatch(variables, values):
    """Why `values` cannot be assigned to `variables` one by one, or None."""
    if len(values) != len(variables):
        return (
            f"the file holds {len(values)} optimizer variables, this optimizer "
            f"has {len(variables)} (another model, or other `use_ema`, "
            "`gradient_accumulation_steps` or `guard` settings)"
        )
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != value.shape:
            return (
                f"optimizer variable {variable.path!r} has shape "
                f"{tuple(variable.shape)}, the file holds {value.shape} for it "
                "(another model)"
            )
    return None
