"""The commands of `keras-lopt` (also `python -m keras_lopt.meta`).

Their arguments are parsed by `keras_lopt_cli`, which imports this module
once they are valid: see `keras-lopt COMMAND --help`. Bad input raises a
`ValueError`, which the command line prints as a one-line error (status 2)
before anything is written.
"""

import json
import os
import sys


def _meta_train(args):
    from keras_lopt.meta.config import MetaTrainConfig

    # Validate before anything is built or written: bad input costs one line.
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

    directory = os.path.dirname(args.output)
    created = bool(directory) and not os.path.isdir(directory)
    if args.plot_command == "trajectories":
        if args.steps < 1:
            raise ValueError(f"`--steps` must be a positive integer. Received: {args.steps}")
        plots.plot_trajectories(args.output, _csv(args.problems), _csv(args.optimizers), args.steps)
    elif args.plot_command == "probes":
        plots.plot_probes(args.output, _csv(args.presets or "") or None, total_steps=args.total_steps)
    elif args.plot_command == "meta-training":
        labels = _csv(args.labels) if args.labels else None
        plots.plot_meta_training(_csv(args.runs), args.output, labels, args.window)
    else:
        plots.plot_benchmark_curves(
            args.results, args.output, _csv(args.optimizers or ""), _csv(args.tasks or "")
        )
    print(f"Wrote {args.output}" + (f" (created the directory {directory})" if created else ""))


def _presets(args):
    del args
    from keras_lopt import presets

    print(presets.markdown_table())


COMMANDS = {
    "meta-train": _meta_train,
    "local-cluster": _local_cluster,
    "export": _export,
    "benchmark": _benchmark,
    "tune-benchmark": _tune_benchmark,
    "presets": _presets,
    "plot": _plot,
}
