"""The protocol's report: tuned Adam per metric, counts against the targets.

Baselines, per task: Adam(1e-3) (`specs.ADAM_DEFAULT`), and Adam tuned per
metric over `specs.ADAM_GRID`: for training-loss comparisons the rate with
the lowest mean final training loss over the seeds, for validation-loss
comparisons the rate with the lowest mean final validation loss (a user
tunes once per task, on the metric they care about). Only the seeds on which
the whole grid ran count for tuning and for comparisons with tuned Adam.

Counts, per candidate (the specs asked for; fixed Adam rates for scale), over
task-seeds: a candidate wins a comparison when its final loss is lower than
the baseline's of the same seed by more than `TIE_TOLERANCE` (relative). A
non-finite loss counts as infinite. Each rung of a ladder also gets the worst
ratio over seeds of the candidate's final training loss to Adam(1e-3)'s.

Against the incumbent: counts against Adam do not show a candidate that is
far worse than the default preset on some task but still beats Adam there
(a step floor was 13-16x worse than the default on one selection task and
thousands of times worse on a test task; BENCHMARKS.md). So each candidate
also gets its worst task-seed ratio of final training loss to the default
preset's (`specs.canonical("learned")`) where both ran, flagged above
`INCUMBENT_LIMIT`.
"""

import math

import numpy as np

from keras_lopt.evaluation import specs, suites

__all__ = [
    "INCUMBENT_LIMIT",
    "LADDER_LIMIT",
    "TARGETS",
    "TIE_TOLERANCE",
    "beats",
    "beats_on_both",
    "build",
    "markdown",
    "tuned_rates",
]

TIE_TOLERANCE = 1e-3
LADDER_LIMIT = 2.0
# A candidate for the default should not end any task-seed this many times
# above the default preset's final training loss.
INCUMBENT_LIMIT = 2.0
METRICS = {"train": "final_train_loss", "valid": "final_valid_loss"}
# (count, baseline, metric, target fraction or None): issue 18's targets.
COMPARISONS = (
    ("train_vs_adam", "adam", "train", 0.95),
    ("train_vs_tuned", "tuned", "train", 0.50),
    ("valid_vs_adam", "adam", "valid", 0.80),
    ("valid_vs_tuned", "tuned", "valid", None),
)
TARGETS = {name: target for name, _, _, target in COMPARISONS if target is not None}
_HEADERS = {
    "train_vs_adam": "train loss < Adam(1e-3)",
    "train_vs_tuned": "train loss < train-tuned Adam",
    "valid_vs_adam": "valid loss < Adam(1e-3)",
    "valid_vs_tuned": "valid loss < valid-tuned Adam",
}


def _loss(value):
    return value if value is not None and math.isfinite(value) else math.inf


def beats(record, other, metric):
    """Whether `record`'s final `metric` ("train" or "valid") loss is lower
    than `other`'s by more than `TIE_TOLERANCE` (relative); a non-finite
    loss counts as infinite."""
    key = METRICS[metric]
    return _loss(record[key]) < (1 - TIE_TOLERANCE) * _loss(other[key])


def beats_on_both(record, other):
    """Whether `record` `beats` `other` on training and on validation loss."""
    return beats(record, other, "train") and beats(record, other, "valid")


GRID = tuple(f"adam@{lr:g}" for lr in specs.ADAM_GRID)


def tuned_rates(records_of_task):
    """`({"train": spec, "valid": spec}, seeds)`: the grid rate with the
    lowest mean final loss per metric, over the seeds on which every rate of
    the grid ran (a partial grid would tune on fewer rates); `({}, [])`
    when there is no such seed."""
    seeds = sorted({seed for by_seed in records_of_task.values() for seed in by_seed})
    seeds = [seed for seed in seeds if all(seed in records_of_task.get(s, {}) for s in GRID)]
    if not seeds:
        return {}, []
    tuned = {
        metric: min(GRID, key=lambda s: np.mean([_loss(records_of_task[s][seed][key]) for seed in seeds]))
        for metric, key in METRICS.items()
    }
    return tuned, seeds


def _ladder(task):
    """The ladder of a task of the suites, else None (old results files)."""
    return suites.get_task(task).ladder if task in suites.task_names() else None


def _ratio(candidate, baseline):
    candidate, baseline = _loss(candidate), _loss(baseline)
    if candidate == baseline:
        return 1.0
    return candidate / baseline if baseline > 0 else math.inf


def _train_loss_ratios(mine, baseline):
    """{seed: final training loss of `mine` over `baseline`'s}, for the
    seeds both ran (each a {seed: record} dict)."""
    return {
        seed: _ratio(r["final_train_loss"], baseline[seed]["final_train_loss"])
        for seed, r in mine.items()
        if seed in baseline
    }


def build(records, candidates, tasks=None, seeds=None):
    """The report of `candidates` (canonical specs) on the records given.

    Args:
        records: result dicts (`harness.run_benchmark`), one steps value per task.
        candidates: specs to count for (learned optimizers, usually).
        tasks, seeds: restrict to these (default: all in `records`).

    Returns:
        A dict: `tasks` {task: {"tuned": {metric: spec}, "tuned_seeds",
        "losses": {spec: {"train", "valid", "diverged", "seeds"}}}}, `counts` {candidate:
        {comparison: {"wins", "runs"}, "nonfinite": n, "runs": n, "ladders":
        {task: worst ratio}, "vs_default": (worst ratio, task, seed) or
        None}}, `default` (the default preset's spec), `targets`, the
        tasks, seeds and steps, and `backends` (the Keras backends of the
        runs; records without one are TensorFlow's).
    """
    tasks = list(tasks) if tasks else list(dict.fromkeys(r["task"] for r in records))
    seeds = sorted(seeds if seeds else {r["seed"] for r in records})
    table = {}  # task -> spec -> seed -> record
    for r in records:
        if r["task"] in tasks and r["seed"] in seeds:
            table.setdefault(r["task"], {}).setdefault(r["optimizer"], {})[r["seed"]] = r
    steps = {
        r["task"]: r["steps"] for by_spec in table.values() for by_seed in by_spec.values() for r in by_seed.values()
    }
    report = {
        "tasks": {},
        "counts": {},
        "seeds": seeds,
        "steps": steps,
        "targets": dict(TARGETS, ladder_worst_ratio=LADDER_LIMIT),
        "default": specs.canonical("learned"),
        "backends": sorted(
            {
                r.get("backend", "tensorflow")
                for by_spec in table.values()
                for by_seed in by_spec.values()
                for r in by_seed.values()
            }
        ),
    }
    for task in tasks:
        runs = table.get(task, {})
        tuned, tuned_seeds = tuned_rates(runs)
        report["tasks"][task] = {
            "tuned": tuned,
            "tuned_seeds": tuned_seeds,
            "losses": {
                spec: {
                    "train": float(np.mean([_loss(r["final_train_loss"]) for r in by_seed.values()])),
                    "valid": float(np.mean([_loss(r["final_valid_loss"]) for r in by_seed.values()])),
                    "diverged": sum(bool(r["diverged"]) for r in by_seed.values()),
                    "seeds": sorted(by_seed),
                }
                for spec, by_seed in runs.items()
            },
        }
    for candidate in candidates:
        counts = {name: {"wins": 0, "runs": 0} for name, *_ in COMPARISONS}
        counts.update(nonfinite=0, runs=0, ladders={}, vs_default=None)
        for task in tasks:
            runs = table.get(task, {})
            mine = runs.get(candidate, {})
            tuned, tuned_seeds = report["tasks"][task]["tuned"], report["tasks"][task]["tuned_seeds"]
            counts["runs"] += len(mine)
            counts["nonfinite"] += sum(bool(r["diverged"]) for r in mine.values())
            for name, baseline, metric, _ in COMPARISONS:
                spec = specs.ADAM_DEFAULT if baseline == "adam" else tuned.get(metric)
                for seed, record in mine.items():
                    other = runs.get(spec, {}).get(seed) if spec else None
                    if other is None or (baseline == "tuned" and seed not in tuned_seeds):
                        continue
                    counts[name]["runs"] += 1
                    counts[name]["wins"] += beats(record, other, metric)
            if _ladder(task):
                ratios = _train_loss_ratios(mine, runs.get(specs.ADAM_DEFAULT, {}))
                if ratios:
                    counts["ladders"][task] = max(ratios.values())
            incumbent = runs.get(report["default"], {}) if candidate != report["default"] else {}
            for seed, ratio in _train_loss_ratios(mine, incumbent).items():
                if counts["vs_default"] is None or ratio > counts["vs_default"][0]:
                    counts["vs_default"] = (ratio, task, seed)
        report["counts"][candidate] = counts
    return report


def _fraction(count):
    if not count["runs"]:
        return "n/a"
    return f"{count['wins']}/{count['runs']} ({100 * count['wins'] / count['runs']:.0f}%)"


def _target(name):
    return f">= {100 * TARGETS[name]:.0f}%" if name in TARGETS else "(none)"


def _meets(count, name):
    if name not in TARGETS or not count["runs"]:
        return ""
    return " ok" if count["wins"] >= TARGETS[name] * count["runs"] else " **missed**"


def _worst_ladder(counts):
    if not counts["ladders"]:
        return "n/a"
    task, ratio = max(counts["ladders"].items(), key=lambda item: item[1])
    flag = " **> 2x**" if ratio > LADDER_LIMIT else ""
    return f"{ratio:.3g} ({task}){flag}"


def _g(value):
    return f"{value:.4g}" if math.isfinite(value) else "inf"


def markdown(report, references=()):
    """The report as markdown: counts against the targets, ladder ratios, and
    per-task tables of final training loss and of final validation loss.

    `references`: specs (e.g. the fixed Adam rates) whose counts are shown
    under the candidates' for context, when `report["counts"]` holds them.
    """
    names = [name for name, *_ in COMPARISONS]
    candidates = [c for c in report["counts"] if c not in references]
    out = [
        f"Keras backend: {', '.join(report.get('backends') or ['tensorflow'])}. "
        f"Seeds {', '.join(map(str, report['seeds']))}; counts are over task-seeds; a win needs a loss lower by "
        f"more than {TIE_TOLERANCE:.1%}. Tuned Adam is the best of {len(specs.ADAM_GRID)} rates "
        f"({', '.join(f'{lr:g}' for lr in specs.ADAM_GRID)}) per task and per metric.",
        "",
        "| optimizer | "
        + " | ".join(_HEADERS[n] for n in names)
        + " | NaN/inf runs | worst ladder ratio (train loss / Adam(1e-3)) |",
        "|---|" + "---|" * (len(names) + 2),
        "| **target** | " + " | ".join(_target(n) for n in names) + f" | 0 | <= {LADDER_LIMIT:g} |",
    ]
    for spec in [*candidates, *[r for r in references if r in report["counts"]]]:
        c = report["counts"][spec]
        nonfinite = f"{c['nonfinite']}/{c['runs']}" + (" **missed**" if c["nonfinite"] else " ok" if c["runs"] else "")
        shown = spec if spec in candidates else f"{specs.label(spec)} (reference)"
        out.append(
            f"| {shown} | "
            + " | ".join(_fraction(c[n]) + _meets(c[n], n) for n in names)
            + f" | {nonfinite} | {_worst_ladder(c)} |"
        )
    against = [c for c in candidates if report["counts"][c].get("vs_default")]
    if against:
        out += [
            "",
            f"Against the default ({report['default']}): worst ratio over task-seeds of final training loss "
            f"to the default's (flagged above {INCUMBENT_LIMIT:g}):",
            "",
            "| optimizer | worst ratio (task, seed) |",
            "|---|---|",
        ]
        for spec in against:
            ratio, task, seed = report["counts"][spec]["vs_default"]
            flag = f" **> {INCUMBENT_LIMIT:g}x**" if ratio > INCUMBENT_LIMIT else ""
            out.append(f"| {spec} | {ratio:.3g} ({task}, seed {seed}){flag} |")
    ladder_tasks = [t for t in report["tasks"] if any(t in report["counts"][c]["ladders"] for c in candidates)]
    if ladder_tasks:
        out += [
            "",
            "Ladder rungs, worst ratio over seeds of final training loss to Adam(1e-3)'s (flagged above 2):",
            "",
            "| rung | " + " | ".join(candidates) + " |",
            "|---|" + "---|" * len(candidates),
        ]
        for task in ladder_tasks:
            cells = []
            for spec in candidates:
                ratio = report["counts"][spec]["ladders"].get(task)
                cells.append("" if ratio is None else f"{ratio:.3g}" + (" **> 2x**" if ratio > LADDER_LIMIT else ""))
            out.append(f"| {task} ({report['steps'].get(task)} steps) | " + " | ".join(cells) + " |")
    for metric, title in (("train", "Final training loss"), ("valid", "Final validation loss")):
        columns = ["Adam(1e-3)", f"Adam tuned on {metric} loss (rate)", *candidates]
        out += [
            "",
            f"{title} (whole {'training' if metric == 'train' else 'validation'} set, mean over seeds; "
            "`diverged` counts non-finite runs):",
            "",
            "| task | steps | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for task, entry in report["tasks"].items():
            losses, tuned = entry["losses"], entry["tuned"].get(metric)
            cells = []
            for column, spec in enumerate([specs.ADAM_DEFAULT, tuned, *candidates]):
                s = losses.get(spec) if spec else None
                if s is None:
                    cells.append("")
                    continue
                cell = _g(s[metric]) + (f" ({specs.adam_rate(spec):g})" if column == 1 else "")
                cells.append(cell + (f" **{s['diverged']} diverged**" if s["diverged"] else ""))
            out.append(f"| {task} | {report['steps'].get(task, '')} | " + " | ".join(cells) + " |")
    return "\n".join(out)
