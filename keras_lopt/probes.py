"""Probes of a learned update rule: its step for chosen inputs, next to Adam's.

A probe point is one element of a parameter tensor, stepped once by
`rule.step`: its gradient `g`, both momentum slots at `m` and the
second-moment slot at `rms^2` *before* the step (the step folds `g` into
them), its parameter `p`, the step count and the horizon. The other
`BACKGROUND_SIZE` elements of the tensor are fixed: unit-RMS gradients
(times `rms`) and parameters, zero momenta, second moment `rms^2`. They set
the per-tensor statistics, so the probe's tensor-normalised features vary
smoothly with its own values, as in a real layer. A network with per-tensor
state (a step-size controller, an LSTM) starts from its zero state, as on a
tensor's first step, and is not given the loss: a probe shows its
per-element part at the preset's own step size.

Updates are reported in units of the learning rate: `update / lr`, the
multiple of the learning rate the parameter moves by (Adam's is at most
about 1 in magnitude).
"""

import numpy as np
import tensorflow as tf

from keras_lopt import guard, presets, rule
from keras_lopt.layers import BoundNetwork

BACKGROUND_SIZE = 255


def _unit_rms(rng, size):
    values = rng.standard_normal(size).astype(np.float32)
    return values / np.sqrt(np.mean(np.square(values)))


def _network(preset):
    """`(BoundNetwork, feature_names)` of a preset."""
    loaded = presets.load_preset(preset)
    network = BoundNetwork(loaded.network, [tf.constant(w) for w in loaded.weights])
    return network, loaded.feature_names


class _Recorder:
    """A network for `rule.step` that keeps its outputs for the probe. It
    answers what `rule.step` asks of a network (state names, context
    features, ...) as the network it wraps."""

    def __init__(self, network):
        self.network = network

    def __getattr__(self, name):
        return getattr(self.network, name)

    def __call__(self, columns, *context_and_state):
        direction, magnitude, *new_state = self.network(columns, *context_and_state)
        self.direction = direction
        self.log_multiplier = tf.broadcast_to(self.magnitude_scale * magnitude, tf.shape(direction))
        return (direction, magnitude, *new_state)


def _broadcast(**values):
    arrays = np.broadcast_arrays(*[np.asarray(v, np.float32) for v in values.values()])
    return {k: a.reshape(-1) for k, a in zip(values, arrays)}


def probe(preset, gradient, momentum, rms, step, total_steps=0, parameter=0.0):
    """Learned and Adam updates (in units of `lr`) at each probe point.

    All arguments after `preset` broadcast against each other to one shape
    `S` (e.g. a sweep of gradients against a scalar momentum).

    Args:
        preset: a preset name or directory.
        gradient: `g`, this step's gradient.
        momentum: value of both momentum slots before the step.
        rms: square root of the second-moment slot before the step.
        step: the 1-based step count.
        total_steps: the horizon (0: unknown, the rule sees no progress).
        parameter: the parameter's value.

    Returns:
        dict of float32 arrays of shape `S`: `learned`, `adam` (Keras'
        `Adam` on the same moments, `keras_lopt.guard.adam_update`),
        `direction`, `log_multiplier` (the network's outputs:
        `learned = direction * exp(log_multiplier)`).
    """
    shape = np.broadcast_shapes(*(np.shape(v) for v in (gradient, momentum, rms, step, total_steps, parameter)))
    points = _broadcast(
        gradient=gradient,
        momentum=momentum,
        rms=rms,
        step=step,
        total_steps=total_steps,
        parameter=parameter,
    )
    network, feature_names = _network(preset)
    rng = np.random.default_rng(0)
    background_gradient = tf.constant(_unit_rms(rng, BACKGROUND_SIZE))
    background_parameter = tf.constant(_unit_rms(rng, BACKGROUND_SIZE))
    background_zeros = tf.zeros([BACKGROUND_SIZE])
    background_ones = tf.ones([BACKGROUND_SIZE])

    def one_point(values):
        g, m, r, t, horizon, p = (values[k][None] for k in points)
        t, horizon = t[0], horizon[0]
        momentum = tf.concat([m, background_zeros], 0)
        recorder = _Recorder(network)
        state = rule.RuleState(
            momenta=tuple(momentum for _ in rule.state_slot_names()[:-1]),
            second_moment=tf.square(tf.concat([r, r * background_ones], 0)),
            tensor_state=tuple(tf.zeros(shape) for shape in rule.tensor_state_shapes(recorder)),
        )
        g = tf.concat([g, r * background_gradient], 0)
        p = tf.concat([p, background_parameter], 0)
        update, new_state = rule.step(
            recorder,
            state,
            g,
            p,
            iteration=t,
            total_steps=horizon,
            learning_rate=1.0,
            feature_names=feature_names,
        )
        adam = guard.adam_update(new_state.momenta[guard.ADAM_MOMENTUM_INDEX], new_state.second_moment, t, 1.0)
        return {
            "learned": update[0],
            "adam": adam[0],
            "direction": recorder.direction[0],
            "log_multiplier": recorder.log_multiplier[0],
        }

    outputs = tf.vectorized_map(one_point, {k: tf.constant(v) for k, v in points.items()})
    return {k: v.numpy().reshape(shape) for k, v in outputs.items()}


def gradient_sweep(preset, gradients, momenta=(-1.0, 0.0, 1.0), rms=1.0, step=1000, total_steps=0):
    """Updates against the gradient, one curve per momentum value.

    Returns:
        dict of arrays `[len(momenta), len(gradients)]` (see `probe`).
    """
    gradients = np.asarray(gradients, np.float32)
    momenta = np.asarray(momenta, np.float32)
    return probe(preset, gradients[None, :], momenta[:, None], rms, step, total_steps)


def progress_sweep(preset, steps, total_steps, gradient=1.0, momentum=1.0, rms=1.0):
    """Updates against the step count for a fixed horizon.

    Returns:
        dict of arrays `[len(steps)]` (see `probe`).
    """
    return probe(preset, gradient, momentum, rms, np.asarray(steps, np.float32), total_steps)
