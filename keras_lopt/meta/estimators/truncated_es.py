"""Truncated antithetic ES (`truncated_es`).

Trajectories of `horizon` steps (`horizons.truncated_horizon`) are cut
into truncations of `truncation_length`; each estimate continues them for
one truncation with a fresh `z`, and `Z = z`. Cheap per step, but biased:
it ignores how theta shaped the state at the start of the truncation.
"""

import numpy as np

from keras_lopt.meta.estimators import horizons
from keras_lopt.meta.estimators.base import GradientEstimator

__all__ = ["TruncatedES"]


class TruncatedES(GradientEstimator):
    """`truncated_es`: one truncation of long trajectories per estimate."""

    kind = "truncated_es"

    def _draw_horizon(self, rng: np.random.Generator) -> int:
        return horizons.truncated_horizon(self.config, rng)
