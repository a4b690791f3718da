"""mlp_pes_v2 with the default guard on held-out tasks where it fails without.

    python docs/measurements/guard_heldout.py [OUTPUT.jsonl]

Trains `LearnedOptimizer(preset="mlp_pes_v2", guard="adam")` with the benchmark
harness (`keras_lopt.evaluation.harness.train_once`: 2000 steps, XLA; the
records in guard_heldout.jsonl predate its `model.fit` loop) on the
(task, seed) pairs below, and appends to OUTPUT (default
`guard_heldout.jsonl`) its records next to the unguarded `mlp_pes_v2` and
Adam records of the same pairs from
`benchmarks/results/heldout_mlp_pes_v2/results.jsonl`. Prints final train
losses and the guard's fallbacks. Draw the curves with

    keras-lopt plot curves --results guard_heldout.jsonl --output guard_heldout.png
"""

import dataclasses
import json
import os
import sys

import keras_lopt
from keras_lopt.evaluation import harness, specs, suites

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASELINE = os.path.join(REPO, "benchmarks", "results", "heldout_mlp_pes_v2", "results.jsonl")
RUNS = [
    ("conv_digits", 1),
    ("conv1d_mnist1d", 0),
    ("autoencoder_digits", 0),
    ("lstm_adding", 0),
    ("transformer_chars", 0),
]
GUARDED = "learned:mlp_pes_v2+guard"


def main(output="guard_heldout.jsonl"):
    baseline = [json.loads(line) for line in open(BASELINE)]
    created = []
    make_optimizer = specs.make_optimizer

    def with_guard(spec):
        if spec != GUARDED:
            return make_optimizer(spec)
        created.append(keras_lopt.LearnedOptimizer(preset="mlp_pes_v2", guard="adam"))
        return created[-1]

    specs.make_optimizer = with_guard
    for task_name, seed in RUNS:
        previous = {
            r["optimizer"]: r
            for r in baseline
            if r["task"] == task_name and r["seed"] == seed and r["optimizer"] in ("learned:mlp_pes_v2", "adam")
        }
        record = dataclasses.asdict(harness.train_once(suites.get_task(task_name), GUARDED, 2000, seed))
        with open(output, "a") as f:
            for r in [*previous.values(), record]:
                f.write(json.dumps(r) + "\n")
        optimizer = created[-1]
        updates = int(optimizer.iterations) * len(optimizer._slots[0])
        print(
            f"{task_name} seed {seed}: guarded {record['final_train_loss']:.4g}, unguarded "
            f"{previous['learned:mlp_pes_v2']['final_train_loss']:.4g}, "
            f"Adam {previous['adam']['final_train_loss']:.4g}; "
            f"fallbacks {optimizer.guard_fallbacks} of {updates}",
            flush=True,
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
