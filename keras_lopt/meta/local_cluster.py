"""Runs a `keras-lopt` command as N tf.distribute workers on 127.0.0.1.

    keras-lopt local-cluster --workers 2 -- meta-train --config FILE --output DIR

Each worker is a separate process with its own `TF_CONFIG` (free ports on
127.0.0.1); worker 0 is the chief and alone writes files. Output lines are
prefixed with the worker index. If any worker fails, the others are stopped
and the exit status is the failed worker's, so a run can be restarted with
`--resume` from the chief's last checkpoint.
"""

import json
import os
import socket
import subprocess
import sys
import threading

__all__ = ["cluster_env", "free_ports", "run_local_cluster"]


def free_ports(count):
    """`count` distinct TCP ports that were free on 127.0.0.1 just now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_env(ports, index, base=None):
    """Environment of worker `index` in a cluster on `ports`."""
    env = dict(os.environ if base is None else base)
    env["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    return env


def _pump(index, stream, out):
    for line in stream:
        out.write(f"[worker {index}] {line}")
        out.flush()


def run_local_cluster(num_workers, args, out=None):
    """Runs `keras-lopt ARGS` in `num_workers` processes; returns the exit status."""
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"`--workers` must be a positive integer. Received: {num_workers!r}")
    if not args:
        raise ValueError("Give the keras-lopt command to run after `--`, e.g. `-- meta-train --config FILE`.")
    out = out or sys.stdout
    ports = free_ports(num_workers)
    procs, pumps = [], []
    for index in range(num_workers):
        proc = subprocess.Popen(
            [sys.executable, "-m", "keras_lopt.meta", *args],
            env=cluster_env(ports, index),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        pump = threading.Thread(target=_pump, args=(index, proc.stdout, out), daemon=True)
        pump.start()
        pumps.append(pump)
    status = 0
    try:
        remaining = set(range(num_workers))
        while remaining:
            for index in sorted(remaining):
                try:
                    code = procs[index].wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                remaining.discard(index)
                if code != 0 and status == 0:
                    status = code
                    out.write(f"[local-cluster] worker {index} exited with status {code}; stopping the others.\n")
                    for other in remaining:
                        procs[other].terminate()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for pump in pumps:
            pump.join(timeout=5)
    return status
