"""Per-parameter features fed to a learned optimizer network.

Features come in two groups:

* element features vary per parameter element; each is a tensor with the
  parameter's shape.
* tensor features are constant across one parameter tensor (training
  progress, tensor size); each is a scalar. Networks fold them into their first
  layer's bias, so they cost nothing per element.

`FEATURE_NAMES` is the order in which both groups are concatenated into the
feature matrix `[N, F]` of a preset's serving function: element features first.
The names are derived from the constants below, never written out by hand.
"""

import math

import tensorflow as tf

MOMENTUM_DECAYS = (0.9, 0.99)
SECOND_MOMENT_DECAY = 0.999
# Added to sqrt(second moment), exactly as keras.optimizers.Adam does.
EPSILON = 1e-7
# Guards the per-tensor RMS normalisers against all-zero tensors.
TENSOR_RMS_EPSILON = 1e-30
STEP_TIMESCALES = (10, 100, 1000, 10000)


def _decay_label(decay):
    return f"{decay:g}".replace(".", "p")


def momentum_slot_names():
    """Names of the optimizer slots that hold the momenta, in state order."""
    return tuple(f"momentum_{_decay_label(d)}" for d in MOMENTUM_DECAYS)


ELEMENT_FEATURE_NAMES = (
    "gradient_normalized",
    *(f"{name}_normalized" for name in momentum_slot_names()),
    "gradient_tensor_normalized",
    "parameter_tensor_normalized",
    "rms_tensor_normalized",
)
TENSOR_FEATURE_NAMES = (
    *(f"step_tanh_{s}" for s in STEP_TIMESCALES),
    "progress",
    "horizon_known",
    "log10_tensor_size",
)
FEATURE_NAMES = ELEMENT_FEATURE_NAMES + TENSOR_FEATURE_NAMES
NUM_FEATURES = len(FEATURE_NAMES)


def _tensor_rms_normalize(x):
    return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x)) + TENSOR_RMS_EPSILON)


def element_features(gradient, parameter, momenta, second_moment, iteration):
    """Builds the element features of one parameter tensor.

    Args:
        gradient: float32 tensor, any shape `S`.
        parameter: float32 tensor of shape `S`.
        momenta: tuple of float32 tensors of shape `S`, already updated with
            `gradient`, one per `MOMENTUM_DECAYS` entry.
        second_moment: float32 tensor of shape `S`, already updated.
        iteration: float32 scalar, the 1-based step count.

    Returns:
        A list of `len(ELEMENT_FEATURE_NAMES)` float32 tensors of shape `S`.
    """
    second_moment_correction = tf.sqrt(1.0 - SECOND_MOMENT_DECAY**iteration)
    inverse_denominator = 1.0 / (tf.sqrt(second_moment) + EPSILON)
    # The same algebra as keras.optimizers.Adam:
    # m * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps).
    normalized_momenta = [
        m * (second_moment_correction / (1.0 - decay**iteration))
        * inverse_denominator
        for m, decay in zip(momenta, MOMENTUM_DECAYS)
    ]
    rms_ratio = tf.sqrt(
        second_moment
        / (tf.reduce_mean(second_moment) + TENSOR_RMS_EPSILON)
    )
    return [
        gradient * second_moment_correction * inverse_denominator,
        *normalized_momenta,
        _tensor_rms_normalize(gradient),
        _tensor_rms_normalize(parameter),
        rms_ratio,
    ]


def tensor_features(iteration, total_steps, tensor_size):
    """Builds the tensor features of one parameter tensor.

    Args:
        iteration: float32 scalar, the 1-based step count.
        total_steps: float32 scalar, the training horizon in steps, or 0 when
            it is unknown.
        tensor_size: Python int, the number of elements of the parameter.

    Returns:
        A list of `len(TENSOR_FEATURE_NAMES)` float32 scalars.
    """
    horizon_known = tf.cast(total_steps > 0, tf.float32)
    progress = horizon_known * tf.minimum(
        iteration / tf.maximum(total_steps, 1.0), 1.0
    )
    return [
        *(tf.tanh(iteration / float(s)) for s in STEP_TIMESCALES),
        progress,
        horizon_known,
        tf.constant(math.log10(max(tensor_size, 1)), tf.float32),
    ]
