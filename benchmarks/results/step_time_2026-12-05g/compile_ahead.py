# ruff: noqa: E402
"""Scratch (2026-12-05, thirteenth session): the first `fit` call without XLA
in the train step when the optimizer's group programs are compiled ahead,
from a graph of their own that calls them on zeros in a cross-replica
context (the context of Keras' `update_step` calls, so that TensorFlow uses
the same traced function and XLA's cache hands the train step the compiled
program). Modes: `none` (as shipped), `sync` (compiled ahead, then `fit`),
`thread` (compiled in a background thread started after `build`, while
`fit` traces the train step), e.g. `python compile_ahead.py 10 thread`.
An eager call of the programs does not serve: it is another context (not
cross-replica), hence another trace, and eager and in-graph calls do not
share XLA's cache."""

import os
import sys
import threading
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R + "/benchmarks")
sys.path.insert(0, R)
import keras
import numpy as np
import tensorflow as tf
from step_time import residual_mlp

import keras_lopt
from keras_lopt import backend
from keras_lopt import optimizer as optimizer_module

START = time.perf_counter()


def group_calls(optimizer, variables):
    """The optimizer's `many` calls of one `apply`, on zero gradients, in the
    graph being traced; nothing assigned."""
    pending = [(tf.zeros(v.shape, v.dtype), v.value) for v in variables]
    items = [
        (
            *optimizer._step_arguments(g, v),
            optimizer.weight_decay is not None and optimizer._use_weight_decay(v),
            optimizer._step_scale(v),
        )
        for g, v in pending
    ]
    network_weights = [backend.dense(w) for w in optimizer._network_weights]
    scalars = optimizer._step_scalars(optimizer.learning_rate)
    tensor_state = tuple(backend.dense(t) for t in optimizer._tensor_slots)
    rows = [optimizer._tensor_rows[optimizer._get_variable_index(v)] for _, v in pending]
    size = optimizer_module.PROGRAM_GROUP_SIZE
    outputs = []
    for start in range(0, len(items), size):
        blocks = [optimizer_module._rows_of(value, rows[start : start + size]) for value in tensor_state]
        outputs.append(optimizer._variable_step.many(items[start : start + size], network_weights, scalars, blocks))
    return tf.nest.flatten(outputs)[:1]


def compile_ahead(optimizer, variables):
    graph = tf.function(lambda: group_calls(optimizer, variables), autograph=False)
    context = tf.distribute.get_replica_context()
    context.merge_call(lambda _: graph.get_concrete_function())
    traced = time.perf_counter()
    context.merge_call(lambda _: graph())
    print(f"ahead: traced at +{traced - START:.2f} s, compiled at +{time.perf_counter() - START:.2f} s")


size, mode = int(sys.argv[1]), sys.argv[2]
keras.utils.set_random_seed(0)
model, _ = residual_mlp(size)
x = np.random.default_rng(0).normal(size=(32, 64)).astype("float32")
y = np.random.default_rng(1).integers(0, 10, size=(32,))
optimizer = keras_lopt.LearnedOptimizer()
model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False)
START = time.perf_counter()
thread = None
if mode != "none":
    optimizer.build(model.trainable_variables)
    if mode == "sync":
        compile_ahead(optimizer, model.trainable_variables)
    else:
        thread = threading.Thread(target=compile_ahead, args=(optimizer, model.trainable_variables))
        thread.start()
before_fit = time.perf_counter()
model.fit(x, y, batch_size=32, epochs=1, verbose=0)
end = time.perf_counter()
if thread is not None:
    thread.join()
traces = [p.experimental_get_tracing_count() for p in optimizer._variable_step.batched_programs.values()]
print(
    f"size {size} {mode}: before fit {before_fit - START:.2f} s, fit {end - before_fit:.2f} s, "
    f"total {end - START:.2f} s, traces per program {traces}, "
    f"sum of the first weight {float(np.sum(model.get_weights()[0])):.8f}"
)
