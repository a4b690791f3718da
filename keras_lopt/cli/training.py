"""`keras-lopt meta-train`, `export` and `local-cluster`: meta-training runs."""

import os
import sys

__all__ = ["export", "local_cluster", "meta_train"]


def meta_train(args):
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


def local_cluster(args):
    from keras_lopt.meta import local_cluster

    command = args.worker_command
    command = command[1:] if command[:1] == ["--"] else command
    sys.exit(local_cluster.run_local_cluster(args.workers, command))


def export(args):
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
