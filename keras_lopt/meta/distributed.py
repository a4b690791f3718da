"""Sharing meta-training across tf.distribute replicas.

The meta-trainer's outer step averages `tasks_per_step` ES estimates. With a
strategy, replica `r` of `R` computes the estimates of task slots
`i % R == r`; a collective sum then gives every worker the full
`[tasks_per_step, D]` buffer of estimates. Each row has exactly one nonzero
contributor, so the sum is exact and every worker -- and a single process
with the same config -- takes bit-identical outer steps.

`owned` and `sharded` share `range(count)` (task slots, evaluation runs)
among the replicas this way.

The same collective moves checkpoints: workers send their in-flight inner
trajectories to the chief, which alone writes files; on resume the chief
sends the checkpoint it read to every worker, so workers on other machines
need no shared file system.

`Collective` (no strategy) is the single-process case; `StrategyCollective`
wraps `tf.distribute.MultiWorkerMirroredStrategy` (one process per worker) or
`tf.distribute.MirroredStrategy` (one process, several local devices).
"""

import contextlib
import io
import json
import os

import numpy as np
import tensorflow as tf

__all__ = [
    "Collective",
    "StrategyCollective",
    "WorkerLostError",
    "multi_worker_strategy_from_environment",
    "owned",
    "pack_arrays",
    "sharded",
    "unpack_arrays",
]

# Seconds a collective waits for the others (a dead worker is detected sooner,
# by missed heartbeats; this bounds waits on a live but stuck one).
DEFAULT_TIMEOUT_S = 1800.0


class WorkerLostError(RuntimeError):
    """Another worker stopped responding; resume every worker from the checkpoint."""


class Collective:
    """One process, one replica: the collective operations are identities."""

    num_replicas = 1
    is_chief = True

    def local_replicas(self):
        """`[(global replica id, device or None)]` computed by this process."""
        return [(0, None)]

    def sum(self, arrays):
        """Sums `{replica id: array}` over all replicas; all same shape/dtype."""
        return next(iter(arrays.values()))

    def gather_to_chief(self, payload):
        """`payload` (bytes) of every replica, in replica order (chief only)."""
        return [payload]

    def broadcast_from_chief(self, payload):
        """The chief's `payload` (bytes or None), on every worker."""
        return payload


def _bytes_to_array(payload, length):
    out = np.zeros(length, np.int32)
    out[: len(payload)] = np.frombuffer(payload, np.uint8)
    return out


class StrategyCollective(Collective):
    """Collective operations over a tf.distribute strategy's replicas.

    Args:
        strategy: a `MultiWorkerMirroredStrategy` or `MirroredStrategy`.
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync
        ids = strategy.experimental_local_results(
            strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(ctx.replica_id_in_sync_group))
        )
        devices = strategy.extended.worker_devices
        self._local = [(int(i), d) for i, d in zip(ids, devices)]
        # MultiWorkerMirroredStrategy: True on the chief only.
        self.is_chief = bool(getattr(strategy.extended, "should_checkpoint", True))

    def local_replicas(self):
        return list(self._local)

    def sum(self, arrays):
        local_ids = [i for i, _ in self._local]
        if sorted(arrays) != sorted(local_ids):
            raise ValueError(f"Expected one array per local replica {local_ids}. Received: replicas {sorted(arrays)}")
        values = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(arrays[ctx.replica_id_in_sync_group])
        )
        try:
            total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)
        except (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
        ) as e:
            raise WorkerLostError(
                "A meta-training worker stopped responding during a collective "
                f"({type(e).__name__}). Restart every worker with --resume to "
                "continue from the last checkpoint."
            ) from None
        return total.numpy()

    def _sum_bytes(self, payload_for):
        """Sums per-replica byte buffers laid out in disjoint rows."""
        lengths = self.sum(
            {
                i: np.asarray(
                    [len(payload_for(i)) if i == r else 0 for r in range(self.num_replicas)],
                    np.int64,
                )
                for i, _ in self._local
            }
        )
        width = int(max(lengths.max(), 1))
        rows = {}
        for i, _ in self._local:
            buffer = np.zeros((self.num_replicas, width), np.int32)
            buffer[i] = _bytes_to_array(payload_for(i), width)
            rows[i] = buffer
        total = self.sum(rows)
        return [total[r, : lengths[r]].astype(np.uint8).tobytes() for r in range(self.num_replicas)]

    def gather_to_chief(self, payload):
        first = self._local[0][0]
        return self._sum_bytes(lambda i: payload if i == first else b"")

    def broadcast_from_chief(self, payload):
        # The chief's first local replica carries the payload; a leading
        # byte says whether there is one (None vs empty bytes).
        first = self._local[0][0]
        mine = b"\x01" + payload if (self.is_chief and payload is not None) else b"\x00"
        parts = self._sum_bytes(lambda i: mine if (i == first and self.is_chief) else b"")
        chosen = next((p for p in parts if p), b"\x00")
        return chosen[1:] if chosen[:1] == b"\x01" else None


def _shares(collective, count):
    """`{replica id: (device, [indices i of range(count) it computes])}` for
    this process's replicas: replica r computes the `i % R == r`."""
    replicas = collective.num_replicas
    return {r: (device, [i for i in range(count) if i % replicas == r]) for r, device in collective.local_replicas()}


def owned(collective, count):
    """The indices of `range(count)` this process computes, sorted."""
    return sorted(i for _, indices in _shares(collective, count).values() for i in indices)


def sharded(collective, count, width, compute):
    """Runs `compute(i) -> [width] array` on this process's share of
    `range(count)` (on each replica's device) and returns the exact
    `[count, width]` float64 table of all."""
    rows = {}
    for r, (device, indices) in _shares(collective, count).items():
        table = np.zeros((count, width), np.float64)
        for i in indices:
            with contextlib.nullcontext() if device is None else tf.device(device):
                table[i] = compute(i)
        rows[r] = table
    return collective.sum(rows)


def pack_arrays(arrays):
    """`{name: array}` -> npz bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack_arrays(payload):
    """npz bytes -> `{name: array}`."""
    with np.load(io.BytesIO(payload)) as data:
        return {k: data[k] for k in data.files}


def multi_worker_strategy_from_environment(timeout_s=DEFAULT_TIMEOUT_S):
    """A `MultiWorkerMirroredStrategy` when `TF_CONFIG` names a cluster, else None.

    Must be called before TensorFlow runs any op in this process.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (json.JSONDecodeError, AttributeError):
        raise ValueError(f"`TF_CONFIG` is not a JSON object. Received: {raw!r}") from None
    if sum(len(v) for v in cluster.values()) < 2:
        return None
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
