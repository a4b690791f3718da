"""The `keras-lopt` command line (also `python -m keras_lopt.meta`).

    keras-lopt meta-train --config FILE [--output DIR] [--resume] [--export DIR]

Bad input exits with status 2 and a one-line error, before anything is written.
"""

import argparse
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

    from keras_lopt.meta.trainer import MetaTrainer

    trainer = MetaTrainer(config, output)
    if args.resume and trainer.restore():
        print(f"Resumed from {trainer.checkpoint_path} at outer step {trainer.step}.")
    trainer.train(progress=not args.no_progress)
    preset = trainer.export(args.export)
    print(
        f"Outer steps: {trainer.step}. Held-out meta-loss: initial "
        f"{trainer.initial_eval}, best {trainer.best_eval}. Preset: {preset.path}"
    )


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-lopt", description="Learned optimizers for Keras.")
    commands = parser.add_subparsers(dest="command", required=True)
    meta = commands.add_parser("meta-train", help="meta-train a learned optimizer")
    meta.add_argument("--config", required=True, help="JSON file with a MetaTrainConfig")
    meta.add_argument("--output", help="run directory (default: runs/<name>)")
    meta.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    meta.add_argument("--export", help="preset directory to write (default: <output>/preset)")
    meta.add_argument("--no-progress", action="store_true", help="no progress bar")
    meta.set_defaults(run=_meta_train)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ValueError as e:
        print(f"keras-lopt {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
