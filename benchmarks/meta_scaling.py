"""Outer meta-training steps per hour with 1 and with N local workers.

    PYTHONPATH=. .venv/bin/python benchmarks/meta_scaling.py [--workers 1,2]
        [--family mlp_digits] [--warmup 6] [--steps 20]

Each setting runs `keras-lopt meta-train` (through `keras-lopt local-cluster`
for N > 1) on the same config: ES on one task family, tasks_per_step equal
to the largest worker count, so every worker has work. The chief prints its
cumulative outer-step wall time at every step; the rate is measured after
`--warmup` steps, which absorb XLA compilation. The last lines print each
rate and its ratio to one worker. On a machine with fewer cores than
workers, the workers share cores, and the ratio says so.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

LINE = re.compile(r"step (\d+): .*, ([\d.]+)s$")


def _config(family, tasks_per_step, outer_steps):
    return {
        "name": "meta_scaling",
        "task_families": [family],
        "estimator": {"kind": "es", "num_pairs": 4, "sigma": 0.02, "truncation_length": 200},
        "objective": "tail",
        "outer_steps": outer_steps,
        "tasks_per_step": tasks_per_step,
        "checkpoint_every": 1,
        "eval_every": 0,
        "inner_learning_rate": 0.003,
        "network": {"hidden_sizes": [4, 4], "activation": "relu", "magnitude_scale": 1.0},
        "seed": 0,
    }


def _run(workers, config_path, output):
    train = ["meta-train", "--config", config_path, "--output", output, "--no-progress"]
    command = [sys.executable, "-m", "keras_lopt.meta"]
    command += ["local-cluster", "--workers", str(workers), "--", *train] if workers > 1 else train
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{workers} worker(s) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    times = {}
    for line in proc.stdout.splitlines():
        match = LINE.search(line.strip())
        if match:
            times[int(match.group(1))] = float(match.group(2))
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--family", default="mlp_digits")
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    total = args.warmup + args.steps
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        config_path = os.path.join(tmp, "config.json")
        with open(config_path, "w") as f:
            json.dump(_config(args.family, max(counts), total), f)
        for workers in counts:
            times = _run(workers, config_path, os.path.join(tmp, f"run{workers}"))
            seconds = times[total] - times[args.warmup]
            rates[workers] = 3600.0 * args.steps / max(seconds, 1e-9)
            print(
                f"{workers} worker(s): {args.steps} outer steps in {seconds:.0f}s "
                f"-> {rates[workers]:.0f} outer steps/hour",
                flush=True,
            )
    print(f"cores: {os.cpu_count()}, family {args.family}, tasks_per_step {max(counts)}")
    for workers in counts:
        print(f"outer steps/hour, {workers} worker(s): {rates[workers]:.0f} ({rates[workers] / rates[counts[0]]:.2f}x)")


if __name__ == "__main__":
    main()
