"""`keras-lopt benchmark` and `tune-benchmark`: the evaluation suites."""

import json
import os

from keras_lopt.cli.arguments import comma_separated

__all__ = ["benchmark", "tune_benchmark"]


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
        tasks = comma_separated(args.tasks)
        for name in tasks:
            suites.get_task(name)
    else:
        tasks = suites.task_names(args.suite or "test")
    steps = args.steps if args.steps is not None else (suites.QUICK_STEPS if args.quick else None)
    if steps is not None and steps < 1:
        raise ValueError(f"`--steps` must be a positive integer. Received: {steps}")
    try:
        seeds = [int(s) for s in comma_separated(args.seeds)] if args.seeds else None
    except ValueError:
        raise ValueError(f"`--seeds` must be comma-separated integers. Received: {args.seeds!r}") from None
    if seeds is None:
        seeds = [0] if args.quick else list(suites.default_seeds(tasks))
    if not seeds:
        raise ValueError(f"`--seeds` must name at least one seed. Received: {args.seeds!r}")
    # The Adam grid is every report's baseline: it always runs (once per
    # results file; later candidates reuse it).
    runs = specs.expand([*comma_separated(args.optimizers), "adam_tuned"])
    confirmed = bool(args.quick or args.suite or args.tasks or args.yes)
    return tasks, runs, seeds, steps, confirmed


def benchmark(args):
    from keras_lopt.evaluation import harness, report, specs

    tasks, runs, seeds, steps, confirmed = _benchmark_plan(args)
    planned = harness.plan(tasks, runs, seeds, steps)
    results_path = os.path.join(args.output, "results.jsonl")
    done = {harness.result_key(r): r for r in harness.read_results(results_path)}
    todo = [run for run in planned if run not in done]
    steps_text = (
        f"{steps} each"
        if steps
        else ", ".join(f"{t} {s}" for t, s in dict((run[0], run[3]) for run in planned).items())
    )
    print(
        f"Tasks ({len(tasks)}): {', '.join(tasks)}\nSteps: {steps_text}\nSeeds: {', '.join(map(str, seeds))}\n"
        f"Optimizers ({len(runs)}): {', '.join(runs)}\nRuns: {len(planned)}, {len(todo)} not yet in "
        f"{results_path}; roughly {harness.estimate_seconds(todo) / 3600:.1f} hours on a 2-core CPU.",
        flush=True,
    )
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
        table = (
            f"**Incomplete: {len(todo)} of the {len(planned)} planned runs are missing** "
            "(`summary.json`, `missing_runs`).\n\n" + table
        )
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write(table + "\n")
    from keras_lopt import plots

    plots.draw_benchmark_curves(results, summary, candidates, os.path.join(args.output, "curves.png"))
    print(table)


def tune_benchmark(args):
    from keras_lopt.evaluation import harness, report, specs, suites, tuning

    tasks = comma_separated(args.tasks) if args.tasks else suites.task_names("selection")
    for name in tasks:
        suites.get_task(name)
    references = specs.expand(comma_separated(args.reference))
    runs = specs.expand(references + comma_separated(args.optimizers))
    searches = comma_separated(args.searches)
    for search in searches:
        if search not in tuning.SEARCHES:
            raise ValueError(f"Unknown search {search!r}. Valid: {', '.join(tuning.SEARCHES)}")
    try:
        budgets = sorted({int(b) for b in comma_separated(args.budget)})
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
        trials = [
            t
            for t in tuning.load_trials(os.path.join(args.output, "trials.jsonl"))
            if (t["task"], t["steps"]) in steps_of and t["seed"] == args.seed and t["search"] in searches
        ]
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
        for loss, name, plot in (
            ("final_train_loss", "training", "trials_to_match"),
            ("final_valid_loss", "validation", "trials_to_match_valid"),
        ):
            match = tuning.match_report(results, trials, searches, budgets, reference, args.seed, loss)
            reports[reference][loss] = match
            tables.append(
                f"Trials to match {reference} on {name} loss (budgets {budgets}):\n\n"
                + tuning.markdown_match_table(match)
            )
            tuning.plot_match(match, os.path.join(args.output, f"{plot}{suffix}.png"))
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump({"seed": args.seed, "budgets": budgets, "report": summary, "trials_to_match": reports}, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write("\n\n".join(tables) + "\n")
    from keras_lopt import plots

    plots.draw_benchmark_curves(results, summary, runs, os.path.join(args.output, "curves.png"))
    print(*tables, sep="\n\n")
