"""Meta-training checkpoints: one npz file of named arrays, written atomically.

Format version 2, one array per key:

    format_version                    2
    config_json                       the run's config, as JSON
    step, wall_time                   outer steps taken, seconds they took
    theta, best_theta                 meta-weights: latest, best held out
    best_eval, initial_eval           held-out meta-losses (NaN: none)
    meta_loss, grad_norm              one per outer step
    eval_step, eval_meta_loss         one per held-out evaluation
    outer_optimizer/{name}            the outer optimizer's state (Adam: m, v)
    worker{i}/identity                task slot i's (family index, task index)
    worker{i}/{name}                  its estimator's `state_arrays`: the
                                      trajectories in flight
                                      (`trajectories/params/{j}`,
                                      `trajectories/slots/{j}/{slot name}`,
                                      `trajectories/step`, ...) and, for PES,
                                      `accumulated_z`

A checkpoint without the `worker{i}/` arrays (`without_trajectories`) is
the small part of a run, the meta-weights, outer-optimizer state and
history: it resumes with every task slot drawing a new task, seeded by the
run's seed and step as always, so the run goes on deterministically but not
identically to the uninterrupted one.

Version 1 (no `format_version` key) held the Adam moments as `adam_m` and
`adam_v` and each slot's trajectories as positional arrays
`worker{i}_inner_0000`, ... (the flattened `unroll.InnerState`); `load`
reads it through `upgrade_v1`, so runs checkpointed by earlier versions
resume exactly.
"""

import dataclasses
import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from keras_lopt.meta import distributed, unroll

__all__ = [
    "FORMAT_VERSION",
    "OUTER_OPTIMIZER",
    "load",
    "save",
    "under",
    "upgrade_v1",
    "without_trajectories",
    "worker_prefix",
]

FORMAT_VERSION = 2
OUTER_OPTIMIZER = "outer_optimizer/"
_V1_RENAMED = {"adam_m": OUTER_OPTIMIZER + "m", "adam_v": OUTER_OPTIMIZER + "v"}
_V1_WORKER_KEY = re.compile(r"worker(\d+)_(.+)")
_V1_INNER_KEY = re.compile(r"inner_(\d{4})")
_WORKER_KEY = re.compile(r"worker\d+/")


def worker_prefix(slot: int) -> str:
    """The key prefix of task slot `slot`'s arrays."""
    return f"worker{slot}/"


def under(arrays: Dict[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    """The arrays whose keys start with `prefix`, without it."""
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def save(path: str, arrays: Dict[str, np.ndarray], workers: Dict[str, np.ndarray], collective) -> None:
    """Writes a checkpoint at `path` atomically (temporary file, then rename).

    Every process of a run calls it with the same `arrays` and its own
    `workers` (the arrays of the task slots it runs); the others send theirs
    to the chief, which writes the one file.
    """
    if collective.num_replicas > 1:
        parts = collective.gather_to_chief(distributed.pack_arrays(workers))
        if not collective.is_chief:
            return
        workers = {}
        for part in parts:
            if part:
                workers.update(distributed.unpack_arrays(part))
    _write(path, {"format_version": np.int64(FORMAT_VERSION), **arrays, **workers})


def _write(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Writes `arrays` as an npz file at `path`: a temporary file, synced,
    then renamed into place, so a reader never sees a partial file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def without_trajectories(path: str, output_path: str) -> int:
    """Writes the checkpoint at `path` without its trajectories in flight.

    Keeps everything but the `worker{i}/` arrays, whose size grows with the
    task models (ES members x parameters x slots): what a repository keeps
    of a long run. Returns the number of arrays dropped.
    """
    with np.load(path) as data:
        if "format_version" not in data.files:
            raise ValueError(f"{path!r} is a version 1 checkpoint; resume it once to rewrite it in version 2.")
        kept = {k: data[k] for k in data.files if not _WORKER_KEY.match(k)}
        dropped = len(data.files) - len(kept)
    _write(output_path, kept)
    return dropped


def load(path: str, collective, slot_names: Sequence[str]) -> Optional[Dict[str, np.ndarray]]:
    """The checkpoint at `path` in the current format; None if there is none.

    The chief reads the file and sends it to every worker. `slot_names`
    (`rule.state_slot_names` of the run's network) name the slots of a
    version 1 file.
    """
    payload = None
    if collective.is_chief and os.path.isfile(path):
        with open(path, "rb") as f:
            payload = f.read()
    if collective.num_replicas > 1:
        payload = collective.broadcast_from_chief(payload)
    if payload is None:
        return None
    arrays = distributed.unpack_arrays(payload)
    if "format_version" not in arrays:
        return upgrade_v1(arrays, slot_names)
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ValueError(
            f"The checkpoint {path!r} has format version {version}; this version "
            f"of keras_lopt reads versions 1 and {FORMAT_VERSION}."
        )
    return arrays


def upgrade_v1(arrays: Dict[str, np.ndarray], slot_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """A version 1 checkpoint's arrays under the version 2 keys.

    Args:
        arrays: the file's arrays.
        slot_names: `rule.state_slot_names` of the run's network: the
            per-parameter slots each trajectory's flattened state holds.
    """
    upgraded = {"format_version": np.int64(FORMAT_VERSION)}
    positional = {}
    for key, value in arrays.items():
        match = _V1_WORKER_KEY.fullmatch(key)
        if match is None:
            upgraded[_V1_RENAMED.get(key, key)] = value
            continue
        slot, name = int(match.group(1)), match.group(2)
        inner = _V1_INNER_KEY.fullmatch(name)
        if inner is None:
            upgraded[worker_prefix(slot) + name] = value
        else:
            positional.setdefault(slot, {})[int(inner.group(1))] = value
    for slot, values in positional.items():
        flat = [values[k] for k in range(len(values))]
        state = _inner_state_from_flat(flat, len(slot_names))
        for key, value in state.to_arrays(slot_names).items():
            upgraded[f"{worker_prefix(slot)}trajectories/{key}"] = value
    return upgraded


def _inner_state_from_flat(flat, slots_per_param):
    """`unroll.InnerState` from `tf.nest.flatten(state.as_tuple())`: the
    params, then each param's slots, then the per-trajectory fields."""
    fields = len(dataclasses.fields(unroll.InnerState)) - 2
    count, remainder = divmod(len(flat) - fields, 1 + slots_per_param)
    if remainder or count < 1:
        raise ValueError(
            f"A version 1 trajectory of {len(flat)} arrays does not hold {slots_per_param} slots per parameter."
        )
    slots = flat[count : count * (1 + slots_per_param)]
    return unroll.InnerState.from_tuple(
        (
            flat[:count],
            [tuple(slots[j * slots_per_param : (j + 1) * slots_per_param]) for j in range(count)],
            *flat[count * (1 + slots_per_param) :],
        )
    )
