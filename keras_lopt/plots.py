"""PNG figures of what a learned optimizer does (needs the `plots` extra).

* `plot_trajectories`: paths of several optimizers on 2-D problems
  (`keras_lopt.toy_problems`), with their loss curves.
* `plot_probes`: the learned update against the gradient for fixed momentum
  and RMS, and against training progress, next to Adam's
  (`keras_lopt.probes`).
* `plot_benchmark_curves`: loss curves from a `keras-lopt benchmark`
  results file (`draw_benchmark_curves`: from records in memory).
* `plot_meta_training`: meta-loss and held-out meta-loss against outer step
  from meta-training checkpoints.

Each function computes its data, draws one PNG at `path` and returns the
data it drew, so that tests (and users) can check the numbers behind a
figure. The command line is `keras-lopt plot trajectories|probes|curves|meta-training`.
"""

import io
import json
import math
import os

import numpy as np

from keras_lopt import validation

_COLORS = {"learned": "C3", "adam": "C0", "sgd": "C2"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "keras_lopt.plots needs matplotlib: install it with "
            "`pip install 'keras-lopt[plots]'` (or `pip install matplotlib`)."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi=100):
    """Writes `fig` as a 256-colour PNG (a third of the bytes of RGBA)."""
    from PIL import Image  # a dependency of matplotlib

    plt = _pyplot()
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, format="PNG", optimize=True)


def plot_trajectories(path, problems=("product", "rosenbrock"), optimizers=("learned", "adam", "sgd"), steps=500):
    """Optimizer paths on 2-D problems (top row) and their losses (bottom).

    Args:
        path: the PNG to write.
        problems: names from `keras_lopt.toy_problems.PROBLEMS`.
        optimizers: specs (see `keras_lopt.toy_problems`).
        steps: optimizer steps from each start.

    Returns:
        `{problem: {spec: (points [starts, steps + 1, 2], losses [starts, steps + 1])}}`.
    """
    from keras_lopt import toy_problems
    from keras_lopt.evaluation import specs

    problems = [toy_problems.get_problem(name) for name in problems]
    optimizers = list(optimizers)
    kinds = [specs.parse(spec).kind for spec in optimizers]
    validation.positive_int("steps", steps)
    plt = _pyplot()
    data = {}
    fig, axes = plt.subplots(2, len(problems), figsize=(5.2 * len(problems), 8.4), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for column, problem in enumerate(problems):
        runs = data[problem.name] = {spec: toy_problems.trajectories(problem, spec, steps) for spec in optimizers}
        ax, loss_ax = axes[0, column], axes[1, column]
        (x0, x1), (y0, y1) = problem.limits
        grid_x, grid_y = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
        surface = np.asarray(problem.loss(np.stack([grid_x, grid_y]).astype(np.float32)), np.float64)
        ax.contour(grid_x, grid_y, np.log10(surface + 1e-3), levels=14, cmap="Greys", linewidths=0.5)
        for index, spec in enumerate(optimizers):
            points, losses = runs[spec]
            kind, label = toy_problems.describe(spec, problem)
            color = _COLORS[kind] if kind in _COLORS and kinds.count(kind) == 1 else f"C{index + 4}"
            style = styles[index % len(styles)]
            for start in range(points.shape[0]):
                ax.plot(
                    points[start, :, 0],
                    points[start, :, 1],
                    style,
                    color=color,
                    lw=1.4,
                    label=label if start == 0 else None,
                )
                ax.plot(*points[start, -1], "o", color=color, ms=4)
            loss_ax.plot(np.mean(losses, axis=0) + 1e-12, style, color=color, lw=1.4, label=label)
        for start in problem.starts:
            ax.plot(*start, "k^", ms=6)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_title(f"{problem.name}: {problem.formula}")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(fontsize=7, loc="upper right")
        loss_ax.set_yscale("log")
        loss_ax.set_xlabel("step")
        loss_ax.set_ylabel(f"loss, mean over {len(problem.starts)} starts")
        loss_ax.legend(fontsize=7)
    fig.suptitle(f"{steps} steps from each start (triangles); dots mark where each run ends", fontsize=9)
    _save(fig, path)
    return data


def plot_probes(path, presets=None, gradient_range=3.0, momenta=(-1.0, 0.0, 1.0), step=1000, total_steps=10000):
    """The learned update against the gradient and against progress, with Adam's.

    `presets`: preset names or directories; default: the default preset.

    Left panels: update (in units of the learning rate) against the
    gradient `g` for each momentum `m` (slots before the step; RMS 1, step
    `step`, horizon unknown). Right panel: update against training progress
    `step / total_steps` for `g = m = rms = 1`.

    Returns:
        `{"gradients": [G], "momenta": [M], "steps": [T], "total_steps": int,
        "gradient_sweep": {preset: probe dict of [M, G] arrays},
        "progress_sweep": {preset: probe dict of [T] arrays}}` (see
        `keras_lopt.probes.probe`; Adam's values are in every probe dict).
    """
    from keras_lopt import presets as presets_lib
    from keras_lopt import probes

    presets = [presets_lib.DEFAULT_PRESET] if presets is None else list(presets)
    validation.require(
        validation.is_integer(total_steps) and total_steps >= 2, "total_steps", total_steps, "an integer >= 2"
    )
    validation.positive_number("gradient_range", gradient_range, rule="a positive number")
    gradients = np.linspace(-gradient_range, gradient_range, 121).astype(np.float32)
    steps = np.unique(np.geomspace(1, total_steps, 80).round()).astype(np.float32)
    data = {
        "gradients": gradients,
        "momenta": np.asarray(momenta, np.float32),
        "steps": steps,
        "total_steps": total_steps,
        "gradient_sweep": {},
        "progress_sweep": {},
    }
    for preset in presets:
        data["gradient_sweep"][preset] = probes.gradient_sweep(preset, gradients, momenta, step=step)
        data["progress_sweep"][preset] = probes.progress_sweep(preset, steps, total_steps)

    plt = _pyplot()
    panels = len(momenta) + 1
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels, 3.6), squeeze=False)
    first = next(iter(data["gradient_sweep"].values()))
    for i, momentum in enumerate(momenta):
        ax = axes[0, i]
        ax.plot(gradients, first["adam"][i], color="k", ls="--", lw=1.2, label="Adam", zorder=3)
        for j, preset in enumerate(presets):
            ax.plot(gradients, data["gradient_sweep"][preset]["learned"][i], color=f"C{3 + j}", lw=1.3, label=preset)
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title(f"momentum {momentum:g}, rms 1, step {step}", fontsize=9)
        ax.set_xlabel("gradient")
        ax.set_ylabel("update / learning rate")
        ax.legend(fontsize=7)
    ax = axes[0, -1]
    progress = steps / total_steps
    first = next(iter(data["progress_sweep"].values()))
    ax.plot(progress, first["adam"], color="k", ls="--", lw=1.2, label="Adam", zorder=3)
    for j, preset in enumerate(presets):
        ax.plot(progress, data["progress_sweep"][preset]["learned"], color=f"C{3 + j}", lw=1.3, label=preset)
    ax.set_xscale("log")
    ax.set_title(f"gradient = momentum = rms = 1, horizon {total_steps}", fontsize=9)
    ax.set_xlabel("training progress (step / total_steps)")
    ax.set_ylabel("update / learning rate")
    ax.legend(fontsize=7)
    _save(fig, path)
    return data


def read_results(path):
    """Benchmark records from a results file: JSON lines or one JSON list."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Results file not found: {path!r}")
    with open(path) as f:
        text = f.read()
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"Results file {path!r} is not JSON or JSON lines: {e}") from None
    required = {"task", "optimizer", "seed", "curve", "curve_steps"}
    for record in records:
        if not isinstance(record, dict) or not required <= set(record):
            raise ValueError(
                f"Results file {path!r} holds a record without the fields "
                f"{sorted(required)} of `keras-lopt benchmark`. Received: {str(record)[:200]}"
            )
    if not records:
        raise ValueError(f"Results file {path!r} holds no records.")
    return records


def plot_benchmark_curves(results_path, path, optimizers=None, tasks=None):
    """Training-loss curves per task from a benchmark results file.

    Args:
        results_path: `results.jsonl` written by `keras-lopt benchmark`.
        path: the PNG to write.
        optimizers: candidate specs to draw beside the Adam baselines
            (default: every spec in the file that is not an `adam@LR`).
        tasks: tasks to show (default: all).

    Returns:
        The report (`keras_lopt.evaluation.report.build`) the figure shows.
    """
    from keras_lopt.evaluation import report, specs

    records = read_results(results_path)
    present = list(dict.fromkeys(r["optimizer"] for r in records))
    candidates = list(optimizers) if optimizers else [s for s in present if specs.adam_rate(s) is None]
    for spec in candidates:
        if spec not in present:
            raise ValueError(f"Optimizer {spec!r} is not in {os.fspath(results_path)!r}. Present: {present}")
    if tasks:
        known = sorted({r["task"] for r in records})
        for task in tasks:
            if task not in known:
                raise ValueError(f"Task {task!r} is not in {os.fspath(results_path)!r}. Present: {known}")
        records = [r for r in records if r["task"] in tasks]
    summary = report.build(records, candidates)
    draw_benchmark_curves(records, summary, candidates, path)
    return summary


def draw_benchmark_curves(records, summary, candidates, path):
    """One panel per task with results: mean training-loss curve over seeds
    of each candidate, of Adam(1e-3) (black, dashed, drawn on top) and of
    Adam tuned per metric (labelled with its rate).

    Args:
        records: benchmark result dicts.
        summary: `keras_lopt.evaluation.report.build(records, ...)`.
        candidates: specs to draw besides the baselines.
        path: the PNG to write.
    """
    from keras_lopt.evaluation import specs

    tasks = [task for task, entry in summary["tasks"].items() if entry["losses"]]
    if not tasks:
        raise ValueError("No benchmark results to draw.")
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)

    def curve(task, spec):
        mine = [r for r in records if r["task"] == task and r["optimizer"] == spec and r["seed"] in summary["seeds"]]
        if not mine:
            return None
        return mine[0]["curve_steps"], np.nanmean(np.array([r["curve"] for r in mine], dtype=float), axis=0)

    for ax, task in zip(axes.flat, tasks):
        tuned = summary["tasks"][task]["tuned"]
        lines = [(spec, dict(label=spec, color=f"C{i + 3}", lw=1.4, zorder=3)) for i, spec in enumerate(candidates)]
        if tuned:
            rate = {metric: specs.adam_rate(spec) for metric, spec in tuned.items()}
            if tuned["train"] == tuned["valid"]:
                lines.append(
                    (
                        tuned["train"],
                        dict(
                            label=f"Adam tuned on train and valid loss ({rate['train']:g})",
                            color="C0",
                            lw=1.6,
                            zorder=2,
                        ),
                    )
                )
            else:
                lines.append(
                    (
                        tuned["train"],
                        dict(label=f"Adam tuned on train loss ({rate['train']:g})", color="C0", lw=1.6, zorder=2),
                    )
                )
                lines.append(
                    (
                        tuned["valid"],
                        dict(
                            label=f"Adam tuned on valid loss ({rate['valid']:g})", color="C2", lw=1.6, ls=":", zorder=2
                        ),
                    )
                )
        lines.append((specs.ADAM_DEFAULT, dict(label="Adam(1e-3)", color="black", lw=1.8, ls="--", zorder=5)))
        for spec, style in lines:
            data = curve(task, spec)
            if data is not None:
                ax.plot(*data, **style)
        ax.set_title(task, fontsize=10)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (window mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    _save(fig, path)


def read_meta_training(run_dir):
    """The histories of a meta-training run from its `checkpoint.npz`.

    Returns a dict of numpy arrays: `meta_loss [S]` (one per outer step),
    `eval_step [E]` and `eval_meta_loss [E]` (the held-out evaluations).
    """
    path = os.path.join(os.fspath(run_dir), "checkpoint.npz")
    if not os.path.isfile(path):
        raise ValueError(f"No meta-training checkpoint in {os.fspath(run_dir)!r} (expected {path!r}).")
    with np.load(path) as data:
        return {key: np.asarray(data[key]) for key in ("meta_loss", "eval_step", "eval_meta_loss")}


def plot_meta_training(run_dirs, path, labels=None, window=20):
    """Meta-training progress of one or more runs, side by side.

    Left: the outer steps' meta-loss (a moving mean over `window` steps:
    each step samples other tasks, so single values are noisy). Right: the
    held-out meta-loss at each evaluation. Lower is better in both.

    Args:
        run_dirs: meta-training output directories (each holds
            `checkpoint.npz`).
        path: the PNG to write.
        labels: one name per run (default: the directories' base names).
        window: moving-mean width in outer steps, >= 1.

    Returns:
        `{label: read_meta_training(run_dir)}`.
    """
    run_dirs = [os.fspath(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("`run_dirs` must name at least one meta-training run.")
    if labels is None:
        labels = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"Expected one label per run ({len(run_dirs)}). Received: labels={list(labels)}")
    validation.positive_int("window", window)
    runs = {label: read_meta_training(d) for label, d in zip(labels, run_dirs)}
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, run) in enumerate(runs.items()):
        losses = run["meta_loss"]
        if len(losses):
            width = min(window, len(losses))
            smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
            left.plot(np.arange(width, len(losses) + 1), smooth, color=f"C{i}", label=label)
        if len(run["eval_step"]):
            right.plot(run["eval_step"], run["eval_meta_loss"], "o-", color=f"C{i}", ms=3, label=label)
    left.set(xlabel="outer step", ylabel=f"meta-loss (mean of {window} steps)", title="training tasks")
    right.set(xlabel="outer step", ylabel="held-out meta-loss", title="held-out evaluation")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    return runs
