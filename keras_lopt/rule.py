"""The learned update rule: pure functions shared by the optimizer and meta/.

`step` turns one parameter tensor's gradient and state into an update and a
new state. `LearnedOptimizer.update_step` and the meta-training unroll both
call it unchanged, so what is meta-trained is exactly what users run.

    update = learning_rate * direction * exp(magnitude_scale * magnitude)
    new_parameter = parameter - update

where `(direction, magnitude)` is the network's output for each element.
"""

from typing import NamedTuple, Tuple

import tensorflow as tf

from keras_lopt import features


class RuleState(NamedTuple):
    """Optimizer state of one parameter tensor (all float32, its shape)."""

    momenta: Tuple[tf.Tensor, ...]
    second_moment: tf.Tensor


def state_slot_names():
    """Names of the state slots, in the order `flatten_state` uses."""
    return (*features.momentum_slot_names(), "second_moment")


def init_state(parameter):
    """Zero state for a parameter tensor of any shape."""
    zeros = tf.zeros_like(parameter, dtype=tf.float32)
    return RuleState(
        momenta=tuple(zeros for _ in features.MOMENTUM_DECAYS),
        second_moment=zeros,
    )


def flatten_state(state):
    """RuleState -> tuple of tensors, in `state_slot_names()` order."""
    return (*state.momenta, state.second_moment)


def unflatten_state(slots):
    """Inverse of `flatten_state`."""
    *momenta, second_moment = slots
    return RuleState(momenta=tuple(momenta), second_moment=second_moment)


def step(
    network,
    state,
    gradient,
    parameter,
    iteration,
    total_steps,
    learning_rate,
):
    """One application of the learned rule to one parameter tensor.

    Args:
        network: callable `columns -> (direction, magnitude)` with a float
            attribute `magnitude_scale`; `columns` is the list of
            `features.NUM_FEATURES` feature tensors (scalars for tensor
            features) and the outputs have the parameter's shape.
        state: `RuleState` of this parameter.
        gradient: float32 tensor of shape `S`.
        parameter: float32 tensor of shape `S`.
        iteration: scalar, the 1-based step count.
        total_steps: scalar, the training horizon in steps; 0 if unknown.
        learning_rate: scalar, `lr` in the formula above.

    Returns:
        `(update, new_state)`: the float32 update of shape `S` to subtract
        from the parameter, and the new `RuleState`.
    """
    iteration = tf.cast(iteration, tf.float32)
    total_steps = tf.cast(total_steps, tf.float32)
    learning_rate = tf.cast(learning_rate, tf.float32)
    momenta = tuple(
        m + (gradient - m) * (1.0 - decay)
        for m, decay in zip(state.momenta, features.MOMENTUM_DECAYS)
    )
    second_moment = state.second_moment + (
        tf.square(gradient) - state.second_moment
    ) * (1.0 - features.SECOND_MOMENT_DECAY)
    columns = features.element_features(
        gradient, parameter, momenta, second_moment, iteration
    ) + features.tensor_features(
        iteration, total_steps, parameter.shape.num_elements()
    )
    direction, magnitude = network(columns)
    update = (
        learning_rate
        * direction
        * tf.exp(network.magnitude_scale * magnitude)
    )
    return update, RuleState(momenta=momenta, second_moment=second_moment)
