"""The step of a wide layer scaled down by its fan-in.

A preset with a `fan_in_base` (metadata.json's `output.fan_in_base`) takes
the step of each kernel with fan-in `n` times `min(1, fan_in_base / n)`: as
in the maximal-update parametrisation's Adam, a hidden weight's step shrinks
in proportion to its fan-in, so that the change of the layer's output per
step does not grow with its width. Kernels as narrow as `fan_in_base` or
narrower, biases, normalisation scales and embeddings keep the full step.
`LearnedOptimizer` and the meta-training unroll both compute the factor here.
"""

import math
from typing import Optional, Sequence

__all__ = ["fan_in", "step_scale"]


def fan_in(shape: Sequence[int], path: str = "") -> int:
    """The fan-in of a parameter of `shape`, or 1 for one without.

    A tensor of rank >= 2 is read as Keras lays out kernels (Dense
    `[inputs, units]`, Conv `[*window, in_channels, filters]`, recurrent
    `[units, gates * units]`): its fan-in is the product of all dimensions
    but the last. Vectors and scalars, and embedding tables (a `path`
    containing "embedding", as Keras names them), have none: an embedding
    row is read one at a time, not summed over its first dimension.

    Args:
        shape: the parameter's static shape.
        path: the variable's path or name, e.g. `"dense/kernel"`.
    """
    if len(shape) < 2 or "embedding" in path.lower():
        return 1
    return max(1, math.prod(int(d) for d in shape[:-1]))


def step_scale(fan_in_value: int, fan_in_base: Optional[float]) -> float:
    """`min(1, fan_in_base / fan_in_value)`; 1 for a preset without a base."""
    if fan_in_base is None:
        return 1.0
    return min(1.0, float(fan_in_base) / fan_in_value)
