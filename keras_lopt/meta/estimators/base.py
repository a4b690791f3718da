"""The interface of the gradient estimators, and what they share.

Every estimator uses antithetic pairs: pair p trains with meta-weights
`theta + sigma * z_p` (member p) and `theta - sigma * z_p` (member P + p) on
the same task, initialisation and batches, and

    grad ~= mean_p (L+_p - L-_p) / (2 sigma) * Z_p

where the directions `Z` are the estimator's (`GradientEstimator._directions`).
"""

from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from keras_lopt import rule
from keras_lopt.meta import unroll as unroll_lib
from keras_lopt.meta.estimators import horizons

__all__ = ["GradientEstimator", "antithetic_gradient", "perturbations"]

# Keeps normalised differences finite when every pair scored the same.
_NORMALIZE_EPSILON = 1e-12
# Checkpoint arrays of the trajectories in flight start with this.
_TRAJECTORIES = "trajectories/"


class GradientEstimator:
    """Antithetic pairs of trajectories on one task, and their estimates.

    A subclass sets `kind` (its `EstimatorConfig.kind`) and draws horizons
    (`_draw_horizon`); it may run other lengths per estimate
    (`_steps_per_estimate`), weight other directions (`_directions`) and
    keep more state in checkpoints (`state_arrays`, `restore_arrays`).

    Args:
        task: the `tasks.Task` being trained.
        unroll: the task's `unroll.Unroll`, of at least
            `horizons.longest_unroll(config)` steps.
        config: `EstimatorConfig`.
        init_pool_size: how new trajectories get their initial parameters
            (`MetaTrainConfig.init_pool_size`).
    """

    kind: str

    def __init__(self, task, unroll, config, init_pool_size=None):
        longest = horizons.longest_unroll(config)
        if unroll.max_steps < longest:
            raise ValueError(
                f"The unroll runs at most {unroll.max_steps} steps, but this estimator "
                f"runs up to {longest} (`truncation_length`, `es_horizons`)."
            )
        self.task = task
        self.unroll = unroll
        self.config = config
        self.init_pool_size = init_pool_size
        self.horizon = None
        self.state = None

    @property
    def finished(self) -> bool:
        """Whether the trajectories have ended (or not started): the next
        estimate starts new ones, and a trainer may draw a new task."""
        if self.state is None:
            return True
        return int(self.state.step[0]) >= int(self.state.total_steps[0])

    def _draw_horizon(self, rng: np.random.Generator) -> int:
        raise NotImplementedError

    def _steps_per_estimate(self) -> int:
        """Inner steps each estimate runs."""
        return self.config.truncation_length

    def _directions(self, z: np.ndarray) -> np.ndarray:
        """`Z [P, D]`, the directions this estimate's differences weight."""
        return z

    def restart(self, rng: np.random.Generator) -> None:
        """Starts new trajectories: new seeds, a new horizon."""
        c = self.config
        horizon = self._draw_horizon(rng)
        pair_seeds = rng.integers(0, 2**31 - 1, size=c.num_pairs)
        visible = (rng.uniform(size=c.num_pairs) < c.horizon_visible_fraction).astype(np.float32)
        self.state = unroll_lib.fresh_state(
            self.task,
            np.concatenate([pair_seeds, pair_seeds]),
            np.full(2 * c.num_pairs, horizon),
            np.concatenate([visible, visible]),
            network=self.unroll.layer,
            init_pool_size=self.init_pool_size,
        )
        self.horizon = horizon

    def estimate(
        self, theta: np.ndarray, z: np.ndarray, rng: np.random.Generator
    ) -> Tuple[np.ndarray, float, np.ndarray]:
        """One gradient estimate.

        Args:
            theta: `[D]` float32 meta-weights.
            z: `[P, D]` standard normal perturbation directions.
            rng: numpy Generator, used when trajectories restart.

        Returns:
            `(grad [D], mean_meta_loss, losses [2P, K])` as numpy arrays;
            `mean_meta_loss` is the mean of the antithetic members' losses.
        """
        if self.finished:
            self.restart(rng)
        sigma = self.config.sigma
        z = np.asarray(z, np.float32)
        thetas = np.concatenate([theta + sigma * z, theta - sigma * z])
        self.state, meta, losses = self.unroll(thetas, self.state, num_steps=self._steps_per_estimate())
        meta = meta.numpy().astype(np.float64)
        grad = antithetic_gradient(meta, self._directions(z), sigma, self.config.normalize_differences)
        return grad.astype(np.float32), float(np.mean(meta)), losses.numpy()

    @property
    def _slot_names(self):
        return rule.state_slot_names(self.unroll.layer)

    def state_arrays(self) -> Dict[str, np.ndarray]:
        """The trajectories in flight as named arrays (empty if none)."""
        if self.state is None:
            return {}
        return {_TRAJECTORIES + k: v for k, v in self.state.to_arrays(self._slot_names).items()}

    def restore_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        """Continues the trajectories `state_arrays` returned."""
        trajectories = {k[len(_TRAJECTORIES) :]: v for k, v in arrays.items() if k.startswith(_TRAJECTORIES)}
        self.state = unroll_lib.InnerState.from_arrays(trajectories, self._slot_names)
        self.horizon = int(self.state.total_steps[0])


def antithetic_gradient(meta: np.ndarray, directions: np.ndarray, sigma: float, normalize: bool) -> np.ndarray:
    """`mean_p d_p * directions_p`, `d_p = (L+_p - L-_p) / (2 sigma)`.

    Args:
        meta: `[2P]` float64 meta-losses, the P members with `+sigma` first.
        directions: `[P, D]`.
        sigma: the perturbation scale.
        normalize: divide `d` by its root mean square over the pairs
            (`EstimatorConfig.normalize_differences`).

    Returns:
        `[D]` float64.
    """
    p = directions.shape[0]
    diff = (meta[:p] - meta[p:]) / (2.0 * sigma)
    if normalize:
        diff = diff / (np.sqrt(np.mean(diff * diff)) + _NORMALIZE_EPSILON)
    return np.mean(diff[:, None] * directions, axis=0)


def perturbations(seed: int, step: int, num_pairs: int, dim: int) -> np.ndarray:
    """Deterministic standard normal directions `[num_pairs, dim]`."""
    return tf.random.stateless_normal([num_pairs, dim], seed=[seed, step]).numpy()
