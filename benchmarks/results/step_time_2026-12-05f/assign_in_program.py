"""Scratch: without XLA in the outer step, does assigning inside the XLA
program (variables passed as resources) cost less than returning tensors and
assigning outside? 20 variables in groups of 8, a step of Adam-like work.
Scratch (2026-12-05, twelfth session), kept for reproducibility."""

import time

import numpy as np
import tensorflow as tf

shapes = [(64, 128), (128,)] + [(128,), (128,), (128, 128), (128,)] * 4 + [(128, 10), (10,)]
rng = np.random.default_rng(0)
values = [tf.Variable(rng.normal(size=s).astype("float32")) for s in shapes]
slots = [[tf.Variable(np.zeros(s, "float32")) for _ in range(3)] for s in shapes]
counter = tf.Variable(0, dtype=tf.int64)
grads = [tf.constant(rng.normal(size=s).astype("float32") * 1e-3) for s in shapes]
GROUP = 8


def rule(g, v, s):
    m1 = s[0] + (g - s[0]) * 0.1
    m2 = s[1] + (g - s[1]) * 0.01
    sq = s[2] + (g * g - s[2]) * 0.001
    return v - 1e-3 * m1 / (tf.sqrt(sq) + 1e-8), (m1, m2, sq)


@tf.function(jit_compile=True, autograph=False)
def returning(gs, vs, ss):
    out = [rule(g, v, s) for g, v, s in zip(gs, vs, ss)]
    return out, tf.constant(0, tf.int64)


@tf.function(jit_compile=True, autograph=False)
def assigning(gs, vs, ss, counter):
    for g, v, s in zip(gs, vs, ss):
        new, new_slots = rule(g, v, s)
        v.assign(new)
        for slot, n in zip(s, new_slots):
            slot.assign(n)
    counter.assign_add(0)


@tf.function(autograph=False)
def step_returning(grads):
    for i in range(0, len(shapes), GROUP):
        vs = values[i : i + GROUP]
        ss = slots[i : i + GROUP]
        out, c = returning(
            grads[i : i + GROUP], [v.read_value() for v in vs], [[x.read_value() for x in s] for s in ss]
        )
        for v, s, (new, new_slots) in zip(vs, ss, out):
            v.assign(new)
            for slot, n in zip(s, new_slots):
                slot.assign(n)
            counter.assign_add(c)


@tf.function(autograph=False)
def step_assigning(grads):
    for i in range(0, len(shapes), GROUP):
        assigning(grads[i : i + GROUP], values[i : i + GROUP], slots[i : i + GROUP], counter)


for f in (step_returning, step_assigning):
    f(grads)
for _ in range(3):
    for name, f in (("returning", step_returning), ("assigning", step_assigning)):
        t = time.perf_counter()
        for _ in range(300):
            f(grads)
        print(name, round((time.perf_counter() - t) / 300 * 1e3, 3), "ms")


@tf.function(autograph=False)
def step_plain(grads):
    for g, v, s in zip(grads, values, slots):
        new, new_slots = rule(g, v.read_value(), [x.read_value() for x in s])
        v.assign(new)
        for slot, n in zip(s, new_slots):
            slot.assign(n)


@tf.function(autograph=False)
def step_one_launch(grads):
    assigning(grads, values, slots, counter)


@tf.function(autograph=False)
def step_adam_like_keras(grads):
    for g, v, s in zip(grads, values, slots):
        s[0].assign_add((g - s[0]) * 0.1)
        s[1].assign_add((g * g - s[1]) * 0.001)
        v.assign_sub(1e-3 * s[0] / (tf.sqrt(s[1]) + 1e-8))


for f in (step_plain, step_one_launch, step_adam_like_keras):
    f(grads)
for _ in range(3):
    for name, f in (
        ("plain", step_plain),
        ("one launch", step_one_launch),
        ("keras-adam-like", step_adam_like_keras),
        ("3 launches", step_assigning),
    ):
        t = time.perf_counter()
        for _ in range(300):
            f(grads)
        print(name, round((time.perf_counter() - t) / 300 * 1e3, 3), "ms")
