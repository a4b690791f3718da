"""Training tasks for meta-training (`families` groups them into the
families a run samples).

A `Task` is everything the inner loop needs, as pure functions of tensors:

* `init_params(seed)` -> list of numpy arrays (fresh initial parameters),
* `pooled_init_params(seed, pool_size)` -> the same from a pool of
  `pool_size` initialisations per task, seeded-shuffled (optional; cheap
  where `init_params` builds a model),
* `loss(params, batch)` -> scalar, the training loss,
* `sample_batch(data, seed)` -> a batch, drawn statelessly from `seed`,
* `train_data` / `valid_data`: tuples of arrays held in memory,
* `fan_ins`: each parameter's fan-in (`keras_lopt.fan_in`), read from the
  Keras model's variables (optional; without it, from the shapes alone).

`Task.structure` names everything that fixes tensor shapes (architecture,
widths, batch size, data set). Tasks with the same structure share compiled
unroll functions; seeds, initialisation scale and horizons vary freely.

Keras models run statelessly (`stateless_call`) inside the unroll, so any
Keras model without non-trainable state can be a task.
"""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from keras_lopt import fan_in


@dataclasses.dataclass(frozen=True)
class Task:
    """One training problem. See the module docstring."""

    structure: str
    init_params: Callable
    loss: Callable
    sample_batch: Callable
    train_data: Tuple
    valid_data: Tuple
    pooled_init_params: Optional[Callable] = None
    fan_ins: Optional[Tuple[int, ...]] = None

    def parameter_fan_ins(self, shapes):
        """`fan_ins`, or the fan-ins of parameters of these `shapes`."""
        if self.fan_ins is not None:
            return self.fan_ins
        return tuple(fan_in.fan_in(shape) for shape in shapes)

    def initial_params(self, seed, pool_size=None):
        """`init_params(seed)`, or `pooled_init_params(seed, pool_size)` when
        a pool size is given and the task has a pool."""
        if pool_size is None or self.pooled_init_params is None:
            return self.init_params(seed)
        return self.pooled_init_params(seed, pool_size)


def _sample_rows(data, seed, batch_size):
    n = data[0].shape[0]
    idx = tf.random.stateless_uniform([batch_size], seed=seed, minval=0, maxval=n, dtype=tf.int32)
    return tuple(tf.gather(a, idx) for a in data)


# ----------------------------------------------------------------------------
# Keras-model tasks


def _classification_loss(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits))


def _regression_loss(y, prediction):
    return tf.reduce_mean(tf.square(prediction - y))


def _sequence_loss(y, logits):
    return _classification_loss(tf.reshape(y, [-1]), tf.reshape(logits, [-1, logits.shape[-1]]))


LOSSES = {
    "classification": _classification_loss,
    "regression": _regression_loss,
    "sequence": _sequence_loss,
}


# Random stream (with the trajectory seed) of a pooled initialisation's shuffle.
_POOL_SHUFFLE_STREAM = 15485863


def shuffled_like_init(weight, rng):
    """`weight` permuted along every axis and sign-flipped along its first
    and last, if its rank is >= 2 (else a copy).

    For a tensor drawn i.i.d. from a symmetric distribution, or an
    orthogonal matrix, the result is another draw of the same kind; vectors
    (biases, LayerNorm scales, an LSTM's forget-gate bias) keep their
    structured initial values.
    """
    weight = np.array(weight, np.float32)
    if weight.ndim < 2:
        return weight
    for axis, size in enumerate(weight.shape):
        weight = np.take(weight, rng.permutation(size), axis=axis)
    for axis in (0, weight.ndim - 1):
        shape = [1] * weight.ndim
        shape[axis] = weight.shape[axis]
        weight = weight * rng.choice(np.float32([-1.0, 1.0]), size=shape)
    return weight


def keras_task(structure, build_model, loss, train_data, valid_data, batch_size, init_scale_range=(1.0, 1.0)):
    """A Task over a Keras model.

    Args:
        structure: unique name of the shapes (model, batch size, data).
        build_model: `() -> keras.Model`, built. Called once per
            `init_params` seed under a fixed Keras seed. Non-trainable state
            (seed generators; avoid BatchNormalization) stays at its
            initial value during the unroll.
        loss: key of `LOSSES`.
        train_data, valid_data: `(x, y)` numpy arrays.
        batch_size: examples per inner step.
        init_scale_range: `(low, high)`; each initialisation seed multiplies
            the model's initial weights by a log-uniform factor in it.
    """
    template = build_model()
    # Non-trainable state (e.g. an RNG seed) is held at its initial value.
    frozen = [v.value for v in template.non_trainable_variables]
    loss_fn = LOSSES[loss]

    low, high = init_scale_range

    def init_scale(seed):
        return np.float32(np.exp(np.random.default_rng(int(seed)).uniform(np.log(low), np.log(high))))

    def init_params(seed):
        keras.utils.set_random_seed(int(seed))
        model = build_model()
        return [init_scale(seed) * np.asarray(v.numpy(), np.float32) for v in model.trainable_variables]

    pool = {}

    def pooled_init_params(seed, pool_size):
        index = int(seed) % pool_size
        if index not in pool:
            keras.utils.set_random_seed(index)
            pool[index] = [np.asarray(v.numpy(), np.float32) for v in build_model().trainable_variables]
        rng = np.random.default_rng([int(seed), _POOL_SHUFFLE_STREAM])
        return [init_scale(seed) * shuffled_like_init(w, rng) for w in pool[index]]

    def task_loss(params, batch):
        x, y = batch
        outputs, _ = template.stateless_call(list(params), frozen, x, training=True)
        return loss_fn(y, outputs)

    return Task(
        structure=structure,
        init_params=init_params,
        loss=task_loss,
        sample_batch=functools.partial(_sample_rows, batch_size=batch_size),
        train_data=tuple(np.asarray(a) for a in train_data),
        valid_data=tuple(np.asarray(a) for a in valid_data),
        pooled_init_params=pooled_init_params,
        fan_ins=tuple(fan_in.fan_in(v.shape, v.path) for v in template.trainable_variables),
    )


def quadratic_task(dim=16, noise=0.1, seed=0):
    """`0.5 * sum(scales * (x - center)^2)` with gradient noise of std `noise`.

    Scales are log-uniform in [0.1, 10] (fixed by `seed`); the noise enters as
    a random linear term per batch, so the loss is an unbiased estimate.
    """
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), dim)).astype(np.float32)
    center = rng.normal(size=dim).astype(np.float32)

    def init_params(s):
        return [np.random.default_rng(int(s)).normal(size=dim).astype(np.float32)]

    def loss(params, batch):
        (x,) = params
        (direction,) = batch
        return 0.5 * tf.reduce_sum(scales * tf.square(x - center)) + noise * tf.reduce_sum(direction * x)

    def sample_batch(data, seed):
        return (tf.random.stateless_normal([dim], seed=seed),)

    empty = (np.zeros((1, 1), np.float32),)
    return Task(f"quadratic_{dim}_{seed}", init_params, loss, sample_batch, empty, empty)


def rosenbrock_task(seed=0):
    """The 2-D Rosenbrock function, deterministic, starting near (-1.2, 1)."""

    def init_params(s):
        jitter = np.random.default_rng(int(s)).normal(scale=0.1, size=2)
        return [np.array([-1.2, 1.0], np.float32) + jitter.astype(np.float32)]

    def loss(params, batch):
        (p,) = params
        return tf.square(1.0 - p[0]) + 100.0 * tf.square(p[1] - tf.square(p[0]))

    def sample_batch(data, seed):
        return ()

    empty = (np.zeros((1, 1), np.float32),)
    return Task("rosenbrock", init_params, loss, sample_batch, empty, empty)
