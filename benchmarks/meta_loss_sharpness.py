"""How sharp the held-out meta-loss is around a run's starting meta-weights.

Evaluates `MetaTrainer.evaluate` (the run's held-out evaluation: its
families, `eval_tasks`, `eval_horizon`, `eval_members`) at the config's
initial meta-weights and at Gaussian perturbations of them, of all weights
or of one group (for adaptive_mlp: the direction MLP or the step-size
controller). ES estimates the gradient of the objective smoothed at its
`sigma`; if one perturbation of that size already loses most of the
meta-loss, the smoothed objective's optimum is far from the start.

    python benchmarks/meta_loss_sharpness.py --config configs/adaptive_es_v3.json \
        --sigmas 0.02,0.002 --groups all,direction,controller
"""

import argparse
import json
import tempfile
import time

import numpy as np

from keras_lopt.meta.config import MetaTrainConfig
from keras_lopt.meta.networks import trainable_mask
from keras_lopt.meta.trainer import MetaTrainer


def _group_masks(layer, size):
    """`{group: [D] bool}`: all weights, and for adaptive_mlp the direction
    MLP and the step-size controller (its `controller_*` weights)."""
    masks = {"all": np.ones(size, bool)}
    controller = [name for name in layer.weight_names() if name.startswith("controller_")]
    if controller:
        masks["controller"] = trainable_mask(layer, controller) == 0.0
        masks["direction"] = ~masks["controller"]
    return masks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--sigmas", default="0.02,0.002")
    parser.add_argument("--groups", default="all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.config) as f:
        config = MetaTrainConfig.from_dict(json.load(f))
    trainer = MetaTrainer(config, tempfile.mkdtemp())
    theta0 = trainer.theta.copy()
    masks = _group_masks(trainer.layer, theta0.size)
    groups = args.groups.split(",")
    for group in groups:
        if group not in masks:
            raise ValueError(f"Unknown group {group!r} for this network. Valid: {sorted(masks)}")
    rng = np.random.default_rng(args.seed)
    cases = [("start", "all", 0.0)] + [
        (f"{group}, sigma {sigma:g}", group, sigma) for sigma in map(float, args.sigmas.split(",")) for group in groups
    ]
    print(f"meta-weights: {theta0.size} ({', '.join(f'{k} {int(v.sum())}' for k, v in masks.items())})")
    for label, group, sigma in cases:
        theta = theta0.copy()
        part = masks[group]
        theta[part] += (sigma * rng.standard_normal(int(part.sum()))).astype(np.float32)
        start = time.perf_counter()
        loss = trainer.evaluate(theta)
        print(f"{label}: held-out meta-loss {loss:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
