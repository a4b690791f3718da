"""Hyperparameter-search baselines (KerasTuner) and the trials-to-match report.

The question: how many tuning trials does a user need before a tuned classic
optimizer trains a task as well as `LearnedOptimizer()` does with none?

Searches (`SEARCHES`), each run by KerasTuner's own oracles:

    adam_grid    `GridSearchOracle` over Adam's learning rate. A budget of N
                 trials is its own grid: N log-spaced rates in [1e-4, 1e-1]
                 (N = 1: Keras' default, 1e-3).
    adamw_bayes  `BayesianOptimizationOracle` over AdamW's `learning_rate`
                 (log, [1e-4, 1e-1]), `weight_decay` (log, [1e-5, 1e-1]) and
                 `beta_1` ([0.5, 0.99]): 3 random points, then the Gaussian
                 process. Its proposals do not depend on `max_trials`, so one
                 search serves every budget: budget k is its first k trials.

A trial is exactly one `harness.train_once` run (same initialisation, batch
order and XLA train step as the benchmark); its objective is the final
validation loss. A diverged trial is reported to KerasTuner as failed. Every
trial is appended to a JSON lines file as it finishes; KerasTuner's project
directories (`overwrite=False`) and that file let an interrupted search resume
without repeating a finished trial.

Trials to match: the first trial count at which the search's pick (the trial
with the lowest validation loss so far, as a user would pick it) has a final
training loss (or, as a second report, validation loss) no higher than the
reference's (`learned` by default), within `report.TIE_TOLERANCE`.
"""

import json
import math
import os

import numpy as np

from keras_lopt.evaluation import harness, suites
from keras_lopt.evaluation.report import TIE_TOLERANCE

__all__ = [
    "SEARCHES",
    "grid_learning_rates",
    "run_search",
    "load_trials",
    "search_points",
    "LOSSES",
    "match_report",
    "markdown_match_table",
    "plot_match",
]

SEARCHES = ("adam_grid", "adamw_bayes")
OBJECTIVE = "val_loss"
LOSSES = ("final_train_loss", "final_valid_loss")
GRID_RANGE = (1e-4, 1e-1)


def grid_learning_rates(budget):
    """The `budget` learning rates of the grid search, rounded to 3 digits."""
    if budget < 1:
        raise ValueError(f"`budget` must be a positive integer. Received: budget={budget}")
    if budget == 1:
        return [1e-3]
    return [float(f"{lr:.3g}") for lr in np.geomspace(*GRID_RANGE, budget)]


def _is_nested(search):
    """Whether budget k of `search` is the first k trials of one search."""
    return search == "adamw_bayes"


def _oracle(search, budget, seed):
    import keras_tuner as kt

    hp = kt.HyperParameters()
    common = dict(
        objective=kt.Objective(OBJECTIVE, "min"),
        max_trials=budget,
        hyperparameters=hp,
        seed=seed,
        max_consecutive_failed_trials=budget + 1,  # a diverged trial is a result, not an error
    )
    if search == "adam_grid":
        hp.Choice("learning_rate", grid_learning_rates(budget))
        return kt.oracles.GridSearchOracle(**common)
    if search == "adamw_bayes":
        hp.Float("learning_rate", *GRID_RANGE, sampling="log", default=1e-3)
        hp.Float("weight_decay", 1e-5, 1e-1, sampling="log", default=4e-3)
        hp.Float("beta_1", 0.5, 0.99, default=0.9)
        return kt.oracles.BayesianOptimizationOracle(num_initial_points=3, **common)
    raise ValueError(f"Unknown search {search!r}. Valid: {', '.join(SEARCHES)}")


def _optimizer_class(search):
    return {"adam_grid": "Adam", "adamw_bayes": "AdamW"}[search]


def _project(search, budget):
    return search if _is_nested(search) else f"{search}_{budget}"


def _trial_key(record):
    return (record["task"], record["project"], record["trial"], record["seed"], record["steps"])


def load_trials(path):
    """Trial records of a JSON lines file; the last one of each trial wins."""
    if not os.path.exists(path):
        return []
    records = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            records[_trial_key(record)] = record
    return list(records.values())


def _make_tuner(oracle, **kwargs):
    import keras_tuner as kt

    class TrainOnceTuner(kt.Tuner):
        """A KerasTuner tuner whose trial is one `harness.train_once` run."""

        def __init__(self, oracle, task, search, budget, steps, seed, trials_path, log, **kwargs):
            super().__init__(oracle=oracle, **kwargs)
            self._run = dict(task=task, search=search, budget=budget, steps=steps, seed=seed)
            self._trials_path = trials_path
            self._log = log
            self._done = {
                (_trial_key(r), json.dumps(r["hyperparameters"], sort_keys=True)): r for r in load_trials(trials_path)
            }

        def run_trial(self, trial, *args, **kwargs):
            run = self._run
            values = dict(trial.hyperparameters.values)
            record = dict(
                task=run["task"].name,
                search=run["search"],
                budget=run["budget"],
                project=_project(run["search"], run["budget"]),
                trial=int(trial.trial_id) + 1,
                seed=run["seed"],
                steps=run["steps"],
                hyperparameters=values,
            )
            key = (_trial_key(record), json.dumps(values, sort_keys=True))
            if key in self._done:
                record = self._done[key]
            else:
                spec = {"class_name": _optimizer_class(run["search"]), "config": values}
                result = harness.train_once(run["task"], spec, run["steps"], run["seed"])
                record.update(
                    final_train_loss=result.final_train_loss,
                    final_valid_loss=result.final_valid_loss,
                    diverged=result.diverged,
                    steps_spent=run["steps"],
                    seconds=result.seconds,
                )
                with open(self._trials_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                self._done[key] = record
                self._log(
                    f"{record['task']:22s} {record['project']:16s} trial {record['trial']:3d}: "
                    f"train {record['final_train_loss']:.4g} valid {record['final_valid_loss']:.4g} "
                    f"{_format_hp(values)} ({record['seconds']:.1f}s)"
                )
            if record["diverged"]:
                raise kt.errors.FailedTrialError(f"Trial {record['trial']} diverged: {values}")
            return {OBJECTIVE: record["final_valid_loss"], "loss": record["final_train_loss"]}

    return TrainOnceTuner(oracle, **kwargs)


def _format_hp(values):
    return " ".join(f"{k}={v:.3g}" for k, v in sorted(values.items()))


def run_search(task_name, search, budgets, steps, seed, output_dir, log=print):
    """Runs `search` on one evaluation task for each budget; returns its trials.

    Trials go to `output_dir/trials.jsonl`, KerasTuner's state to
    `output_dir/tuners/<task>/`. A rerun resumes: finished trials are not
    trained again.
    """
    budgets = sorted(set(int(b) for b in budgets))
    if not budgets or budgets[0] < 1:
        raise ValueError(f"`budgets` must be positive integers. Received: budgets={budgets}")
    _oracle(search, 1, seed)  # validates the search name before any work
    task = suites.get_task(task_name)
    steps = steps or task.steps
    os.makedirs(output_dir, exist_ok=True)
    trials_path = os.path.join(output_dir, "trials.jsonl")
    for budget in budgets[-1:] if _is_nested(search) else budgets:
        tuner = _make_tuner(
            _oracle(search, budget, seed),
            task=task,
            search=search,
            budget=budget,
            steps=steps,
            seed=seed,
            trials_path=trials_path,
            log=log,
            directory=os.path.join(output_dir, "tuners", task.name),
            project_name=_project(search, budget),
            overwrite=False,
        )
        tuner.search(verbose=0)
    return [
        r
        for r in load_trials(trials_path)
        if r["task"] == task.name and r["search"] == search and r["steps"] == steps and r["seed"] == seed
    ]


def _loss(value):
    return value if math.isfinite(value) else math.inf


def search_points(trials, search, budgets):
    """What the search gives a user at each trial count, from its trial records.

    Returns a list of dicts `{trials, steps_spent, final_train_loss,
    final_valid_loss, hyperparameters}`, one per trial count, each for the
    trial with the lowest validation loss among the trials run so far
    (nested searches: counts 1..max(budgets); grids: each budget's own grid).
    """
    budgets = sorted(set(budgets))
    runs = []
    if _is_nested(search):
        ordered = sorted((r for r in trials if r["search"] == search), key=lambda r: r["trial"])
        ordered = ordered[: budgets[-1]]
        runs = [ordered[:k] for k in range(1, len(ordered) + 1)]
    else:
        for budget in budgets:
            grid = [r for r in trials if r["search"] == search and r["budget"] == budget]
            if len(grid) == budget:
                runs.append(grid)
    points = []
    for run in runs:
        pick = min(run, key=lambda r: (_loss(r["final_valid_loss"]), r["trial"]))
        points.append(
            dict(
                trials=len(run),
                steps_spent=sum(r["steps_spent"] for r in run),
                final_train_loss=_loss(pick["final_train_loss"]),
                final_valid_loss=_loss(pick["final_valid_loss"]),
                hyperparameters=pick["hyperparameters"],
            )
        )
    return points


def match_report(results, trials, searches, budgets, reference="learned", seed=0, loss="final_train_loss"):
    """Trials to match `reference` for each task with a reference result.

    `results`: benchmark records (`harness.run_benchmark`), which must hold
    the reference's run; `trials`: trial records (`run_search`).
    Returns `{task: {"loss", "reference": {...}, "searches": {search:
    {"points", "matched", "max_trials"}}, "best": search or None}}`, where
    `matched` is the first point whose `loss` ("final_train_loss" or
    "final_valid_loss") is at most the reference's (to
    `report.TIE_TOLERANCE`), or None.
    """
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}. Received: loss={loss!r}")
    report = {}
    for ref in results:
        if ref["optimizer"] != reference or ref["seed"] != seed:
            continue
        task = ref["task"]
        target = (1 + TIE_TOLERANCE) * _loss(ref[loss])
        entry = {
            "loss": loss,
            "reference": {
                "optimizer": reference,
                "final_train_loss": _loss(ref["final_train_loss"]),
                "final_valid_loss": _loss(ref["final_valid_loss"]),
                "steps": ref["steps"],
            },
            "searches": {},
        }
        for search in searches:
            mine = [t for t in trials if t["task"] == task and t["steps"] == ref["steps"] and t["seed"] == seed]
            points = search_points(mine, search, budgets)
            matched = next((p for p in points if p[loss] <= target), None)
            entry["searches"][search] = {
                "points": points,
                "matched": matched,
                "max_trials": max((p["trials"] for p in points), default=0),
            }
        found = [(s["matched"]["trials"], name) for name, s in entry["searches"].items() if s["matched"]]
        entry["best"] = min(found)[1] if found else None
        report[task] = entry
    return report


def markdown_match_table(report):
    """One row per task: trials and train steps each search needs to match.

    Losses are shown as "train (valid)"; the match is on the report's `loss`.
    """
    searches = sorted({s for e in report.values() for s in e["searches"]}, key=list(SEARCHES).index)
    lines = [
        "| task | reference train (valid) | "
        + " | ".join(f"{s}: trials to match (steps) | {s}: pick at max trials, train (valid)" for s in searches)
        + " | fewest trials to match |",
        "|---|---|" + "---|---|" * len(searches) + "---|",
    ]
    for task in sorted(report):
        entry = report[task]
        ref = entry["reference"]
        cells = [f"{ref['final_train_loss']:.4g} ({ref['final_valid_loss']:.4g})"]
        for name in searches:
            s = entry["searches"].get(name)
            if not s or not s["points"]:
                cells += ["not run", ""]
                continue
            if s["matched"]:
                cells.append(f"**{s['matched']['trials']}** ({s['matched']['steps_spent']:,})")
            else:
                cells.append(f"not matched within {s['max_trials']}")
            last = s["points"][-1]
            cells.append(
                f"{last['final_train_loss']:.4g} ({last['final_valid_loss']:.4g}) {_format_hp(last['hyperparameters'])}"
            )
        best = entry["best"]
        cells.append(f"{entry['searches'][best]['matched']['trials']} ({best})" if best else "not matched")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_match(report, path):
    """The pick's loss / the reference's against trials (log axes), per search."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    searches = sorted({s for e in report.values() for s in e["searches"]}, key=list(SEARCHES).index)
    loss = next(iter(report.values()))["loss"] if report else LOSSES[0]
    fig, axes = plt.subplots(1, len(searches), figsize=(5.5 * len(searches), 4), squeeze=False)
    for ax, search in zip(axes.flat, searches):
        zero = []  # a ratio to a reference loss of 0 is meaningless
        for task in sorted(report):
            entry = report[task]
            points = entry["searches"].get(search, {}).get("points", [])
            ref = entry["reference"][loss]
            if not points or not ref > 0:
                zero += [task] if points else []
                continue
            ax.plot(
                [p["trials"] for p in points], [p[loss] / ref for p in points], marker="o", ms=3, lw=1.4, label=task
            )
        if zero:
            ax.text(
                0.01,
                0.01,
                f"not shown, reference loss 0: {', '.join(zero)}",
                transform=ax.transAxes,
                fontsize=7,
                va="bottom",
            )
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks([n for n in (1, 3, 10, 30, 100, 300, 1000) if n <= max(ax.get_xlim()[1], 1)])
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_yscale("log")
        ax.set_xlabel("tuning trials")
        ax.set_ylabel(f"{'training' if loss == 'final_train_loss' else 'validation'} loss of the pick / reference's")
        ax.set_title(f"{search} (pick: lowest validation loss so far)", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
