"""Final training and validation loss of `LearnedOptimizer(weight_decay=W)`
(the default preset) on evaluation tasks, as the benchmark runs them.

Usage: python meta_runs/weight_decay/probe.py TASKS WEIGHT_DECAYS [SEED [OUT]]
  TASKS, WEIGHT_DECAYS: comma-separated (0: no weight decay); rows are
  appended to OUT (default meta_runs/weight_decay/rows.jsonl).
"""

import json
import sys

from keras_lopt.evaluation import harness, suites


def main():
    tasks = sys.argv[1].split(",")
    decays = [float(v) for v in sys.argv[2].split(",")]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    path = sys.argv[4] if len(sys.argv) > 4 else "meta_runs/weight_decay/rows.jsonl"
    with open(path, "a") as out:
        for name in tasks:
            task = suites.get_task(name)
            for decay in decays:
                config = {"weight_decay": decay} if decay > 0 else {}
                spec = {"class_name": "keras_lopt>LearnedOptimizer", "config": config}
                result = harness.train_once(task, spec, seed=seed)
                row = {
                    "task": name,
                    "weight_decay": decay,
                    "seed": seed,
                    "final_train_loss": result.final_train_loss,
                    "final_valid_loss": result.final_valid_loss,
                }
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
