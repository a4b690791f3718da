"""How many task-seeds any optimizer run so far wins on both metrics.

Issue 18 asks for a lower final training loss than Adam(1e-3) on >= 95% of
the test suite's task-seeds and a lower validation loss on >= 80%. Both
together need at least `95% + 80% - 100%` of the task-seeds won on both
metrics at once (for 33 task-seeds: 32 + 27 - 33 = 26). This script counts,
per task-seed, which optimizers in a results file beat Adam(1e-3) on both
(a win as in the benchmark's report: `report.beats`),
and how many task-seeds an oracle that picks the best of them per task-seed
(with hindsight) would win.

    python benchmarks/both_metrics_oracle.py \
        benchmarks/results/test_suite/results.jsonl learned:adaptive_slow_v3
"""

import argparse
import collections
import math
import os
import sys

# The checkout this script is in, not whichever keras_lopt is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from keras_lopt.evaluation import harness, report, specs  # noqa: E402

REFERENCE = specs.ADAM_DEFAULT


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a benchmark results.jsonl")
    parser.add_argument("optimizer", help="the optimizer to report beside the oracle")
    args = parser.parse_args()
    runs = collections.defaultdict(dict)
    for row in harness.read_results(args.results):
        runs[(row["task"], row["seed"])][row["optimizer"]] = row
    names = sorted({name for by_name in runs.values() for name in by_name} - {REFERENCE})
    if args.optimizer not in names:
        raise SystemExit(f"No runs of optimizer {args.optimizer!r} in {args.results}. Received runs of: {names}")
    train_target, valid_target = report.TARGETS["train_vs_adam"], report.TARGETS["valid_vs_adam"]
    needed = math.ceil(train_target * len(runs)) + math.ceil(valid_target * len(runs)) - len(runs)
    print(f"{len(runs)} task-seeds, {len(names)} optimizers besides {REFERENCE}: {', '.join(names)}")
    print(f"Both targets together need at least {needed} task-seeds won on both metrics.\n")
    print(f"| task | seed | {args.optimizer} wins both | optimizers that win both |")
    print("|---|---|---|---|")
    counts = collections.Counter()
    oracle = 0
    for (task, seed), by_name in sorted(runs.items()):
        reference = by_name[REFERENCE]
        winners = [
            name for name, run in sorted(by_name.items()) if name != REFERENCE and report.beats_on_both(run, reference)
        ]
        counts.update(winners)
        oracle += bool(winners)
        mine = args.optimizer in winners
        print(f"| {task} | {seed} | {'yes' if mine else 'no'} | {', '.join(winners) or '(none)'} |")
    print()
    for name in names:
        print(f"{name}: wins both on {counts[name]}/{len(runs)}")
    print(f"oracle (best of all {len(names)} per task-seed, with hindsight): {oracle}/{len(runs)}; needed: {needed}")


if __name__ == "__main__":
    main()
