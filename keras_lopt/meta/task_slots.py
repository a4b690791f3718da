"""The task slots of a meta-training run: which task each trains, and how.

Each outer step averages the estimates of `tasks_per_step` slots. A slot
trains one task with its own gradient estimator until the estimator's
trajectories finish (full ES: after every estimate), then draws a new task.
"""

from typing import Callable, Dict, Iterable, NamedTuple, Sequence, Tuple

import numpy as np

from keras_lopt.meta import checkpoint
from keras_lopt.meta.estimators import GradientEstimator

__all__ = ["TaskSlots"]

_IDENTITY = "identity"


class _Worker(NamedTuple):
    family_index: int
    task_index: int
    estimator: GradientEstimator


class TaskSlots:
    """`count` task slots, each with the estimator of the task it trains.

    Args:
        families: the `families.TaskFamily` objects tasks are drawn from.
        make_estimator: `tasks.Task -> GradientEstimator`.
        count: the number of slots (`MetaTrainConfig.tasks_per_step`).
    """

    def __init__(self, families: Sequence, make_estimator: Callable, count: int):
        self._families = families
        self._make_estimator = make_estimator
        self._workers = [None] * count

    def _worker(self, family_index, task_index):
        task = self._families[family_index].task(task_index)
        return _Worker(family_index, task_index, self._make_estimator(task))

    def estimator(self, i: int, rng: np.random.Generator) -> Tuple[str, GradientEstimator]:
        """Slot `i`'s `(family name, estimator)`, on a new task drawn with
        `rng` when the slot has none or its trajectories have finished."""
        worker = self._workers[i]
        if worker is None or worker.estimator.finished:
            family_index = int(rng.integers(len(self._families)))
            task_index, _ = self._families[family_index].sample(rng)
            worker = self._workers[i] = self._worker(family_index, task_index)
        return self._families[worker.family_index].name, worker.estimator

    def arrays(self, slots: Iterable[int]) -> Dict[str, np.ndarray]:
        """The checkpoint arrays of `slots`: each one's task and trajectories
        in flight, under `checkpoint.worker_prefix(i)`."""
        arrays = {}
        for i in slots:
            worker = self._workers[i]
            if worker is None or worker.estimator.state is None:
                continue
            prefix = checkpoint.worker_prefix(i)
            arrays[prefix + _IDENTITY] = np.asarray([worker.family_index, worker.task_index], np.int64)
            arrays.update({prefix + k: v for k, v in worker.estimator.state_arrays().items()})
        return arrays

    def restore(self, arrays: Dict[str, np.ndarray], slots: Iterable[int]) -> None:
        """Empties every slot, then gives `slots` the tasks and trajectories
        `arrays` (a checkpoint's) hold for them."""
        self._workers = [None] * len(self._workers)
        for i in slots:
            mine = checkpoint.under(arrays, checkpoint.worker_prefix(i))
            if _IDENTITY not in mine:
                continue
            worker = self._worker(*(int(v) for v in mine[_IDENTITY]))
            worker.estimator.restore_arrays(mine)
            self._workers[i] = worker
