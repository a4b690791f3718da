"""A meta-training run's meta-weights as a preset, with their provenance."""

import numpy as np

from keras_lopt import savedmodel
from keras_lopt.meta import unroll

__all__ = ["export_preset"]


def _best_eval_step(eval_history):
    scores = eval_history["meta_loss"]
    if not scores:
        return None
    return int(eval_history["step"][int(np.argmin(scores))])


def export_preset(trainer, path, use_best=True, name=None) -> savedmodel.LoadedPreset:
    """Writes `trainer`'s best (by held-out evaluation) or final meta-weights
    as a preset directory at `path` (see `MetaTrainer.export`).

    Reads the trainer's config, families, layer and shapes, meta-weights,
    histories and collective; sets `trainer.layer`'s weights to the ones
    exported.
    """
    c = trainer.config
    best = use_best and np.isfinite(trainer.best_eval)
    theta = trainer.best_theta if best else trainer.theta
    trainer.layer.set_weights([np.asarray(w) for w in unroll.unflatten_weights(theta, trainer.shapes)])
    meta_losses = trainer.history["meta_loss"]
    families = [family.name for family in trainer.families]
    provenance = {
        "method": "meta-trained",
        "meta_trained": True,
        "task_families": families,
        "estimator": c.to_dict()["estimator"],
        "objective": c.objective,
        "outer_steps": trainer.step,
        "seed": c.seed,
        "init_preset": c.init_preset,
        "wall_time_s": round(trainer.wall_time, 1),
        "replicas": trainer.collective.num_replicas,
        "final_meta_loss": meta_losses[-1] if meta_losses else None,
        "initial_eval_meta_loss": trainer.initial_eval,
        "best_eval_meta_loss": trainer.best_eval if np.isfinite(trainer.best_eval) else None,
        "best_eval_step": _best_eval_step(trainer.eval_history),
        "exported_weights": "best_eval" if best else "final",
        "config": c.to_dict(),
    }
    return savedmodel.export(
        trainer.layer,
        path,
        savedmodel.PresetInfo(
            name=c.name if name is None else name,
            learning_rate=c.inner_learning_rate,
            provenance=provenance,
            description=f"Meta-trained with {c.estimator.kind} on {', '.join(families)}.",
            feature_set=c.network.feature_set,
            fan_in_base=c.fan_in_base,
        ),
    )
