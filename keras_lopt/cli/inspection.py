"""`keras-lopt plot` and `presets`: figures and the preset table."""

import os

from keras_lopt.cli.arguments import comma_separated

__all__ = ["plot", "presets"]


def plot(args):
    # Imported here: the other commands do not need matplotlib.
    from keras_lopt import plots

    directory = os.path.dirname(args.output)
    created = bool(directory) and not os.path.isdir(directory)
    if args.plot_command == "trajectories":
        if args.steps < 1:
            raise ValueError(f"`--steps` must be a positive integer. Received: {args.steps}")
        plots.plot_trajectories(
            args.output, comma_separated(args.problems), comma_separated(args.optimizers), args.steps
        )
    elif args.plot_command == "probes":
        plots.plot_probes(args.output, comma_separated(args.presets or "") or None, total_steps=args.total_steps)
    elif args.plot_command == "meta-training":
        labels = comma_separated(args.labels) if args.labels else None
        plots.plot_meta_training(comma_separated(args.runs), args.output, labels, args.window)
    else:
        plots.plot_benchmark_curves(
            args.results, args.output, comma_separated(args.optimizers or ""), comma_separated(args.tasks or "")
        )
    print(f"Wrote {args.output}" + (f" (created the directory {directory})" if created else ""))


def presets(args):
    del args
    from keras_lopt import presets

    print(presets.markdown_table())
