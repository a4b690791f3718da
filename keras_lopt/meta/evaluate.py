"""Benchmark harness: train evaluation tasks with several optimizers.

Optimizer specs (strings, so they fit on a command line):

    learned              LearnedOptimizer() with the default preset
    learned:NAME_OR_PATH LearnedOptimizer(preset=NAME_OR_PATH)
    adam, adamw, sgdm    Adam(1e-3), AdamW(1e-3), SGD(1e-2, momentum=0.9)
    adam@LR              Adam(LR), e.g. adam@3e-3
    NAME                 any other Keras optimizer identifier at its Keras
                         defaults (rmsprop, adagrad, adadelta, adamax,
                         nadam, lion, ...), via `keras.optimizers.get`
    adam_tuned           Adam at each learning rate of `ADAM_GRID`; the
                         reported run is the rate with the lowest mean final
                         validation loss over seeds, as a user tuning the
                         learning rate on validation data would pick it.
    classic              group: every classic Keras optimizer at its Keras
                         defaults (`CLASSIC_OPTIMIZERS`); `expand_groups`
                         replaces it by its members.
    {"class_name": ..., "config": {...}}
                         (Python only) a Keras optimizer config, as
                         `keras.optimizers.serialize` writes it; the tuning
                         baselines (`tuning.py`) run their trials this way.

Every run trains for the same number of steps from the same seeded
initialisation and batch order, in one process, with a train step compiled
by XLA that calls `optimizer.apply_gradients`.
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_lopt.meta import eval_tasks

ADAM_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CURVE_POINTS = 200
DEFAULT_OPTIMIZERS = ("learned", "adam", "adamw", "sgdm", "adam_tuned")
CLASSIC_OPTIMIZERS = ("sgd", "sgdm", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "adam", "adamw", "lion")
SPEC_GROUPS = {"classic": CLASSIC_OPTIMIZERS}


def make_optimizer(spec):
    """A fresh Keras optimizer for one spec (see the module docstring)."""
    import keras_lopt

    if isinstance(spec, dict):
        return keras.optimizers.get(spec)
    if spec == "learned":
        return keras_lopt.LearnedOptimizer()
    if spec.startswith("learned:"):
        return keras_lopt.LearnedOptimizer(preset=spec.split(":", 1)[1])
    if spec == "adam":
        return keras.optimizers.Adam(1e-3)
    if spec == "adamw":
        return keras.optimizers.AdamW(1e-3)
    if spec == "sgdm":
        return keras.optimizers.SGD(1e-2, momentum=0.9)
    if spec.startswith("adam@"):
        try:
            lr = float(spec[5:])
        except ValueError:
            lr = -1.0
        if lr > 0:
            return keras.optimizers.Adam(lr)
    if spec.isidentifier() and spec != "adam_tuned" and spec not in SPEC_GROUPS:
        try:
            return keras.optimizers.get(spec)
        except ValueError:
            pass
    raise ValueError(
        f"Unknown optimizer spec {spec!r}. Valid: learned, learned:PRESET_OR_PATH, "
        "adam, adamw, sgdm, adam@LR, adam_tuned, classic, or a Keras optimizer name"
    )


def expand_groups(specs):
    """Replaces each group name (`SPEC_GROUPS`) by its members, without repeats."""
    expanded = []
    for spec in specs:
        for name in SPEC_GROUPS.get(spec, (spec,)):
            if name not in expanded:
                expanded.append(name)
    return expanded


def expand_specs(specs):
    """Replaces groups by their members and `adam_tuned` by its `adam@LR` grid."""
    runs = []
    for spec in expand_groups(specs):
        names = [f"adam@{lr:g}" for lr in ADAM_GRID] if spec == "adam_tuned" else [spec]
        for name in names:
            if name != "adam_tuned":
                make_optimizer(name)  # validates the spec before anything runs
            if name not in runs:
                runs.append(name)
    return runs


@dataclasses.dataclass
class RunResult:
    task: str
    optimizer: str
    seed: int
    steps: int
    final_train_loss: float
    final_valid_loss: float
    diverged: bool
    seconds: float
    curve_steps: list
    curve: list


def _full_loss(model, loss_fn, data, batch_size=512):
    x, y = data
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        total += float(loss_fn(yb, model(xb, training=False))) * len(xb)
        count += len(xb)
    return total / count


def train_once(task, spec, steps, seed):
    """Trains `task` with optimizer `spec` for `steps` steps -> RunResult."""
    keras.utils.set_random_seed(seed)
    model = task.build_model()
    optimizer = make_optimizer(spec)
    variables = model.trainable_variables

    @tf.function(jit_compile=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = task.loss(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    x, y = task.train
    rng = np.random.default_rng(seed)
    order = np.empty(0, np.int64)
    losses = np.empty(steps, np.float64)
    start = time.perf_counter()
    diverged = False
    for step in range(steps):
        if len(order) < task.batch_size:
            order = np.concatenate([order, rng.permutation(len(x))])
        idx, order = order[: task.batch_size], order[task.batch_size :]
        losses[step] = float(train_step(x[idx], y[idx]))
        if not math.isfinite(losses[step]):
            diverged = True
            losses[step:] = np.nan
            break
    seconds = time.perf_counter() - start
    if diverged:
        final_train = final_valid = float("nan")
    else:
        final_train = _full_loss(model, task.loss, task.train)
        final_valid = _full_loss(model, task.loss, task.valid)
        diverged = not (math.isfinite(final_train) and math.isfinite(final_valid))
    points = np.unique(np.linspace(0, steps - 1, min(CURVE_POINTS, steps)).astype(int))
    # Smooth minibatch noise for the curve: mean over each point's window.
    windows = np.split(losses, points[1:])
    return RunResult(
        task=task.name, optimizer=spec, seed=seed, steps=steps,
        final_train_loss=final_train, final_valid_loss=final_valid, diverged=diverged,
        seconds=seconds, curve_steps=points.tolist(),
        curve=[float(np.mean(w)) if len(w) else float("nan") for w in windows],
    )


def run_benchmark(task_names, specs, steps, seeds, output_path=None, log=print):
    """Runs every (task, optimizer, seed); returns the list of result dicts.

    Results are appended to `output_path` (JSON lines) as they finish, and
    runs already in that file are skipped, so an interrupted benchmark
    resumes where it stopped.
    """
    runs = expand_specs(specs)
    done = {}
    if output_path and os.path.exists(output_path):
        with open(output_path) as f:
            for line in f:
                record = json.loads(line)
                done[(record["task"], record["optimizer"], record["seed"], record["steps"])] = record
    results = []
    for name in task_names:
        task = eval_tasks.get_eval_task(name)
        for spec in runs:
            for seed in seeds:
                key = (task.name, spec, seed, steps)
                if key in done:
                    results.append(done[key])
                    continue
                record = dataclasses.asdict(train_once(task, spec, steps, seed))
                results.append(record)
                log(
                    f"{task.name:22s} {spec:28s} seed {seed}: train {record['final_train_loss']:.4g} "
                    f"valid {record['final_valid_loss']:.4g} ({record['seconds']:.1f}s)"
                )
                if output_path:
                    with open(output_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
    return results


def _mean(values):
    return float(np.mean(values)) if values else float("nan")


def summarize(results, specs):
    """Per task: mean final losses per optimizer, the tuned-Adam pick, wins.

    Returns a dict `{task: {"optimizers": {spec: {...}}, "adam_tuned_lr": lr}}`
    where a diverged run counts as an infinite loss.
    """
    by_task = {}
    for r in results:
        by_task.setdefault(r["task"], {}).setdefault(r["optimizer"], []).append(r)
    summary = {}
    for task, runs in by_task.items():
        stats = {}
        for spec, records in runs.items():
            finite = lambda v: v if math.isfinite(v) else math.inf  # noqa: E731
            stats[spec] = {
                "final_train_loss": _mean([finite(r["final_train_loss"]) for r in records]),
                "final_valid_loss": _mean([finite(r["final_valid_loss"]) for r in records]),
                "diverged_runs": sum(r["diverged"] for r in records),
                "seeds": len(records),
            }
        entry = {"optimizers": stats}
        grid = [f"adam@{lr:g}" for lr in ADAM_GRID if f"adam@{lr:g}" in stats]
        if "adam_tuned" in specs and grid:
            best = min(grid, key=lambda s: stats[s]["final_valid_loss"])
            stats["adam_tuned"] = dict(stats[best], picked=best)
            entry["adam_tuned_lr"] = float(best[5:])
        summary[task] = entry
    return summary


TIE_TOLERANCE = 1e-3


def win_counts(summary, learned, against=("adam", "adam_tuned")):
    """Tasks where the learned optimizer's mean final train loss is lower.

    A win needs a loss lower by more than `TIE_TOLERANCE` (relative), so two
    optimizers that compute the same thing up to rounding tie.
    """
    counts = {}
    for baseline in against:
        tasks = [t for t, e in summary.items() if learned in e["optimizers"] and baseline in e["optimizers"]]
        wins = [
            t for t in tasks
            if summary[t]["optimizers"][learned]["final_train_loss"]
            < (1 - TIE_TOLERANCE) * summary[t]["optimizers"][baseline]["final_train_loss"]
        ]
        counts[baseline] = {"wins": len(wins), "tasks": len(tasks), "won": sorted(wins)}
    return counts


def markdown_table(summary, specs):
    """The final-train-loss table (valid loss in parentheses) as markdown."""
    columns = [s for s in specs]
    lines = [
        "| task | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for task in sorted(summary):
        stats = summary[task]["optimizers"]
        cells = []
        for spec in columns:
            if spec not in stats:
                cells.append("")
                continue
            s = stats[spec]
            cell = f"{s['final_train_loss']:.4g} ({s['final_valid_loss']:.4g})"
            if spec == "adam_tuned":
                cell += f" lr={s['picked'][5:]}"
            if s["diverged_runs"]:
                cell += f" **{s['diverged_runs']} diverged**"
            cells.append(cell)
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(results, summary, specs, path):
    """Loss curves (mean over seeds) of every task in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(summary)
    cols = 3
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for spec in specs:
            shown = summary[task]["optimizers"].get(spec, {}).get("picked", spec)
            records = [r for r in results if r["task"] == task and r["optimizer"] == shown]
            if not records:
                continue
            curve = np.nanmean([r["curve"] for r in records], axis=0)
            label = f"{spec} ({shown[5:]})" if spec == "adam_tuned" else spec
            ax.plot(records[0]["curve_steps"], curve, label=label, lw=1.4)
        ax.set_title(task)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
