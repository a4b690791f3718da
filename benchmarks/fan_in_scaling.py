"""A learned rule with its step scaled down by each kernel's fan-in, on the
selection tasks (an experiment for choosing, not a report).

Tuned Adam's best rate on the selection suite's width ladder falls from 3e-3
at width 64 to 1e-4 at width 1024, while every learned rule so far takes
about the same step at every width (BENCHMARKS.md, "Selection suite with a
width and a length ladder"). Maximal-update parametrisation prescribes an
Adam step inversely proportional to a hidden weight's fan-in; this script
tries that on top of a preset: the learning rate of every variable of rank
>= 2 (but embeddings) is multiplied by `min(1, base / fan_in)`, with
`fan_in` the product of all dimensions but the last. Rows go to a results
file in the benchmark's format, to be reported beside the selection suite's
baselines (`keras-lopt benchmark --report-only`). The package has since
taken the factor into presets (`output.fan_in_base`, `keras_lopt.fan_in`),
with the same losses; this wrapper applies it to presets without one.

    python benchmarks/fan_in_scaling.py --preset DIR_OR_NAME --base 128 \\
        --label NAME --output runs.jsonl [--tasks a,b] [--seeds 0,1]
"""

import argparse
import dataclasses
import json

import keras

import keras_lopt
from keras_lopt import fan_in, presets
from keras_lopt.evaluation import harness, suites

# The selection suite has no run of the default on it to compare with.
WITHOUT_DEFAULT_RUN = ("transformer_chars",)


def default_tasks():
    """The selection suite's tasks, ladders first, but `WITHOUT_DEFAULT_RUN`."""
    names = [n for n in suites.task_names("selection") if n not in WITHOUT_DEFAULT_RUN]
    return sorted(names, key=lambda n: suites.get_task(n).ladder is None)


@keras.saving.register_keras_serializable(package="fan_in_scaling")
class FanInScaledOptimizer(keras_lopt.LearnedOptimizer):
    """`LearnedOptimizer` whose rate for a kernel is scaled by `min(1, base / fan_in)`."""

    def __init__(self, base=128.0, **kwargs):
        super().__init__(**kwargs)
        self.base = float(base)

    def update_step(self, gradient, variable, learning_rate):
        path = getattr(variable, "path", None) or variable.name
        scale = fan_in.step_scale(fan_in.fan_in(variable.shape, path), self.base)
        return super().update_step(gradient, variable, learning_rate * scale)

    def get_config(self):
        return {**super().get_config(), "base": self.base}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--base", type=float, default=128.0)
    parser.add_argument("--label", required=True, help="written as the rows' optimizer, 'learned:LABEL'")
    parser.add_argument("--output", required=True, help="results file (JSON lines), appended to")
    parser.add_argument("--tasks", default=",".join(default_tasks()))
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    own_base = presets.load_preset(args.preset).fan_in_base
    if own_base is not None:
        parser.error(f"preset {args.preset!r} already scales its step by fan-in (fan_in_base={own_base}); run it as is")
    optimizer = FanInScaledOptimizer(base=args.base, preset=args.preset)
    config = keras.optimizers.serialize(optimizer)
    with open(args.output, "a") as f:
        for task in args.tasks.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                row = dataclasses.asdict(harness.train_once(suites.get_task(task), config, seed=seed))
                row["optimizer"] = f"learned:{args.label}"
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(f"{task} seed {seed}: train {row['final_train_loss']:.4g} valid {row['final_valid_loss']:.4g}")


if __name__ == "__main__":
    main()
