"""Checks of `LearnedOptimizer`'s arguments, with Keras-style messages.

Keras' base `Optimizer` accepts its own arguments without checking most of
them; these checks reject bad values when the optimizer is created.
"""

import math

from keras_lopt import validation

__all__ = ["check_base_arguments", "checked_learning_rate", "checked_total_steps"]


def checked_total_steps(total_steps):
    """`total_steps` as an int or None (a positive integer or None)."""
    if total_steps is None:
        return None
    validation.require(
        validation.is_integer(total_steps) and total_steps >= 1,
        "total_steps",
        total_steps,
        "a positive integer or None",
    )
    return int(total_steps)


def checked_learning_rate(learning_rate):
    """`learning_rate` as a float, or the schedule, callable or None given."""
    if learning_rate is None or callable(learning_rate):
        # Schedules and callables are checked by Keras when they are called.
        return learning_rate
    if not validation.is_number(learning_rate):
        # `learning_rate` is the first argument, as in every Keras optimizer;
        # the preset used to be, so say where a preset name goes.
        hint = (
            f" To choose a preset, pass it by keyword: LearnedOptimizer(preset={learning_rate!r})."
            if isinstance(learning_rate, str)
            else ""
        )
        raise ValueError(
            "`learning_rate` must be a positive number, a "
            "`keras.optimizers.schedules.LearningRateSchedule` or a callable. "
            f"Received: learning_rate={learning_rate!r}.{hint}"
        )
    validation.require(learning_rate > 0, "learning_rate", learning_rate, "positive")
    validation.require(math.isfinite(learning_rate), "learning_rate", learning_rate, "finite")
    return float(learning_rate)


def _optional_number(name, value, allow_zero=False):
    if value is None:
        return
    if allow_zero:
        validation.non_negative_number(name, value, rule="a non-negative finite number or None")
    else:
        validation.positive_number(name, value, rule="a positive finite number or None")


def check_base_arguments(
    name,
    weight_decay,
    clipnorm,
    clipvalue,
    global_clipnorm,
    use_ema,
    ema_momentum,
    ema_overwrite_frequency,
    loss_scale_factor,
    gradient_accumulation_steps,
):
    """Checks the base-optimizer arguments Keras accepts without checking."""
    validation.require(isinstance(name, str) and bool(name), "name", name, "a non-empty string")
    _optional_number("weight_decay", weight_decay, allow_zero=True)
    for arg, value in (
        ("clipnorm", clipnorm),
        ("clipvalue", clipvalue),
        ("global_clipnorm", global_clipnorm),
        ("loss_scale_factor", loss_scale_factor),
    ):
        _optional_number(arg, value)
    validation.boolean("use_ema", use_ema)
    validation.require(
        validation.is_number(ema_momentum) and 0 <= ema_momentum <= 1,
        "ema_momentum",
        ema_momentum,
        "a number in [0, 1]",
    )
    validation.require(
        ema_overwrite_frequency is None
        or (validation.is_integer(ema_overwrite_frequency) and ema_overwrite_frequency >= 1),
        "ema_overwrite_frequency",
        ema_overwrite_frequency,
        "an integer >= 1 or None",
    )
    validation.require(
        gradient_accumulation_steps is None
        or (validation.is_integer(gradient_accumulation_steps) and gradient_accumulation_steps >= 2),
        "gradient_accumulation_steps",
        gradient_accumulation_steps,
        "an integer >= 2 or None",
    )
