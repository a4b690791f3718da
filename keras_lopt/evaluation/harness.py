"""Benchmark runs: train an evaluation task with an optimizer, as a user does.

Every run builds the task's model under `keras.utils.set_random_seed(seed)`,
compiles it with the optimizer (`jit_compile=True`: XLA, also on CPU) and
trains it with `model.fit` on a batch order fixed by the seed, so every
optimizer starts from the same weights and sees the same batches. The
optimizer is given no horizon; a `+horizon` spec adds the
`keras_lopt.TrainingHorizon()` callback (`specs.py`). After training, the
final loss on the whole training set and on the validation set is computed
in inference mode (`training=False`). Runs use the Keras backend of the
process (`KERAS_BACKEND`) and record it; one results file holds one
backend's runs.

The run is split into `fit` epochs of equal length (at most
`CURVE_POINTS`): the mean training loss of each epoch is a point of the
recorded curve, and a non-finite one stops the run as diverged.
"""

import dataclasses
import json
import math
import os
import time

import numpy as np

from keras_lopt.evaluation import specs, suites

__all__ = [
    "CURVE_POINTS",
    "RunResult",
    "train_once",
    "training_batches",
    "full_loss",
    "run_benchmark",
    "read_results",
    "check_backend",
    "curve_windows",
]

CURVE_POINTS = 100
EVAL_BATCH_SIZE = 1024


@dataclasses.dataclass
class RunResult:
    """One (task, optimizer, seed, steps) run.

    curve: mean training loss over each window of steps (4 significant
    digits: files stay small); curve_steps: the last step of each window
    (1-based); both `[windows]`, NaN after a divergence. seconds: wall time of `fit` (tracing and compilation
    included).
    """

    task: str
    optimizer: str
    seed: int
    steps: int
    batch_size: int
    final_train_loss: float
    final_valid_loss: float
    diverged: bool
    seconds: float
    curve_steps: list
    curve: list
    backend: str = "tensorflow"


def curve_windows(steps):
    """The number of equal windows (fit epochs) a run of `steps` is split into:
    the largest divisor of `steps` that is at most `CURVE_POINTS`."""
    return max(d for d in range(1, min(steps, CURVE_POINTS) + 1) if steps % d == 0)


def batch_order(num_examples, batch_size, steps, seed):
    """Example indices `[steps * batch_size]`: seeded permutations, back to back."""
    rng = np.random.default_rng(seed)
    epochs = math.ceil(steps * batch_size / num_examples)
    return np.concatenate([rng.permutation(num_examples) for _ in range(epochs)])[: steps * batch_size]


def training_batches(x, y, batch_size, steps, seed):
    """The `tf.data.Dataset` of `steps` batches `(x, y)` a benchmark run
    trains on, in `batch_order`."""
    import tensorflow as tf

    order = batch_order(len(x), batch_size, steps, seed)
    x_all, y_all = tf.constant(x), tf.constant(y)
    return (
        tf.data.Dataset.from_tensor_slices(order)
        .batch(batch_size, drop_remainder=True)
        .map(lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)))
        .prefetch(2)
    )


def full_loss(model, loss_fn, data):
    """Mean loss over all of `data` = (x, y), inference mode."""
    x, y = data
    total = 0.0
    for start in range(0, len(x), EVAL_BATCH_SIZE):
        xb, yb = x[start : start + EVAL_BATCH_SIZE], y[start : start + EVAL_BATCH_SIZE]
        total += float(loss_fn(yb, model(xb, training=False))) * len(xb)
    return total / len(x)


def train_once(task, spec, steps=None, seed=0):
    """Trains `task` with a canonical optimizer `spec` -> `RunResult`.

    Args:
        task: an `EvalTask`.
        spec: a canonical spec (`specs.canonical`) or a Keras optimizer config dict.
        steps: training steps (default: the task's).
        seed: initialisation and batch-order seed.
    """
    import keras

    steps = steps or task.steps
    (x, y), valid = task.load_data()
    windows = curve_windows(steps)
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = task.build_model()
    model.compile(optimizer=specs.make_optimizer(spec), loss=task.loss, jit_compile=True)
    batches = training_batches(x, y, task.batch_size, steps, seed)
    curve = []

    class RecordCurve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            curve.append(float(f"{float(logs['loss']):.4g}"))
            if not math.isfinite(curve[-1]):
                self.model.stop_training = True

    start = time.perf_counter()
    model.fit(
        batches,
        epochs=windows,
        steps_per_epoch=steps // windows,
        shuffle=False,
        verbose=0,
        callbacks=[RecordCurve(), *specs.make_callbacks(spec)],
    )
    seconds = time.perf_counter() - start
    diverged = len(curve) < windows or not all(math.isfinite(v) for v in curve)
    final_train = final_valid = float("nan")
    if not diverged:
        final_train = full_loss(model, task.loss, (x, y))
        final_valid = full_loss(model, task.loss, valid)
        diverged = not (math.isfinite(final_train) and math.isfinite(final_valid))
    curve += [float("nan")] * (windows - len(curve))
    return RunResult(
        task=task.name,
        optimizer=spec,
        seed=seed,
        steps=steps,
        batch_size=task.batch_size,
        final_train_loss=final_train,
        final_valid_loss=final_valid,
        diverged=diverged,
        seconds=round(seconds, 2),
        curve_steps=[(i + 1) * (steps // windows) for i in range(windows)],
        curve=curve,
        backend=keras.backend.backend(),
    )


def result_key(record):
    return (record["task"], record["optimizer"], record["seed"], record["steps"])


def read_results(path):
    """Records of a results file (JSON lines), the last of each key kept;
    [] when the file does not exist. Records without a `backend` (written
    before `RunResult` had one) get `"tensorflow"`, the backend that wrote
    them."""
    if not os.path.exists(path):
        return []
    records = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path!r} line {number} is not JSON: {line[:200]!r}") from None
            record.setdefault("backend", "tensorflow")
            records[result_key(record)] = record
    return list(records.values())


def check_backend(records, path):
    """Raises ValueError if `records` (of the results file `path`) are not
    all from the Keras backend of this process: a file holds one backend's
    runs, so that every comparison in its report is made on one backend."""
    import keras

    current = keras.backend.backend()
    others = sorted({r.get("backend", "tensorflow") for r in records} - {current})
    if others:
        raise ValueError(
            f"{path!r} holds runs of the {', '.join(others)} backend, and this process runs Keras' "
            f"{current!r} backend (KERAS_BACKEND). Write this backend's runs to another output directory. "
            f"Received: KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}"
        )


def plan(task_names, spec_names, seeds, steps=None):
    """The runs of a benchmark, in order: `[(task, spec, seed, steps)]`."""
    runs = []
    for name in task_names:
        task = suites.get_task(name)
        for seed in seeds:
            for spec in spec_names:
                runs.append((task.name, spec, seed, steps or task.steps))
    return runs


def run_benchmark(task_names, spec_names, seeds, steps=None, output_path=None, log=print):
    """Runs every (task, seed, optimizer) not yet in `output_path`.

    Args:
        task_names: evaluation tasks (`suites.task_names()`).
        spec_names: canonical specs (`specs.expand`).
        seeds: initialisation and batch-order seeds.
        steps: steps of every run (default: each task's own).
        output_path: JSON lines file; each finished run is appended at once
            and runs already there are not repeated, so an interrupted
            benchmark resumes where it stopped.
        log: called with one line per finished run.

    Returns:
        The records of all planned runs (as dicts), old and new.
    """
    runs = [
        (name, spec, spec, seed, run_steps)
        for name, spec, seed, run_steps in plan(task_names, spec_names, seeds, steps)
    ]
    return run_missing(runs, output_path, log)


def run_missing(runs, output_path=None, log=print):
    """Runs each of `runs` whose record is not yet in `output_path`.

    Args:
        runs: `[(task name, optimizer name, spec, seed, steps)]`; the spec is
            a canonical spec or a Keras optimizer config (`train_once`), the
            name what the record's `optimizer` holds (the spec itself for
            canonical specs).
        output_path, log: as for `run_benchmark`.

    Returns:
        The records of all `runs` (as dicts), old and new, in order.
    """
    done = {result_key(r): r for r in read_results(output_path)} if output_path else {}
    check_backend(done.values(), output_path)
    results = []
    for name, optimizer, spec, seed, steps in runs:
        key = (name, optimizer, seed, steps)
        if key not in done:
            record = dataclasses.asdict(train_once(suites.get_task(name), spec, steps, seed))
            record["optimizer"] = optimizer
            done[key] = record
            log(
                f"{name:24s} {str(optimizer):36s} seed {seed} steps {steps}: train "
                f"{record['final_train_loss']:.4g} valid {record['final_valid_loss']:.4g} ({record['seconds']:.1f}s)"
            )
            if output_path:
                with open(output_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
        results.append(done[key])
    return results


def estimate_seconds(runs):
    """A rough duration of `runs` (`plan`) on a 2-core CPU, from each task's
    `step_ms`; learned optimizers count double, plus compilation."""
    total = 0.0
    for name, spec, _, steps in runs:
        learned = specs.is_learned(spec)
        total += (20.0 if learned else 8.0) + steps * suites.get_task(name).step_ms / 1000 * (2.0 if learned else 1.0)
    return total
