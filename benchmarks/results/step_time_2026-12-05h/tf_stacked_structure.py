# ruff: noqa: E402
"""Scratch (2026-12-05, fourteenth session): without XLA, the default's
update structure as TensorFlow graph operations per variable against the
same with the variables of one shape stacked, on the residual MLP's 20
shapes.

Per variable (`per variable`): the three moments, the inverse denominator,
the alignment products over the rule's sample with a finiteness column,
one reduction; the per-tensor controller batched over all variables; the
step scaled by `exp` of the new log step, every output kept on a
non-finite gradient; four assignments. `stacked by shape`: the variables
of each shape stacked (`[k, *shape]`), the same arithmetic with per-row
sums and per-row scalars, unstacked for the assignments. Keras' Adam
(`apply` in a `tf.function`) in the same run. Not a rule of this project:
an estimate of what each layout costs TensorFlow's executor. Prints the
median call time and the graph's operation count, e.g.
`python tf_stacked_structure.py`."""

import collections
import os
import sys
import time

R = os.environ.get("REPO", "/work/main")
sys.path.insert(0, R)
import keras
import numpy as np
import tensorflow as tf

from keras_lopt import features

SHAPES = [(64, 128), (128,)] + [(128,), (128,), (128, 128), (128,)] * 4 + [(128, 10), (10,)]
D9, D99, D2 = 0.9, 0.99, 0.999


def products(g, m9, m99, v, rows):
    """`[k, 7]` sums of the sampled alignment products of `rows` tensors
    given as `[k, n]`."""
    stride = features.alignment_sample_stride(g.shape[1])
    g, m9, m99, v = (x[:, ::stride] for x in (g, m9, m99, v))
    inverse = 1.0 / (tf.sqrt(v) + 1e-8)
    columns = [g * g, tf.square(g * inverse)]
    for m, decay in ((m9, D9), (m99, D99)):
        previous = (m - g * (1.0 - decay)) / decay * inverse
        columns += [g * previous, previous * previous]
    columns.append(g * g * 0.0)
    return tf.reduce_sum(tf.stack(columns, axis=1), axis=2)


def control(sums, state, sizes):
    cosines = [sums[:, 2 + 2 * k] * tf.math.rsqrt(sums[:, 0] * sums[:, 3 + 2 * k] + 1e-30) for k in range(2)]
    averages = [state[:, 1 + k] + (c - state[:, 1 + k]) * 0.1 for k, c in enumerate(cosines)]
    square = sums[:, 0] / sizes
    change = 4.5 * (cosines[1] + averages[1]) + 0.5 + 0.1 * tf.math.log(square / (state[:, 3] + 1e-30) + 1e-30)
    log_step = tf.clip_by_value(state[:, 0] + 0.05 * tf.tanh(change), -2.3, 2.3)
    finite = tf.math.is_finite(sums[:, 6])
    new = tf.stack([log_step, *averages, square], axis=-1)
    return log_step, tf.where(finite[:, None], new, state), finite


class Structure:
    def __init__(self, stacked):
        rng = np.random.default_rng(0)
        self.params = [tf.Variable(rng.normal(size=s).astype("float32")) for s in SHAPES]
        self.slots = [[tf.Variable(tf.zeros(s)) for _ in range(3)] for s in SHAPES]
        self.state = tf.Variable(tf.zeros((len(SHAPES), 4)))
        self.grads = [tf.constant(rng.normal(size=s).astype("float32") * 1e-3) for s in SHAPES]
        self.sizes = tf.constant([features.alignment_sample_count(int(np.prod(s))) for s in SHAPES], "float32")
        groups = collections.defaultdict(list)
        for i, s in enumerate(SHAPES):
            groups[s if stacked else i].append(i)
        self.groups = list(groups.values())
        self.order = [i for group in self.groups for i in group]

    @tf.function(autograph=False)
    def step(self, lr):
        moved, sums = {}, []
        for group in self.groups:
            g = tf.stack([tf.reshape(self.grads[i], [-1]) for i in group])
            m9, m99, v = (tf.stack([tf.reshape(self.slots[i][k], [-1]) for i in group]) for k in range(3))
            m9 = m9 + (g - m9) * (1 - D9)
            m99 = m99 + (g - m99) * (1 - D99)
            v = v + (g * g - v) * (1 - D2)
            moved[tuple(group)] = (g, m9, m99, v)
            sums.append(products(g, m9, m99, v, len(group)))
        order = self.order
        sums = tf.gather(tf.concat(sums, axis=0), np.argsort(order))
        log_step, new_state, finite = control(sums, self.state, self.sizes)
        self.state.assign(new_state)
        scale = lr * tf.exp(log_step)
        for group in self.groups:
            g, m9, m99, v = moved[tuple(group)]
            p = tf.stack([tf.reshape(self.params[i], [-1]) for i in group])
            rows_finite = tf.gather(finite, group)[:, None]
            new_p = tf.where(rows_finite, p - tf.gather(scale, group)[:, None] * m9 / (tf.sqrt(v) + 1e-8), p)
            outputs = [new_p] + [
                tf.where(rows_finite, x, tf.stack([tf.reshape(self.slots[i][k], [-1]) for i in group]))
                for k, x in enumerate((m9, m99, v))
            ]
            for row, i in enumerate(group):
                self.params[i].assign(tf.reshape(outputs[0][row], SHAPES[i]))
                for k in range(3):
                    self.slots[i][k].assign(tf.reshape(outputs[1 + k][row], SHAPES[i]))


def time_calls(function, calls=300, repeats=5):
    function()
    best = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best.append((time.perf_counter() - start) / calls)
    return float(np.median(best))


def main():
    variables = [keras.Variable(np.zeros(s, "float32")) for s in SHAPES]
    adam = keras.optimizers.Adam()
    adam.build(variables)
    grads = [tf.constant(np.full(s, 1e-3, "float32")) for s in SHAPES]
    adam_apply = tf.function(lambda: adam.apply(grads, variables), autograph=False)
    per_variable, stacked = Structure(False), Structure(True)
    lr = tf.constant(1e-3)
    for label, function in (
        ("keras Adam", adam_apply),
        ("per variable", lambda: per_variable.step(lr)),
        ("stacked by shape", lambda: stacked.step(lr)),
    ):
        graph_ops = None
        if label != "keras Adam":
            structure = per_variable if label == "per variable" else stacked
            graph_ops = len(structure.step.get_concrete_function(lr).graph.get_operations())
        else:
            graph_ops = len(adam_apply.get_concrete_function().graph.get_operations())
        print(f"{label}: {time_calls(function) * 1e3:.3f} ms a call, {graph_ops} graph operations", flush=True)


if __name__ == "__main__":
    for _ in range(2):
        main()
