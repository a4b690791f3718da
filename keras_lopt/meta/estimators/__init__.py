"""Evolution-strategies estimates of the meta-gradient, one module each.

    base.GradientEstimator      the interface: `estimate`, `restart`,
                                `finished`, checkpoint arrays
    full_es.FullES              `es`: whole trajectories per estimate
    truncated_es.TruncatedES    `truncated_es`: truncations, biased
    pes.PES                     `pes`: truncations, unbiased
    horizons                    how long each trajectory trains

`ESTIMATORS` maps `EstimatorConfig.kind` to the class; `make_estimator`
builds the one a config names.
"""

from typing import Dict, Type

from keras_lopt.meta.estimators.base import GradientEstimator, antithetic_gradient, perturbations
from keras_lopt.meta.estimators.full_es import FullES
from keras_lopt.meta.estimators.pes import PES
from keras_lopt.meta.estimators.truncated_es import TruncatedES

# `EstimatorConfig.kind` -> class, in the order error messages list them.
ESTIMATORS: Dict[str, Type[GradientEstimator]] = {cls.kind: cls for cls in (FullES, TruncatedES, PES)}


def make_estimator(task, unroll, config, init_pool_size=None) -> GradientEstimator:
    """The estimator `config.kind` names, on `task` (arguments as
    `GradientEstimator`)."""
    return ESTIMATORS[config.kind](task, unroll, config, init_pool_size=init_pool_size)


__all__ = [
    "ESTIMATORS",
    "FullES",
    "GradientEstimator",
    "PES",
    "TruncatedES",
    "antithetic_gradient",
    "make_estimator",
    "perturbations",
]
