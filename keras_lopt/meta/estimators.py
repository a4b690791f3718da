"""Evolution-strategies gradient estimates of the meta-loss.

All three estimators use antithetic pairs: pair p trains with meta-weights
`theta + sigma * z_p` (member p) and `theta - sigma * z_p` (member P + p) on
the same task, initialisation and batches, and

    grad ~= mean_p (L+_p - L-_p) / (2 sigma) * Z_p

* `es`: full unrolls. Every estimate starts new trajectories and trains them
  for `truncation_length` steps, or for a length drawn from `es_horizons`;
  `Z = z`.
* `truncated_es`: trajectories of `horizon` steps are cut into truncations of
  `truncation_length`; each estimate continues them with a fresh `z`, and
  `Z = z`. Cheap per step, but biased: it ignores how theta shaped the state
  at the start of the truncation.
* `pes` (persistent ES, Vicol et al. 2021): as truncated ES, but `Z` is the
  sum of all perturbations the trajectory has seen since it started, which
  makes the estimate unbiased for the whole-trajectory objective.

Horizons are drawn log-uniformly between `min_horizon` and `max_horizon`
(rounded to whole truncations) when a trajectory starts.
"""

import numpy as np
import tensorflow as tf

from keras_lopt.meta import unroll as unroll_lib
from keras_lopt.meta.config import ESTIMATORS, EstimatorConfig

__all__ = ["ESTIMATORS", "EstimatorConfig", "TaskWorker", "perturbations"]

# Keeps normalised differences finite when every pair scored the same.
_NORMALIZE_EPSILON = 1e-12


class TaskWorker:
    """Antithetic pairs of trajectories on one task, and their estimates.

    Args:
        task: the Task being trained.
        unroll: compiled unroll for this task (`unroll.build_unroll`) of
            `config.truncation_length` steps.
        config: EstimatorConfig.
        unroll_for: `num_steps -> unroll` for the lengths in
            `config.es_horizons`; required when that is not empty.
        init_pool_size: how new trajectories get their initial parameters
            (`MetaTrainConfig.init_pool_size`).
    """

    def __init__(self, task, unroll, config, unroll_for=None, init_pool_size=None):
        if config.es_horizons and unroll_for is None:
            raise ValueError("`unroll_for` is required when `es_horizons` is set.")
        self.task = task
        self.unroll = unroll
        self.unroll_for = unroll_for
        self.config = config
        self.init_pool_size = init_pool_size
        self.horizon = None
        self.state = None
        self.accumulated_z = None

    @property
    def finished(self):
        if self.state is None:
            return True
        return int(self.state.step[0]) >= int(self.state.total_steps[0])

    def restart(self, rng):
        """Starts new trajectories: new seeds, a new horizon, Z = 0."""
        c = self.config
        if c.kind == "es":
            horizon = (
                int(rng.choice(c.es_horizons)) if c.es_horizons else c.truncation_length
            )
        else:
            log_h = rng.uniform(np.log(c.min_horizon), np.log(c.max_horizon))
            horizon = max(1, int(round(np.exp(log_h) / c.truncation_length))) * c.truncation_length
        pair_seeds = rng.integers(0, 2**31 - 1, size=c.num_pairs)
        visible = (rng.uniform(size=c.num_pairs) < c.horizon_visible_fraction).astype(np.float32)
        self.state = unroll_lib.fresh_state(
            self.task,
            np.concatenate([pair_seeds, pair_seeds]),
            np.full(2 * c.num_pairs, horizon),
            np.concatenate([visible, visible]),
            network=getattr(self.unroll, "layer", None),
            init_pool_size=self.init_pool_size,
        )
        self.accumulated_z = None
        self.horizon = horizon

    def estimate(self, theta, z, rng):
        """One gradient estimate.

        Args:
            theta: `[D]` float32 meta-weights.
            z: `[P, D]` standard normal perturbation directions.
            rng: numpy Generator, used when trajectories restart.

        Returns:
            `(grad [D], mean_meta_loss, losses [2P, K])` as numpy arrays;
            `mean_meta_loss` is the mean of the antithetic members' losses.
        """
        if self.config.kind == "es" or self.finished:
            self.restart(rng)
        sigma = self.config.sigma
        z = np.asarray(z, np.float32)
        thetas = np.concatenate([theta + sigma * z, theta - sigma * z])
        run = self.unroll
        if self.config.kind == "es" and self.horizon != self.config.truncation_length:
            run = self.unroll_for(self.horizon)
        self.state, meta, losses = run(thetas, self.state)
        if self.config.kind == "pes":
            self.accumulated_z = z if self.accumulated_z is None else self.accumulated_z + z
            directions = self.accumulated_z
        else:
            directions = z
        meta = meta.numpy().astype(np.float64)
        p = self.config.num_pairs
        diff = (meta[:p] - meta[p:]) / (2.0 * sigma)
        if self.config.normalize_differences:
            diff = diff / (np.sqrt(np.mean(diff * diff)) + _NORMALIZE_EPSILON)
        grad = np.mean(diff[:, None] * directions, axis=0)
        return grad.astype(np.float32), float(np.mean(meta)), losses.numpy()


def perturbations(seed, step, num_pairs, dim):
    """Deterministic standard normal directions `[num_pairs, dim]`."""
    return tf.random.stateless_normal([num_pairs, dim], seed=[seed, step]).numpy()
