"""The optimizer of the meta-weights: Adam, in numpy.

The outer step is a few vector operations on `[D]` floats between
unrolls; numpy on the host keeps it exactly reproducible across processes
and resumes, with its state as plain arrays in the checkpoint.
"""

from typing import Dict

import numpy as np

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma and Ba, 2015) on float32 meta-weights `theta [D]`.

    Args:
        learning_rate: the step size (`MetaTrainConfig.outer_learning_rate`).
        size: `D`.
        beta_1, beta_2: decays of the first and second moments.
        epsilon: added to the root of the second moment.

    State: `m`, `v`, float32 `[D]` (`state_arrays`).
    """

    def __init__(
        self,
        learning_rate: float,
        size: int,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.m = np.zeros(size, np.float32)
        self.v = np.zeros(size, np.float32)

    def apply(self, theta: np.ndarray, grad: np.ndarray, step: int) -> np.ndarray:
        """`theta` after one step on `grad`; `step` updates came before it."""
        b1, b2 = self.beta_1, self.beta_2
        t = step + 1
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad * grad
        m_hat = self.m / (1 - b1**t)
        v_hat = self.v / (1 - b2**t)
        return (theta - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.epsilon)).astype(np.float32)

    def state_arrays(self) -> Dict[str, np.ndarray]:
        return {"m": self.m, "v": self.v}

    def restore_arrays(self, arrays: Dict[str, np.ndarray]) -> None:
        self.m = arrays["m"]
        self.v = arrays["v"]
