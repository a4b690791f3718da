"""The `keras-lopt` command line (also `python -m keras_lopt.meta`).

    keras-lopt meta-train --config FILE [--output DIR] [--resume] [--export DIR]
    keras-lopt local-cluster --workers N -- meta-train --config FILE ...
    keras-lopt export --config FILE --run DIR --output DIR [--final] [--name NAME]
    keras-lopt benchmark --suite {selection,test} | --tasks A,B | --quick | --yes
                         [--optimizers learned,learned+horizon,...] [--steps N]
                         [--seeds 0,1,2] [--output DIR] [--report-only]
    keras-lopt tune-benchmark [--tasks A,B] [--optimizers learned,classic]
                         [--searches adam_grid,adamw_bayes] [--budget 1,3,10,30]
                         [--reference learned,...] [--steps N] [--seed S] [--output DIR]
                         [--report-only]
    keras-lopt plot trajectories [--problems product,rosenbrock]
                         [--optimizers learned,adam,sgd] [--steps N] --output PNG
    keras-lopt plot probes [--presets mlp_pes_v2,...] [--total-steps N] --output PNG
    keras-lopt plot curves --results results.jsonl [--optimizers A,B] [--tasks A,B] --output PNG
    keras-lopt plot meta-training --runs DIR[,DIR...] [--labels A,B] [--window N] --output PNG

Bad input exits with status 2 and a one-line error, before anything is written.
"""

import argparse
import json
import os
import sys


def _meta_train(args):
    from keras_lopt.meta.config import MetaTrainConfig

    # Validate before importing TensorFlow: bad input costs one line.
    config = MetaTrainConfig.from_file(args.config)
    output = args.output or os.path.join("runs", config.name)
    checkpoint = os.path.join(output, "checkpoint.npz")
    if os.path.isfile(checkpoint) and not args.resume:
        raise ValueError(f"{checkpoint!r} exists: pass --resume to continue it, or choose another --output.")

    from keras_lopt.meta import distributed

    # With TF_CONFIG naming a cluster, this process is one worker of a
    # MultiWorkerMirroredStrategy (created before TensorFlow runs any op).
    strategy = distributed.multi_worker_strategy_from_environment()
    collective = distributed.StrategyCollective(strategy) if strategy else None

    from keras_lopt.meta.trainer import MetaTrainer

    trainer = MetaTrainer(config, output, collective)
    chief = trainer.collective.is_chief
    if args.resume and trainer.restore() and chief:
        print(f"Resumed from {trainer.checkpoint_path} at outer step {trainer.step}.", flush=True)
    trainer.train(progress=not args.no_progress)
    preset = trainer.export(args.export)
    if chief:
        print(
            f"Outer steps: {trainer.step}. Held-out meta-loss: initial "
            f"{trainer.initial_eval}, best {trainer.best_eval}. Preset: {preset.path}"
        )


def _local_cluster(args):
    from keras_lopt.meta import local_cluster

    command = args.worker_command
    command = command[1:] if command[:1] == ["--"] else command
    sys.exit(local_cluster.run_local_cluster(args.workers, command))


def _csv(text):
    return [item for item in text.split(",") if item]


def _benchmark_plan(args):
    """(tasks, specs, seeds, steps or None, confirmed) from the arguments."""
    from keras_lopt.evaluation import specs, suites

    if args.quick and (args.suite or args.tasks):
        raise ValueError("`--quick` runs its own tasks: pass it without `--suite` or `--tasks`.")
    if args.suite and args.tasks:
        raise ValueError("Pass `--suite` or `--tasks`, not both.")
    if args.quick:
        tasks = list(suites.QUICK_TASKS)
    elif args.tasks:
        tasks = _csv(args.tasks)
        for name in tasks:
            suites.get_task(name)
    else:
        tasks = suites.task_names(args.suite or "test")
    steps = args.steps if args.steps is not None else (suites.QUICK_STEPS if args.quick else None)
    if steps is not None and steps < 1:
        raise ValueError(f"`--steps` must be a positive integer. Received: {steps}")
    try:
        seeds = [int(s) for s in _csv(args.seeds)] if args.seeds else None
    except ValueError:
        raise ValueError(f"`--seeds` must be comma-separated integers. Received: {args.seeds!r}") from None
    if seeds is None:
        seeds = [0] if args.quick else list(suites.default_seeds(tasks))
    if not seeds:
        raise ValueError(f"`--seeds` must name at least one seed. Received: {args.seeds!r}")
    # The Adam grid is every report's baseline: it always runs (once per
    # results file; later candidates reuse it).
    runs = specs.expand([*_csv(args.optimizers), "adam_tuned"])
    confirmed = bool(args.quick or args.suite or args.tasks or args.yes)
    return tasks, runs, seeds, steps, confirmed


def _benchmark(args):
    from keras_lopt.evaluation import harness, report, specs

    tasks, runs, seeds, steps, confirmed = _benchmark_plan(args)
    planned = harness.plan(tasks, runs, seeds, steps)
    results_path = os.path.join(args.output, "results.jsonl")
    done = {harness.result_key(r): r for r in harness.read_results(results_path)}
    todo = [run for run in planned if run not in done]
    steps_text = f"{steps} each" if steps else ", ".join(f"{t} {s}" for t, s in
                                                          dict((run[0], run[3]) for run in planned).items())
    print(f"Tasks ({len(tasks)}): {', '.join(tasks)}\nSteps: {steps_text}\nSeeds: {', '.join(map(str, seeds))}\n"
          f"Optimizers ({len(runs)}): {', '.join(runs)}\nRuns: {len(planned)}, {len(todo)} not yet in "
          f"{results_path}; roughly {harness.estimate_seconds(todo) / 3600:.1f} hours on a 2-core CPU.", flush=True)
    if args.report_only:
        if not done:
            raise ValueError(f"`--report-only` needs earlier results: {results_path!r} holds none.")
        results = [done[run] for run in planned if run in done]
    elif not confirmed:
        raise ValueError(
            "no suite or tasks given: pass `--suite test` (or `--suite selection`) or `--tasks A,B` to choose "
            "what to run, `--quick` for a CI-sized check, or `--yes` to run the plan above."
        )
    else:
        os.makedirs(args.output, exist_ok=True)
        results = harness.run_benchmark(tasks, runs, seeds, steps, output_path=results_path)
        todo = []
    candidates = [s for s in runs if specs.adam_rate(s) is None]
    references = [f"adam@{lr:g}" for lr in specs.ADAM_GRID if f"adam@{lr:g}" != specs.ADAM_DEFAULT]
    summary = report.build(results, candidates + references, tasks, seeds)
    summary["missing_runs"] = todo
    table = report.markdown(summary, references)
    if todo:
        table = (f"**Incomplete: {len(todo)} of the {len(planned)} planned runs are missing** "
                 "(`summary.json`, `missing_runs`).\n\n" + table)
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write(table + "\n")
    from keras_lopt import plots

    plots.draw_benchmark_curves(results, summary, candidates, os.path.join(args.output, "curves.png"))
    print(table)


def _tune_benchmark(args):
    from keras_lopt.evaluation import harness, report, suites, specs, tuning

    tasks = _csv(args.tasks) if args.tasks else suites.task_names("selection")
    for name in tasks:
        suites.get_task(name)
    references = specs.expand(_csv(args.reference))
    runs = specs.expand(references + _csv(args.optimizers))
    searches = _csv(args.searches)
    for search in searches:
        if search not in tuning.SEARCHES:
            raise ValueError(f"Unknown search {search!r}. Valid: {', '.join(tuning.SEARCHES)}")
    try:
        budgets = sorted({int(b) for b in _csv(args.budget)})
    except ValueError:
        budgets = []
    if not budgets or budgets[0] < 1:
        raise ValueError(f"`--budget` must be comma-separated positive integers. Received: {args.budget!r}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"`--steps` must be a positive integer. Received: {args.steps}")
    results_path = os.path.join(args.output, "results.jsonl")
    planned = set(harness.plan(tasks, runs, [args.seed], args.steps))
    if args.report_only:
        if not os.path.isfile(results_path):
            raise ValueError(f"`--report-only` needs earlier results: {results_path!r} does not exist.")
        results = [r for r in harness.read_results(results_path) if harness.result_key(r) in planned]
        steps_of = {(task, steps) for task, _, _, steps in planned}
        trials = [t for t in tuning.load_trials(os.path.join(args.output, "trials.jsonl"))
                  if (t["task"], t["steps"]) in steps_of and t["seed"] == args.seed and t["search"] in searches]
    else:
        os.makedirs(args.output, exist_ok=True)
        results = harness.run_benchmark(tasks, runs, [args.seed], args.steps, output_path=results_path)
        trials = []
        for search in searches:
            for task in tasks:
                trials += tuning.run_search(task, search, budgets, args.steps, args.seed, args.output)
    summary = report.build(results, [s for s in runs if s not in references], tasks, [args.seed])
    tables = [f"Seed {args.seed}.\n\n" + report.markdown(summary)]
    reports = {}
    for i, reference in enumerate(references):
        suffix = "" if i == 0 else "_" + "".join(c if c.isalnum() else "_" for c in reference)
        reports[reference] = {}
        for loss, name, plot in (("final_train_loss", "training", "trials_to_match"),
                                 ("final_valid_loss", "validation", "trials_to_match_valid")):
            match = tuning.match_report(results, trials, searches, budgets, reference, args.seed, loss)
            reports[reference][loss] = match
            tables.append(f"Trials to match {reference} on {name} loss (budgets {budgets}):\n\n"
                          + tuning.markdown_match_table(match))
            tuning.plot_match(match, os.path.join(args.output, f"{plot}{suffix}.png"))
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump({"seed": args.seed, "budgets": budgets, "report": summary, "trials_to_match": reports}, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write("\n\n".join(tables) + "\n")
    from keras_lopt import plots

    plots.draw_benchmark_curves(results, summary, runs, os.path.join(args.output, "curves.png"))
    print(*tables, sep="\n\n")


def _export(args):
    from keras_lopt.meta.config import MetaTrainConfig

    config = MetaTrainConfig.from_file(args.config)
    from keras_lopt.meta.trainer import MetaTrainer

    trainer = MetaTrainer(config, args.run_dir)
    if not trainer.restore():
        raise ValueError(f"No checkpoint in {args.run_dir!r}.")
    preset = trainer.export(args.output, use_best=not args.final, name=args.name)
    provenance = preset.metadata["provenance"]
    if provenance["exported_weights"] == "best_eval":
        which = f"the best evaluated weights (outer step {provenance['best_eval_step']} of {trainer.step})"
    else:
        which = f"the final weights (outer step {trainer.step})"
    print(f"Exported {which} as {preset.name!r} to {preset.path}")


def _plot(args):
    # Imported here: the other commands do not need matplotlib.
    from keras_lopt import plots

    if args.plot_command == "trajectories":
        if args.steps < 1:
            raise ValueError(f"`--steps` must be a positive integer. Received: {args.steps}")
        plots.plot_trajectories(args.output, _csv(args.problems), _csv(args.optimizers), args.steps)
    elif args.plot_command == "probes":
        plots.plot_probes(args.output, _csv(args.presets), total_steps=args.total_steps)
    elif args.plot_command == "meta-training":
        labels = _csv(args.labels) if args.labels else None
        plots.plot_meta_training(_csv(args.runs), args.output, labels, args.window)
    else:
        plots.plot_benchmark_curves(
            args.results, args.output, _csv(args.optimizers or ""), _csv(args.tasks or "")
        )
    print(f"Wrote {args.output}")


def _add_plot_parser(commands):
    plot = commands.add_parser("plot", help="draw PNGs of what a learned optimizer does")
    kinds = plot.add_subparsers(dest="plot_command", required=True)
    paths = kinds.add_parser("trajectories", help="paths on 2-D problems: learned vs Adam vs SGD")
    paths.add_argument("--problems", default="product,rosenbrock", help="comma-separated: product, difference, rosenbrock")
    paths.add_argument(
        "--optimizers", default="learned,adam,sgd",
        help="comma-separated specs: learned[:PRESET][@LR], adam[@LR], sgd[@LR]",
    )
    paths.add_argument("--steps", type=int, default=500, help="steps from each start (default 500)")
    probes = kinds.add_parser("probes", help="the learned update vs gradient and vs progress, next to Adam's")
    probes.add_argument("--presets", default="mlp_pes_v2", help="comma-separated preset names or directories")
    probes.add_argument("--total-steps", type=int, default=10000, help="horizon of the progress sweep")
    curves = kinds.add_parser("curves", help="loss curves from a benchmark results file")
    curves.add_argument("--results", required=True, help="results.jsonl written by `keras-lopt benchmark`")
    curves.add_argument("--optimizers", help="comma-separated specs to show (default: all)")
    curves.add_argument("--tasks", help="comma-separated tasks to show (default: all)")
    meta = kinds.add_parser("meta-training", help="meta-loss and held-out meta-loss of meta-training runs")
    meta.add_argument("--runs", required=True, help="comma-separated meta-training output directories")
    meta.add_argument("--labels", help="comma-separated names, one per run (default: directory names)")
    meta.add_argument("--window", type=int, default=20, help="moving mean of the meta-loss, in outer steps")
    for parser in (paths, probes, curves, meta):
        parser.add_argument("--output", required=True, help="the PNG to write")
        parser.set_defaults(handler=_plot)


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-lopt", description="Learned optimizers for Keras.")
    commands = parser.add_subparsers(dest="command", required=True)
    meta = commands.add_parser("meta-train", help="meta-train a learned optimizer")
    meta.add_argument("--config", required=True, help="JSON file with a MetaTrainConfig")
    meta.add_argument("--output", help="run directory (default: runs/<name>)")
    meta.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    meta.add_argument("--export", help="preset directory to write (default: <output>/preset)")
    meta.add_argument("--no-progress", action="store_true", help="no progress bar")
    meta.set_defaults(handler=_meta_train)
    cluster = commands.add_parser(
        "local-cluster", help="run a keras-lopt command as N tf.distribute workers on 127.0.0.1"
    )
    cluster.add_argument("--workers", type=int, default=2, help="number of worker processes (default 2)")
    cluster.add_argument(
        "worker_command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the keras-lopt command each worker runs"
    )
    cluster.set_defaults(handler=_local_cluster)
    export = commands.add_parser("export", help="export a meta-training checkpoint as a preset")
    export.add_argument("--config", required=True, help="the run's config file")
    export.add_argument("--run", dest="run_dir", required=True, help="the run directory (holds checkpoint.npz)")
    export.add_argument("--output", required=True, help="preset directory to write")
    export.add_argument("--final", action="store_true", help="export the latest weights, not the best evaluated")
    export.add_argument("--name", help="the preset's name (default: the config's name)")
    export.set_defaults(handler=_export)
    bench = commands.add_parser(
        "benchmark", help="the evaluation protocol: learned optimizers against Adam tuned per metric"
    )
    bench.add_argument("--suite", choices=("selection", "test"),
                       help="selection: tasks that choose presets; test: tasks that report them")
    bench.add_argument("--tasks", help="comma-separated evaluation tasks (instead of --suite)")
    bench.add_argument(
        "--optimizers", default="learned,learned+horizon",
        help="comma-separated optimizer specs (see keras_lopt.evaluation.specs); Adam at the 7 rates of "
             "the grid always runs too, once per results file (default: learned,learned+horizon)",
    )
    bench.add_argument("--steps", type=int, help="training steps of every run (default: each task's own; --quick: 100)")
    bench.add_argument("--seeds", help="comma-separated seeds (default: test 0,1,2; selection 0,1; --quick: 0)")
    bench.add_argument("--output", default="benchmark_results",
                       help="directory for results.jsonl, summary.json, table.md, curves.png")
    bench.add_argument("--quick", action="store_true", help="2 tiny test-suite tasks, 100 steps, seed 0 (for CI)")
    bench.add_argument("--yes", action="store_true", help="run the default plan (the test suite) without --suite")
    bench.add_argument("--report-only", action="store_true",
                       help="train nothing: report the planned runs already in --output")
    bench.set_defaults(handler=_benchmark)
    tune = commands.add_parser(
        "tune-benchmark", help="classic optimizers and KerasTuner searches against a learned optimizer"
    )
    tune.add_argument("--tasks", help="comma-separated evaluation tasks (default: the selection suite)")
    tune.add_argument("--optimizers", default="learned,classic", help="optimizer specs run at fixed settings")
    tune.add_argument("--searches", default="adam_grid,adamw_bayes", help="KerasTuner searches (see keras_lopt.evaluation.tuning)")
    tune.add_argument("--budget", default="1,3,10,30", help="comma-separated trial budgets")
    tune.add_argument(
        "--reference", default="learned",
        help="comma-separated specs the searches must match (plots of the first: trials_to_match*.png)",
    )
    tune.add_argument("--steps", type=int, help="training steps per run and per trial (default: each task's own)")
    tune.add_argument("--seed", type=int, default=0, help="initialisation and batch-order seed")
    tune.add_argument(
        "--output", default="benchmark_results/tuning",
        help="directory for results.jsonl, trials.jsonl, tuners/, summary.json, table.md and plots",
    )
    tune.add_argument(
        "--report-only", action="store_true",
        help="train nothing: write the tables and plots from the runs and trials already in --output",
    )
    tune.set_defaults(handler=_tune_benchmark)
    _add_plot_parser(commands)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except ValueError as e:
        print(f"keras-lopt {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
