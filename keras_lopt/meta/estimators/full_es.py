"""Full-unroll antithetic ES (`es`).

Every estimate starts new trajectories and trains them to the end of their
horizon (`horizons.full_unroll_horizon`), with `Z = z`: unbiased for the
horizons drawn, at the cost of a whole unroll per estimate.
"""

import numpy as np

from keras_lopt.meta.estimators import horizons
from keras_lopt.meta.estimators.base import GradientEstimator

__all__ = ["FullES"]


class FullES(GradientEstimator):
    """`es`: whole trajectories, new ones in every estimate."""

    kind = "es"

    @property
    def finished(self) -> bool:
        # Each estimate trains its trajectories to their horizon.
        return True

    def _draw_horizon(self, rng: np.random.Generator) -> int:
        return horizons.full_unroll_horizon(self.config, rng)

    def _steps_per_estimate(self) -> int:
        return self.horizon
