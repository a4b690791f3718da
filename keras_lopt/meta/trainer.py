"""MetaTrainer: the outer loop that meta-trains a learned optimizer.

Each outer step asks `tasks_per_step` gradient estimators (`estimators`)
for estimates, averages and clips them, and takes an outer optimizer step
(`outer_optimizer.Adam`) on the flat meta-weights. Every random choice is
derived from `(config.seed, outer step, task slot)`, and a checkpoint
(`checkpoint`) holds everything else (meta-weights, Adam moments, the inner
trajectories in flight), so a run killed at any point resumes bit-exactly
from its last checkpoint.

With a `distributed.StrategyCollective`, the task slots (and the held-out
evaluation runs) are shared among the strategy's replicas and summed
exactly, so any number of workers takes the same outer steps as one
process; only the chief writes files.

Output directory layout:

    config.json          the run's config
    checkpoint.npz       latest checkpoint (written atomically)
    tensorboard/         scalars: meta_loss, grad_norm, inner losses, eval
    preset/              the exported preset (after `export`)
"""

import json
import os
import time
from typing import Optional, Tuple

import keras
import numpy as np

from keras_lopt import features, rule, savedmodel
from keras_lopt.meta import checkpoint, distributed, estimators, unroll
from keras_lopt.meta import families as family_lib
from keras_lopt.meta.estimators import horizons
from keras_lopt.meta.export import export_preset
from keras_lopt.meta.networks import build_network, initial_theta, trainable_mask
from keras_lopt.meta.outer_optimizer import Adam
from keras_lopt.meta.summaries import Summaries
from keras_lopt.meta.task_slots import TaskSlots

__all__ = ["CHECKPOINT_FILE", "CONFIG_FILE", "MetaTrainer"]

CHECKPOINT_FILE = "checkpoint.npz"
CONFIG_FILE = "config.json"
# Seeds of held-out evaluation trajectories start here; training draws
# trajectory seeds below 2**31 - 1 from its own stream, so a collision is
# possible but has no systematic effect.
_EVAL_SEED_BASE = 2**31 - 1000


def _families(config, families):
    """The TaskFamily objects a trainer samples from (see `MetaTrainer`)."""
    if families is None:
        return [family_lib.get_family(name) for name in config.task_families]
    families = list(families)
    if not families or not all(isinstance(f, family_lib.TaskFamily) for f in families):
        raise ValueError(
            "`families` must be a non-empty list of `keras_lopt.meta.families.TaskFamily` "
            f"objects. Received: families={families!r}"
        )
    return families


class MetaTrainer:
    """Meta-trains a learned optimizer (any architecture of `layers`).

    Args:
        config: `MetaTrainConfig`.
        output_dir: where checkpoints, TensorBoard logs and the preset go.
        collective: a `distributed.StrategyCollective` to share the work
            among tf.distribute replicas; default: this process alone.
        families: `families.TaskFamily` objects to meta-train on instead of
            the built-in families that `config.task_families` names (which
            is then ignored), e.g. a family of your own Keras tasks built
            with `tasks.keras_task`. Their names go into the preset's
            provenance. Resume a run with the same families.
    """

    def __init__(self, config, output_dir, collective=None, families=None):
        self.config = config
        self.collective = collective or distributed.Collective()
        self.output_dir = os.fspath(output_dir)
        self.layer = build_network(config)
        self.shapes = unroll.weight_shapes(self.layer)
        self.families = _families(config, families)
        self._unrolls = {}
        self._summaries = Summaries(self.output_dir, self.collective.is_chief)
        # Zero over `config.frozen_weights`: their directions are zero, so
        # their gradient estimates, Adam moments and updates are exactly 0.
        self.trainable = trainable_mask(self.layer, config.frozen_weights)
        theta = initial_theta(config, self.layer)
        self.theta = theta
        self.outer_optimizer = Adam(config.outer_learning_rate, theta.size)
        self.step = 0
        self.wall_time = 0.0
        self.history = {"meta_loss": [], "grad_norm": []}
        self.eval_history = {"step": [], "meta_loss": []}
        self.best_theta = theta.copy()
        self.best_eval = np.inf
        self.initial_eval = None
        self.slots = TaskSlots(
            self.families,
            lambda task: estimators.make_estimator(
                task,
                self._unroll(task, config.objective),
                config.estimator,
                init_pool_size=config.init_pool_size,
            ),
            config.tasks_per_step,
        )

    # -- set-up ---------------------------------------------------------------

    def _unroll(self, task, objective) -> unroll.Unroll:
        # One compiled program per (structure, objective) serves every
        # length (see `unroll.Unroll`): compile time and memory grow with
        # the number of task structures, not structures x lengths.
        key = (task.structure, objective)
        if key not in self._unrolls:
            self._unrolls[key] = unroll.Unroll(
                task,
                self.layer,
                max(horizons.longest_unroll(self.config.estimator), self.config.eval_horizon),
                objective,
                self.config.inner_learning_rate,
                min_loss_ratio=self.config.min_loss_ratio,
                loss_visible_fraction=self.config.estimator.loss_visible_fraction,
                feature_names=features.feature_names(self.config.network.feature_set),
                parameter_scale_range=self.config.parameter_scale_range,
                fan_in_base=self.config.fan_in_base,
            )
        return self._unrolls[key]

    # -- training -------------------------------------------------------------

    def _estimate(self, i):
        """Task slot `i`'s `[D + 1]` row: its gradient estimate and meta-loss."""
        c = self.config
        rng = np.random.default_rng([c.seed, self.step, i])
        family, estimator = self.slots.estimator(i, rng)
        z = estimators.perturbations(c.seed, self.step * c.tasks_per_step + i, c.estimator.num_pairs, self.theta.size)
        z = z * self.trainable
        grad, meta, losses = estimator.estimate(self.theta, z, rng)
        self._summaries.inner_losses(self.step, family, losses)
        return np.concatenate([grad.astype(np.float64), [meta]])

    def train_step(self) -> Tuple[float, float]:
        """One outer step. Returns `(meta_loss, grad_norm)`."""
        start = time.perf_counter()
        c = self.config
        table = distributed.sharded(self.collective, c.tasks_per_step, self.theta.size + 1, self._estimate)
        grads, metas = table[:, :-1].astype(np.float32), table[:, -1]
        grad = np.mean(grads, axis=0)
        grad_norm = float(np.linalg.norm(grad))
        if not np.isfinite(grad_norm):
            raise FloatingPointError(
                f"Non-finite meta-gradient estimate at outer step {self.step}; the last checkpoint is intact."
            )
        if grad_norm > c.max_grad_norm:
            grad = grad * (c.max_grad_norm / grad_norm)
        self.theta = self.outer_optimizer.apply(self.theta, grad, self.step)
        meta_loss = float(np.mean(metas))
        self.history["meta_loss"].append(meta_loss)
        self.history["grad_norm"].append(grad_norm)
        self.step += 1
        self.wall_time += time.perf_counter() - start
        self._summaries.scalars(self.step, {"meta_loss": meta_loss, "grad_norm": grad_norm})
        return meta_loss, grad_norm

    def evaluate(self, theta=None) -> float:
        """Mean meta-loss of `theta` on held-out seeds of every family.

        Each family contributes `eval_tasks` runs of `eval_horizon` steps
        (variant `i % len(family)`), each of `eval_members` trajectories
        (seeds from `_EVAL_SEED_BASE + i * eval_members`), scored with the
        run's objective ("mean" for "validation" runs; "validation_tail"
        runs score validation batches, "joint_tail" runs both) and unperturbed
        meta-weights.
        """
        theta = self.theta if theta is None else theta
        c = self.config
        objective = "mean" if c.objective == "validation" else c.objective
        runs = [(family, i) for family in self.families for i in range(c.eval_tasks)]
        members = c.eval_members

        def score(k):
            family, i = runs[k]
            task = family.task(i % len(family))
            run = self._unroll(task, objective)
            seeds = _EVAL_SEED_BASE + i * members + np.arange(members)
            state = unroll.fresh_state(
                task,
                seeds,
                [c.eval_horizon] * members,
                network=self.layer,
                init_pool_size=c.init_pool_size,
            )
            _, meta, _ = run(np.tile(theta[None, :], (members, 1)), state, num_steps=c.eval_horizon)
            return [float(np.mean(meta.numpy().astype(np.float64)))]

        return float(np.mean(distributed.sharded(self.collective, len(runs), 1, score)))

    def train(self, progress=True) -> None:
        """Runs until `config.outer_steps`, checkpointing and evaluating.

        With `progress=False` (background runs) a line is printed at each
        checkpoint instead of the progress bar.
        """
        c = self.config
        chief = self.collective.is_chief
        if chief:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, CONFIG_FILE), "w") as f:
                json.dump(c.to_dict(), f, indent=2)
        progress = progress and chief
        if self.initial_eval is None and c.eval_every:
            self.initial_eval = self.evaluate()
            self._record_eval(self.initial_eval, self.theta)
        bar = keras.utils.Progbar(c.outer_steps, stateful_metrics=["meta_loss", "eval"]) if progress else None
        if bar is not None:
            bar.update(self.step)
        while self.step < c.outer_steps:
            meta_loss, grad_norm = self.train_step()
            values = [("meta_loss", meta_loss), ("grad_norm", grad_norm)]
            if c.eval_every and self.step % c.eval_every == 0:
                score = self.evaluate()
                self._record_eval(score, self.theta)
                values.append(("eval", score))
            if self.step % c.checkpoint_every == 0 or self.step == c.outer_steps:
                self.save_checkpoint()
                if bar is None and chief:
                    print(
                        f"step {self.step}: "
                        + ", ".join(f"{name} {value:.4g}" for name, value in values)
                        + f", {self.wall_time:.1f}s",
                        flush=True,
                    )
            if bar is not None:
                bar.update(self.step, values=values)
        self._summaries.flush()

    def _record_eval(self, score, theta):
        self.eval_history["step"].append(self.step)
        self.eval_history["meta_loss"].append(score)
        if score < self.best_eval:
            self.best_eval = score
            self.best_theta = theta.copy()
        self._summaries.scalars(self.step, {"eval/meta_loss": score})

    # -- checkpoints ----------------------------------------------------------

    def _owned_slots(self):
        return distributed.owned(self.collective, self.config.tasks_per_step)

    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.output_dir, CHECKPOINT_FILE)

    def save_checkpoint(self) -> None:
        """Writes `checkpoint.npz` (`checkpoint.save`). Every worker of a
        distributed run must call it."""
        arrays = {
            "theta": self.theta,
            "step": np.int64(self.step),
            "wall_time": np.float64(self.wall_time),
            "best_theta": self.best_theta,
            "best_eval": np.float64(self.best_eval),
            "initial_eval": np.float64(np.nan if self.initial_eval is None else self.initial_eval),
            "meta_loss": np.asarray(self.history["meta_loss"], np.float64),
            "grad_norm": np.asarray(self.history["grad_norm"], np.float64),
            "eval_step": np.asarray(self.eval_history["step"], np.int64),
            "eval_meta_loss": np.asarray(self.eval_history["meta_loss"], np.float64),
            "config_json": np.asarray(json.dumps(self.config.to_dict())),
            **{checkpoint.OUTER_OPTIMIZER + k: v for k, v in self.outer_optimizer.state_arrays().items()},
        }
        checkpoint.save(self.checkpoint_path, arrays, self.slots.arrays(self._owned_slots()), self.collective)

    def restore(self) -> bool:
        """Loads the latest checkpoint. Returns False if there is none."""
        data = checkpoint.load(self.checkpoint_path, self.collective, rule.state_slot_names(self.layer))
        if data is None:
            return False
        saved = json.loads(str(data["config_json"]))
        differences = self.config.run_differences(saved)
        if differences:
            raise ValueError(
                f"The checkpoint in {self.output_dir!r} was written with a "
                f"different config (fields {differences} differ); resume with the "
                "same config (only outer_steps may be raised) or use a new output "
                f"directory. Checkpoint config: {saved}"
            )
        self.theta = data["theta"]
        self.outer_optimizer.restore_arrays(checkpoint.under(data, checkpoint.OUTER_OPTIMIZER))
        self.step = int(data["step"])
        self.wall_time = float(data["wall_time"])
        self.best_theta = data["best_theta"]
        self.best_eval = float(data["best_eval"])
        initial = float(data["initial_eval"])
        self.initial_eval = None if np.isnan(initial) else initial
        self.history = {"meta_loss": list(data["meta_loss"]), "grad_norm": list(data["grad_norm"])}
        self.eval_history = {
            "step": [int(s) for s in data["eval_step"]],
            "meta_loss": list(data["eval_meta_loss"]),
        }
        self.slots.restore(data, self._owned_slots())
        return True

    # -- export ---------------------------------------------------------------

    def export(self, path=None, use_best=True, name=None) -> Optional[savedmodel.LoadedPreset]:
        """Exports the best (by held-out evaluation) or the final meta-weights.

        `path` defaults to `<output_dir>/preset`; `name` is the preset's
        name (default: the config's), e.g. a new version of a run that was
        extended. Returns the `LoadedPreset`; None on workers other than the
        chief, which write nothing.
        """
        if not self.collective.is_chief:
            return None
        return export_preset(self, path or os.path.join(self.output_dir, "preset"), use_best, name)
