"""The evaluation suites by name, and the task registry across them.

    selection  the 14 tasks (with a width and a length ladder) that choose checkpoints, recipes and presets
               (`selection_suite.py`); default seeds 0, 1
    test       the tasks that report a candidate and choose nothing
               (`test_suite.py`); default seeds 0, 1, 2

`QUICK_TASKS` is a CI-sized subset of the test suite.
"""

from keras_lopt.evaluation import selection_suite, test_suite

__all__ = ["SUITES", "SEEDS", "QUICK_TASKS", "QUICK_STEPS", "task_names", "get_task", "suite_of", "default_seeds"]

SUITES = {
    "selection": {task.name: task for task in selection_suite.TASKS},
    "test": {task.name: task for task in test_suite.TASKS},
}
SEEDS = {"selection": (0, 1), "test": (0, 1, 2)}
QUICK_TASKS = ("linear_scaled_features", "byte_mlp_lm_w64")
QUICK_STEPS = 100
_TASKS = {name: task for suite in SUITES.values() for name, task in suite.items()}
assert len(_TASKS) == sum(len(suite) for suite in SUITES.values()), "task names must be unique across suites"


def task_names(suite=None):
    """The task names of `suite`, or of every suite, in definition order."""
    if suite is None:
        return list(_TASKS)
    if suite not in SUITES:
        raise ValueError(f"Unknown suite {suite!r}. Valid: {', '.join(SUITES)}")
    return list(SUITES[suite])


def get_task(name):
    """The `EvalTask` called `name` (any suite)."""
    if name not in _TASKS:
        raise ValueError(f"Unknown evaluation task {name!r}. Valid names: {task_names()}")
    return _TASKS[name]


def suite_of(name):
    """The name of the suite that holds task `name`."""
    get_task(name)
    return next(suite for suite, tasks in SUITES.items() if name in tasks)


def default_seeds(names):
    """The seeds of the tasks' suite; the test suite's if they mix suites."""
    suites = {suite_of(name) for name in names}
    return SEEDS[suites.pop()] if len(suites) == 1 else SEEDS["test"]
