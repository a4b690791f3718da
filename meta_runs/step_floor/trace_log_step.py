"""Prints a preset's per-tensor log step `s` every 100 steps of one
evaluation task's run (the benchmark's model, data and batch order), and
the median over tensors of the controller's running averages of the
alignment cosines (`average_alignment_momentum_0p9`, `..._0p99`, the
state's fields 1 and 2).

Usage: python trace_log_step.py TASK SEED [SPEC]  (SPEC default:
learned:adaptive_fan_in_v1)
"""

import sys

import keras
import numpy as np

from keras_lopt.evaluation import harness, specs, suites

task_name, seed = sys.argv[1], int(sys.argv[2])
spec = sys.argv[3] if len(sys.argv) > 3 else "learned:adaptive_fan_in_v1"
every = 100
task = suites.get_task(task_name)
(x, y), valid = task.load_data()
keras.utils.set_random_seed(seed)
model = task.build_model()
opt = specs.make_optimizer(specs.canonical(spec))
model.compile(optimizer=opt, loss=task.loss, jit_compile=True)
batches = harness.training_batches(x, y, task.batch_size, task.steps, seed)


class PrintLogStep(keras.callbacks.Callback):
    """Prints the loss, the median averaged alignments and every tensor's `s`
    at the end of each 100-step epoch."""

    def on_epoch_end(self, epoch, logs=None):
        ctl = [v for v in opt.variables if "step_control" in v.name]
        state = np.stack([np.asarray(v) for v in ctl])
        fast, slow = np.median(state[:, 1]), np.median(state[:, 2])
        print(
            f"step {(epoch + 1) * every:5d} loss {logs['loss']:.4g}",
            f"alignment 0p9 {fast:+.3f} 0p99 {slow:+.3f} log_step",
            " ".join(f"{v:+.2f}" for v in state[:, 0]),
            flush=True,
        )


model.fit(batches, epochs=task.steps // every, steps_per_epoch=every, verbose=0, callbacks=[PrintLogStep()])
print("tensors, in order:", [v.name for v in opt.variables if "step_control" in v.name])
print("final train", harness.full_loss(model, task.loss, (x, y)), "valid", harness.full_loss(model, task.loss, valid))
