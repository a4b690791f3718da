"""TensorBoard scalars of a meta-training run (`<output_dir>/tensorboard`)."""

import os
from typing import Dict

import numpy as np
import tensorflow as tf

__all__ = ["Summaries"]


class Summaries:
    """Writes a run's scalars; only the chief of a distributed run writes.

    Args:
        output_dir: the run directory.
        is_chief: False gives a writer that writes nothing.
    """

    def __init__(self, output_dir: str, is_chief: bool):
        self._logdir = os.path.join(output_dir, "tensorboard")
        self._is_chief = is_chief
        self._writer = None

    def _file_writer(self):
        # Created on first use: a run that only exports writes no logs.
        if self._writer is None:
            self._writer = (
                tf.summary.create_file_writer(self._logdir) if self._is_chief else tf.summary.create_noop_writer()
            )
        return self._writer

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        """One scalar per name, at outer step `step`."""
        with self._file_writer().as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def inner_losses(self, step: int, family: str, losses: np.ndarray) -> None:
        """The first and last of a truncation's training losses `[M, K]`,
        averaged over the members, under the task family's name."""
        curve = np.mean(losses, axis=0)
        self.scalars(
            step,
            {f"inner_loss_first/{family}": float(curve[0]), f"inner_loss_last/{family}": float(curve[-1])},
        )

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
