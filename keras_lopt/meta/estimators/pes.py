"""Persistent ES (`pes`, Vicol et al. 2021).

As truncated ES, but `Z` is the sum of all perturbations the trajectories
have seen since they started, which makes the estimate unbiased for the
whole-trajectory objective.
"""

from typing import Dict

import numpy as np

from keras_lopt.meta.estimators.truncated_es import TruncatedES

__all__ = ["PES"]

_ACCUMULATED_Z = "accumulated_z"


class PES(TruncatedES):
    """`pes`: truncated ES whose directions accumulate over a trajectory.

    `accumulated_z` is `[P, D]`, the sum of this trajectory's `z` so far
    (None before its first estimate).
    """

    kind = "pes"

    def __init__(self, task, unroll, config, init_pool_size=None):
        super().__init__(task, unroll, config, init_pool_size)
        self.accumulated_z = None

    def restart(self, rng: np.random.Generator) -> None:
        super().restart(rng)
        self.accumulated_z = None

    def _directions(self, z: np.ndarray) -> np.ndarray:
        self.accumulated_z = z if self.accumulated_z is None else self.accumulated_z + z
        return self.accumulated_z

    def state_arrays(self) -> Dict[str, np.ndarray]:
        arrays = super().state_arrays()
        if self.accumulated_z is not None:
            arrays[_ACCUMULATED_Z] = self.accumulated_z
        return arrays

    def restore_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        super().restore_arrays(arrays)
        self.accumulated_z = arrays.get(_ACCUMULATED_Z)
