"""The `keras-lopt` command line (also `python -m keras_lopt.meta`).

    keras-lopt meta-train --config FILE [--output DIR] [--resume] [--export DIR]
    keras-lopt local-cluster --workers N -- meta-train --config FILE ...
    keras-lopt export --config FILE --run DIR --output DIR [--final] [--name NAME]
    keras-lopt benchmark [--tasks A,B] [--optimizers learned,adam,...] [--steps N]
                         [--seeds 0,1] [--output DIR] [--quick]
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


QUICK_TASKS = ("mlp_wine", "regression_diabetes", "autoencoder_digits")


def _csv(text):
    return [item for item in text.split(",") if item]


def _benchmark(args):
    from keras_lopt.meta import eval_tasks, evaluate

    tasks = _csv(args.tasks) if args.tasks else (list(QUICK_TASKS) if args.quick else eval_tasks.eval_task_names())
    for name in tasks:
        if name not in eval_tasks.EVAL_TASKS:
            raise ValueError(f"Unknown evaluation task {name!r}. Valid names: {eval_tasks.eval_task_names()}")
    specs = evaluate.expand_groups(_csv(args.optimizers))
    evaluate.expand_specs(specs)
    steps = args.steps or (100 if args.quick else 2000)
    if steps < 1:
        raise ValueError(f"`--steps` must be a positive integer. Received: {steps}")
    try:
        seeds = [int(s) for s in _csv(args.seeds or ("0" if args.quick else "0,1"))]
    except ValueError:
        raise ValueError(f"`--seeds` must be comma-separated integers. Received: {args.seeds!r}") from None
    os.makedirs(args.output, exist_ok=True)
    results = evaluate.run_benchmark(
        tasks, specs, steps, seeds, output_path=os.path.join(args.output, "results.jsonl")
    )
    summary = evaluate.summarize(results, specs)
    learned = next((s for s in specs if s.startswith("learned")), None)
    wins = evaluate.win_counts(summary, learned) if learned else {}
    table = evaluate.markdown_table(summary, specs)
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump({"steps": steps, "seeds": seeds, "tasks": summary, "wins": wins}, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write(table + "\n")
    evaluate.plot_curves(results, summary, specs, os.path.join(args.output, "curves.png"))
    print(table)
    for baseline, count in wins.items():
        print(f"{learned} beats {baseline} on final train loss: {count['wins']}/{count['tasks']} tasks")


def _tune_benchmark(args):
    from keras_lopt.meta import eval_tasks, evaluate, tuning

    tasks = _csv(args.tasks) if args.tasks else eval_tasks.eval_task_names()
    for name in tasks:
        if name not in eval_tasks.EVAL_TASKS:
            raise ValueError(f"Unknown evaluation task {name!r}. Valid names: {eval_tasks.eval_task_names()}")
    references = _csv(args.reference)
    specs = evaluate.expand_groups(references + _csv(args.optimizers))
    evaluate.expand_specs(specs)
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
    if args.steps < 1:
        raise ValueError(f"`--steps` must be a positive integer. Received: {args.steps}")
    results_path = os.path.join(args.output, "results.jsonl")
    if args.report_only:
        if not os.path.isfile(results_path):
            raise ValueError(f"`--report-only` needs earlier results: {results_path!r} does not exist.")
        runs = evaluate.expand_specs(specs)
        mine = lambda r: r["task"] in tasks and r["seed"] == args.seed and r["steps"] == args.steps  # noqa: E731
        with open(results_path) as f:
            results = [r for r in map(json.loads, f) if mine(r) and r["optimizer"] in runs]
        trials = [t for t in tuning.load_trials(os.path.join(args.output, "trials.jsonl"))
                  if mine(t) and t["search"] in searches]
    else:
        os.makedirs(args.output, exist_ok=True)
        results = evaluate.run_benchmark(tasks, specs, args.steps, [args.seed], output_path=results_path)
        trials = []
        for search in searches:
            for task in tasks:
                trials += tuning.run_search(task, search, budgets, args.steps, args.seed, args.output)
    summary = evaluate.summarize(results, specs)
    baselines = [s for s in specs if s not in references]
    wins = {ref: evaluate.win_counts(summary, ref, against=baselines) for ref in references}
    tables = [f"Final training loss (validation loss), {args.steps} steps, seed {args.seed}:\n\n"
              + evaluate.markdown_table(summary, specs)]
    reports = {}
    for i, reference in enumerate(references):
        suffix = "" if i == 0 else "_" + "".join(c if c.isalnum() else "_" for c in reference)
        reports[reference] = {}
        for loss, name, plot in (("final_train_loss", "training", "trials_to_match"),
                                 ("final_valid_loss", "validation", "trials_to_match_valid")):
            report = tuning.match_report(results, trials, searches, budgets, reference, args.seed, loss)
            reports[reference][loss] = report
            tables.append(f"Trials to match {reference} on {name} loss (budgets {budgets}):\n\n"
                          + tuning.markdown_match_table(report))
            tuning.plot_match(report, os.path.join(args.output, f"{plot}{suffix}.png"))
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump({"steps": args.steps, "seed": args.seed, "budgets": budgets, "tasks": summary, "wins": wins,
                   "trials_to_match": reports}, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write("\n\n".join(tables) + "\n")
    evaluate.plot_curves(results, summary, specs, os.path.join(args.output, "curves.png"))
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
    bench = commands.add_parser("benchmark", help="compare optimizers on the evaluation tasks")
    bench.add_argument("--tasks", help="comma-separated evaluation tasks (default: all)")
    bench.add_argument(
        "--optimizers", default="learned,adam,adamw,sgdm,adam_tuned",
        help="comma-separated optimizer specs (see keras_lopt.meta.evaluate)",
    )
    bench.add_argument("--steps", type=int, help="training steps per run (default 2000; --quick: 100)")
    bench.add_argument("--seeds", help="comma-separated seeds (default 0,1; --quick: 0)")
    bench.add_argument("--output", default="benchmark_results", help="directory for results.jsonl, summary.json, table.md, curves.png")
    bench.add_argument("--quick", action="store_true", help="3 small tasks, 100 steps, 1 seed (for CI)")
    bench.set_defaults(handler=_benchmark)
    tune = commands.add_parser(
        "tune-benchmark", help="classic optimizers and KerasTuner searches against a learned optimizer"
    )
    tune.add_argument("--tasks", help="comma-separated evaluation tasks (default: all)")
    tune.add_argument("--optimizers", default="learned,classic", help="optimizer specs run at fixed settings")
    tune.add_argument("--searches", default="adam_grid,adamw_bayes", help="KerasTuner searches (see keras_lopt.meta.tuning)")
    tune.add_argument("--budget", default="1,3,10,30", help="comma-separated trial budgets")
    tune.add_argument(
        "--reference", default="learned",
        help="comma-separated specs the searches must match (plots of the first: trials_to_match*.png)",
    )
    tune.add_argument("--steps", type=int, default=2000, help="training steps per run and per trial")
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
