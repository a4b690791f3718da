"""The `keras-lopt` command line: its arguments, parsed before anything heavy.

    keras-lopt [--version] COMMAND [--help] ...

This module imports neither TensorFlow nor `keras_lopt` (whose import starts
TensorFlow), so `--help`, `--version` and bad arguments answer at once. The
commands themselves are `keras_lopt.cli.COMMANDS`, imported once the
arguments are parsed. Bad input exits with status 2 and a one-line error,
before anything is written.
"""

import argparse
import importlib.metadata
import os
import sys

DISTRIBUTION = "keras-lopt"
# The Keras backends a `--backend` option accepts (those LearnedOptimizer runs on).
BACKENDS = ("tensorflow", "jax", "torch")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except a flag's (False) and where there
    is none (None): their help says what happens without them."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _version():
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_command(commands, name, help_text):
    return commands.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)


def _add_plot_parser(commands):
    plot = _add_command(commands, "plot", "draw PNGs of what a learned optimizer does")
    kinds = plot.add_subparsers(dest="plot_command", required=True)
    paths = _add_command(kinds, "trajectories", "paths on 2-D problems: learned vs Adam vs SGD")
    paths.add_argument(
        "--problems", default="product,rosenbrock", help="comma-separated: product, difference, rosenbrock"
    )
    paths.add_argument(
        "--optimizers",
        default="learned,adam,sgd",
        help="comma-separated specs (as for benchmark), e.g. learned[:PRESET][@LR], adam[@LR], sgd[@LR], rmsprop",
    )
    paths.add_argument("--steps", type=int, default=500, help="steps from each start")
    probes = _add_command(kinds, "probes", "the learned update vs gradient and vs progress, next to Adam's")
    probes.add_argument("--presets", help="comma-separated preset names or directories (default: the default preset)")
    probes.add_argument("--total-steps", type=int, default=10000, help="horizon of the progress sweep")
    curves = _add_command(kinds, "curves", "loss curves from a benchmark results file")
    curves.add_argument("--results", required=True, help="results.jsonl written by `keras-lopt benchmark`")
    curves.add_argument("--optimizers", help="comma-separated specs to show (default: all)")
    curves.add_argument("--tasks", help="comma-separated tasks to show (default: all)")
    meta = _add_command(kinds, "meta-training", "meta-loss and held-out meta-loss of meta-training runs")
    meta.add_argument("--runs", required=True, help="comma-separated meta-training output directories")
    meta.add_argument("--labels", help="comma-separated names, one per run (default: directory names)")
    meta.add_argument("--window", type=int, default=20, help="moving mean of the meta-loss, in outer steps")
    for parser in (paths, probes, curves, meta):
        parser.add_argument("--output", required=True, help="the PNG to write (a missing directory is created)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-lopt", description="Learned optimizers for Keras.", formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    meta = _add_command(commands, "meta-train", "meta-train a learned optimizer")
    meta.add_argument("--config", required=True, help="JSON file with a MetaTrainConfig")
    meta.add_argument("--output", help="run directory (default: runs/<name>)")
    meta.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    meta.add_argument("--export", help="preset directory to write (default: <output>/preset)")
    meta.add_argument("--no-progress", action="store_true", help="no progress bar")
    cluster = _add_command(
        commands, "local-cluster", "run a keras-lopt command as N tf.distribute workers on 127.0.0.1"
    )
    cluster.add_argument("--workers", type=int, default=2, help="number of worker processes")
    cluster.add_argument(
        "worker_command", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the keras-lopt command each worker runs"
    )
    export = _add_command(commands, "export", "export a meta-training checkpoint as a preset")
    export.add_argument("--config", required=True, help="the run's config file")
    export.add_argument("--run", dest="run_dir", required=True, help="the run directory (holds checkpoint.npz)")
    export.add_argument("--output", required=True, help="preset directory to write")
    export.add_argument("--final", action="store_true", help="export the latest weights, not the best evaluated")
    export.add_argument("--name", help="the preset's name (default: the config's name)")
    bench = _add_command(
        commands, "benchmark", "the evaluation protocol: learned optimizers against Adam tuned per metric"
    )
    bench.add_argument(
        "--suite",
        choices=("selection", "test"),
        help="selection: tasks that choose presets; test: tasks that report them",
    )
    bench.add_argument("--tasks", help="comma-separated evaluation tasks (instead of --suite)")
    bench.add_argument(
        "--optimizers",
        default="learned,learned+horizon",
        help="comma-separated optimizer specs (see keras_lopt.evaluation.specs); Adam at the 7 rates of "
        "the grid always runs too, once per results file",
    )
    bench.add_argument("--steps", type=int, help="training steps of every run (default: each task's own; --quick: 100)")
    bench.add_argument("--seeds", help="comma-separated seeds (default: test 0,1,2; selection 0,1; --quick: 0)")
    bench.add_argument(
        "--output",
        default="benchmark_results",
        help="directory for results.jsonl, summary.json, table.md, curves.png",
    )
    bench.add_argument("--quick", action="store_true", help="2 tiny test-suite tasks, 100 steps, seed 0 (for CI)")
    bench.add_argument("--yes", action="store_true", help="run the default plan (the test suite) without --suite")
    bench.add_argument(
        "--report-only", action="store_true", help="train nothing: report the planned runs already in --output"
    )
    bench.add_argument(
        "--backend",
        choices=BACKENDS,
        help="Keras backend of the runs (default: $KERAS_BACKEND, else tensorflow); one results file holds one "
        "backend's runs",
    )
    tune = _add_command(
        commands, "tune-benchmark", "classic optimizers and KerasTuner searches against a learned optimizer"
    )
    tune.add_argument("--tasks", help="comma-separated evaluation tasks (default: the selection suite)")
    tune.add_argument("--optimizers", default="learned,classic", help="optimizer specs run at fixed settings")
    tune.add_argument(
        "--searches", default="adam_grid,adamw_bayes", help="KerasTuner searches (see keras_lopt.evaluation.tuning)"
    )
    tune.add_argument("--budget", default="1,3,10,30", help="comma-separated trial budgets")
    tune.add_argument(
        "--reference",
        default="learned",
        help="comma-separated specs the searches must match (plots of the first: trials_to_match*.png)",
    )
    tune.add_argument("--steps", type=int, help="training steps per run and per trial (default: each task's own)")
    tune.add_argument("--seed", type=int, default=0, help="initialisation and batch-order seed")
    tune.add_argument(
        "--output",
        default="benchmark_results/tuning",
        help="directory for results.jsonl, trials.jsonl, tuners/, summary.json, table.md and plots",
    )
    tune.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the tables and plots from the runs and trials already in --output",
    )
    _add_command(commands, "presets", "the shipped presets: status, architecture, features, step cost")
    _add_plot_parser(commands)
    return parser


def _use_backend(backend):
    """Sets `KERAS_BACKEND` before Keras is imported; an error string if
    Keras is already imported with another backend (None otherwise)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and keras.backend.backend() != backend:
        return (
            f"`--backend {backend}`: Keras is already imported in this process with the "
            f"{keras.backend.backend()!r} backend; run the command in a new process."
        )
    os.environ["KERAS_BACKEND"] = backend
    return None


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "backend", None):
        error = _use_backend(args.backend)
        if error:
            print(f"keras-lopt {args.command}: error: {error}", file=sys.stderr)
            return 2
    try:
        from keras_lopt import cli
    except ImportError as e:
        print(f"keras-lopt {args.command}: error: {e}", file=sys.stderr)
        return 2
    try:
        cli.COMMANDS[args.command](args)
    except ValueError as e:
        print(f"keras-lopt {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
