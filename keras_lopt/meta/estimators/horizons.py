"""How many inner steps a trajectory trains for (its horizon), drawn when it starts.

Full ES trains a trajectory to its end in one estimate: its horizon is one
of `es_horizons`, uniformly, or `truncation_length` when that is empty. The
truncated estimators cut trajectories into truncations of
`truncation_length` steps: horizons are log-uniform between `min_horizon`
and `max_horizon`, rounded to a whole number of truncations (at least one).
"""

import numpy as np

__all__ = ["full_unroll_horizon", "longest_unroll", "truncated_horizon"]


def full_unroll_horizon(config, rng: np.random.Generator) -> int:
    """A full-ES horizon for `config` (an `EstimatorConfig`)."""
    if config.es_horizons:
        return int(rng.choice(config.es_horizons))
    return config.truncation_length


def truncated_horizon(config, rng: np.random.Generator) -> int:
    """A truncated-ES or PES horizon for `config` (an `EstimatorConfig`)."""
    log_horizon = rng.uniform(np.log(config.min_horizon), np.log(config.max_horizon))
    truncations = max(1, int(round(np.exp(log_horizon) / config.truncation_length)))
    return truncations * config.truncation_length


def longest_unroll(config) -> int:
    """The most inner steps one estimate of `config` runs."""
    return max((config.truncation_length, *config.es_horizons))
