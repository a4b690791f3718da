"""Meta-training throughput on this machine, for each estimator.

    python benchmarks/meta_throughput.py [--family mlp_digits] [--steps 30] [--quick]

For one task family it times outer steps of `MetaTrainer` (after a warm-up
that compiles every task structure the run touches) and prints inner
training steps per second and outer steps per hour for `es`, `truncated_es`
and `pes`, plus the unroll alone (population of 8, 20 steps) on the first
task of the family.
"""

import argparse
import tempfile
import time

import numpy as np

from keras_lopt import adam_equivalent
from keras_lopt.meta import families, unroll
from keras_lopt.meta.config import EstimatorConfig, MetaTrainConfig
from keras_lopt.meta.trainer import MetaTrainer


def unroll_rate(family, members=8, steps=20, repeats=5):
    task = families.get_family(family).task(0)
    layer = adam_equivalent.build_network()
    theta = np.tile(unroll.flatten_weights(layer.get_weights()), (members, 1))
    run = unroll.Unroll(task, layer, steps, "mean", 1e-3)
    state = unroll.fresh_state(task, np.arange(members), np.full(members, 10**6))
    state, _, _ = run(theta, state)  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        state, meta, _ = run(theta, state)
        meta.numpy()
    seconds = (time.perf_counter() - start) / repeats
    return task.structure, sum(p.size for p in task.init_params(0)), members * steps / seconds


def outer_rate(family, kind, steps, pairs=4, truncation=20):
    config = MetaTrainConfig(
        name="throughput_v1",
        task_families=(family,),
        estimator=EstimatorConfig(
            kind=kind, num_pairs=pairs, truncation_length=truncation, min_horizon=100, max_horizon=400
        ),
        outer_steps=10**6,
        tasks_per_step=1,
        eval_every=0,
        checkpoint_every=10**6,
    )
    trainer = MetaTrainer(config, tempfile.mkdtemp())
    # Warm up until every variant of the family has been compiled.
    for _ in range(4 * len(families.get_family(family))):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    seconds = (time.perf_counter() - start) / steps
    inner = 2 * pairs * truncation / seconds
    return inner, 3600.0 / seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="mlp_digits")
    parser.add_argument("--steps", type=int, default=30, help="timed outer steps per estimator")
    parser.add_argument("--quick", action="store_true", help="5 timed steps")
    args = parser.parse_args()
    steps = 5 if args.quick else args.steps

    structure, params, rate = unroll_rate(args.family)
    print(f"unroll alone: {structure} ({params} parameters), population 8 x 20 steps: {rate:,.0f} inner steps/s")
    print(f"\n| estimator | inner steps/s | outer steps/hour | family {args.family}, 4 pairs, K=20 |")
    print("|---|---|---|---|")
    for kind in ("es", "truncated_es", "pes"):
        inner, per_hour = outer_rate(args.family, kind, steps)
        print(f"| {kind} | {inner:,.0f} | {per_hour:,.0f} | |")


if __name__ == "__main__":
    main()
