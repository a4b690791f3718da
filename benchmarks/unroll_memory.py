"""Memory and compile time of the meta-training unroll for several lengths.

    python benchmarks/unroll_memory.py [--family mlp_digits] [--lengths 250,500,1000]
                                       [--members 8] [--architecture mlp]

Meta-training runs unrolls of several lengths on each task structure (ES
horizons, truncations, the evaluation horizon). This compares, each in a
fresh process, on the first task of a family:

* `per_length`: one compiled unroll for each length (what the trainer did
  before K became a runtime argument),
* `shared`: one unroll built for the longest length, run at every length.

For each it prints the resident memory added by building and calling the
unrolls (MB, from /proc/self/status VmRSS, before TensorFlow work vs after)
and the seconds spent in the first call of each length (compile + run).
The last line is the ratio shared / per_length of the added memory.
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import time


def resident_mb():
    """The process's resident memory in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def measure(mode, family, lengths, members, architecture):
    """Runs in the child process; returns a dict of measurements."""
    import numpy as np

    from keras_lopt.meta import families, unroll
    from keras_lopt.meta.config import MetaTrainConfig, NetworkConfig
    from keras_lopt.meta.networks import build_network

    task = families.get_family(family).task(0)
    layer = build_network(MetaTrainConfig(name="memory_v1", network=NetworkConfig(architecture=architecture)))
    theta = np.tile(unroll.flatten_weights(layer.get_weights()), (members, 1))
    before = resident_mb()
    if mode == "shared":
        longest = unroll.Unroll(task, layer, max(lengths), "tail", 1e-3)
        runs = {n: functools.partial(longest, num_steps=n) for n in lengths}
    else:
        runs = {n: unroll.Unroll(task, layer, n, "tail", 1e-3) for n in lengths}
    first_call = {}
    for n in lengths:
        state = unroll.fresh_state(task, np.arange(members), np.full(members, n), network=layer)
        start = time.perf_counter()
        _, meta, _ = runs[n](theta, state)
        meta.numpy()
        first_call[n] = time.perf_counter() - start
    return {"mode": mode, "added_mb": resident_mb() - before, "first_call_s": first_call}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="mlp_digits")
    parser.add_argument("--lengths", default="250,500,1000")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--architecture", default="mlp")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    if args.child:
        print(json.dumps(measure(args.child, args.family, lengths, args.members, args.architecture)))
        return
    results = {}
    for mode in ("per_length", "shared"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--family",
                args.family,
                "--lengths",
                args.lengths,
                "--members",
                str(args.members),
                "--architecture",
                args.architecture,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        calls = ", ".join(f"{n}: {s:.1f}s" for n, s in results[mode]["first_call_s"].items())
        print(f"{mode:>10}: +{results[mode]['added_mb']:.0f} MB resident; first call per length {calls}")
    ratio = results["shared"]["added_mb"] / results["per_length"]["added_mb"]
    print(f"shared / per_length added memory: {ratio:.2f}")


if __name__ == "__main__":
    main()
