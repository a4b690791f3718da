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

A network reads one of the `FEATURE_SETS`, a subset of `FEATURE_NAMES` in
that order: `"full"` (all of them) or `"local"`, which leaves out the element
features that are normalised by a statistic of the whole tensor. Each such
statistic is a reduction, one more pass over the tensor on every step; the
`"local"` features of an element depend on that element's slots and on
scalars only, so the whole learned step is one elementwise pass.
"""

import math
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from keras import ops

# A tensor of Keras' backend (tf.Tensor, jax.Array).
Tensor = Any

MOMENTUM_DECAYS = (0.9, 0.99)
SECOND_MOMENT_DECAY = 0.999
# Added to sqrt(second moment), exactly as keras.optimizers.Adam does.
EPSILON = 1e-7
# Guards the per-tensor RMS normalisers against all-zero tensors.
TENSOR_RMS_EPSILON = 1e-30
STEP_TIMESCALES = (10, 100, 1000, 10000)


def _decay_label(decay):
    return f"{decay:g}".replace(".", "p")


def momentum_slot_names() -> Tuple[str, ...]:
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
# The element features computed without a reduction over the tensor: the
# Adam-normalised gradient and momenta.
LOCAL_ELEMENT_FEATURE_NAMES = ELEMENT_FEATURE_NAMES[: 1 + len(MOMENTUM_DECAYS)]
FEATURE_SETS = {
    "full": FEATURE_NAMES,
    "local": LOCAL_ELEMENT_FEATURE_NAMES + TENSOR_FEATURE_NAMES,
}
DEFAULT_FEATURE_SET = "full"


def feature_names(feature_set: str) -> Tuple[str, ...]:
    """The feature names (a tuple) of one of `FEATURE_SETS`, by its name."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(
            f"Unknown feature set. Expected one of {sorted(FEATURE_SETS)}. Received: feature_set={feature_set!r}"
        )
    return FEATURE_SETS[feature_set]


def feature_set_of(names: Iterable[str]) -> str:
    """The name of the feature set whose features are `names`, in order.

    Raises:
        ValueError: if `names` is not exactly one of `FEATURE_SETS`.
    """
    names = tuple(names)
    for set_name, set_names in FEATURE_SETS.items():
        if names == set_names:
            return set_name
    raise ValueError(
        "The feature names are not one of this version's feature sets "
        f"{ {k: list(v) for k, v in FEATURE_SETS.items()} }. "
        f"Received: {list(names)}"
    )


def _tensor_rms_normalize(x):
    return x * ops.rsqrt(ops.mean(ops.square(x)) + TENSOR_RMS_EPSILON)


def bias_corrections(iteration: Tensor) -> List[Tensor]:
    """The float32 scalars that Adam-normalise the gradient and the momenta
    at step `iteration`: `sqrt(1 - beta_2^t)`, then for each momentum
    `sqrt(1 - beta_2^t) / (1 - decay^t)`. The same for every tensor of a
    step: computed once, they are shared (`element_features`)."""
    second_moment_correction = ops.sqrt(1.0 - SECOND_MOMENT_DECAY**iteration)
    return [second_moment_correction, *(second_moment_correction / (1.0 - d**iteration) for d in MOMENTUM_DECAYS)]


def inverse_denominator(second_moment: Tensor) -> Tensor:
    """`1 / (sqrt(second_moment) + EPSILON)`, element by element: Adam's
    normalisation, shared by `element_features` and `alignment_sums`."""
    return 1.0 / (ops.sqrt(second_moment) + EPSILON)


def element_features(
    gradient: Tensor,
    parameter: Tensor,
    momenta: Sequence[Tensor],
    second_moment: Tensor,
    iteration: Tensor,
    names: Sequence[str] = ELEMENT_FEATURE_NAMES,
    corrections: Optional[Sequence[Tensor]] = None,
    inverse: Optional[Tensor] = None,
) -> List[Tensor]:
    """Builds the element features of one parameter tensor.

    Args:
        gradient: float32 tensor, any shape `S`.
        parameter: float32 tensor of shape `S`.
        momenta: tuple of float32 tensors of shape `S`, already updated with
            `gradient`, one per `MOMENTUM_DECAYS` entry.
        second_moment: float32 tensor of shape `S`, already updated.
        iteration: float32 scalar, the 1-based step count.
        names: the features to build, from `ELEMENT_FEATURE_NAMES`; only
            these are computed.
        corrections: None, or `bias_corrections(iteration)` computed
            already (shared by the tensors of a step).
        inverse: None, or `inverse_denominator(second_moment)` computed
            already.

    Returns:
        A list of `len(names)` float32 tensors of shape `S`, in `names` order.
    """
    second_moment_correction, *momentum_corrections = (
        bias_corrections(iteration) if corrections is None else corrections
    )
    inverse = inverse_denominator(second_moment) if inverse is None else inverse

    def normalized_momentum(index):
        # The same algebra as keras.optimizers.Adam:
        # m * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps).
        return momenta[index] * momentum_corrections[index] * inverse

    def rms_ratio():
        return ops.sqrt(second_moment / (ops.mean(second_moment) + TENSOR_RMS_EPSILON))

    builders = {
        ELEMENT_FEATURE_NAMES[0]: (lambda: gradient * second_moment_correction * inverse),
        **{f"{slot}_normalized": (lambda i=i: normalized_momentum(i)) for i, slot in enumerate(momentum_slot_names())},
        "gradient_tensor_normalized": lambda: _tensor_rms_normalize(gradient),
        "parameter_tensor_normalized": lambda: _tensor_rms_normalize(parameter),
        "rms_tensor_normalized": rms_ratio,
    }
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ValueError(f"Unknown element feature(s) {unknown}. Expected names from {list(ELEMENT_FEATURE_NAMES)}")
    return [builders[n]() for n in names]


def step_features(iteration: Tensor, total_steps: Tensor) -> List[Tensor]:
    """The tensor features that do not depend on the tensor (all but the
    last, its log size): float32 scalars, the same for every tensor of a
    step. See `tensor_features`."""
    horizon_known = ops.cast(total_steps > 0, "float32")
    progress = horizon_known * ops.minimum(iteration / ops.maximum(total_steps, 1.0), 1.0)
    return [*(ops.tanh(iteration / float(s)) for s in STEP_TIMESCALES), progress, horizon_known]


def tensor_features(iteration: Tensor, total_steps: Tensor, tensor_size, shared=None) -> List[Tensor]:
    """Builds the tensor features of one parameter tensor (or of several).

    Args:
        iteration: float32 scalar, the 1-based step count.
        total_steps: float32 scalar, the training horizon in steps, or 0 when
            it is unknown.
        tensor_size: Python int, the number of elements of the parameter;
            or a list of `V` of them, one per tensor.
        shared: None, or `step_features(iteration, total_steps)` computed
            already (the tensors of a step share them).

    Returns:
        A list of `len(TENSOR_FEATURE_NAMES)` float32 scalars (`[V]`
        vectors for a list of sizes).
    """
    shared = step_features(iteration, total_steps) if shared is None else list(shared)
    if isinstance(tensor_size, int):
        return [*shared, ops.convert_to_tensor(math.log10(max(tensor_size, 1)), "float32")]
    log_sizes = np.asarray([math.log10(max(n, 1)) for n in tensor_size], np.float32)
    return [*(ops.broadcast_to(c, log_sizes.shape) for c in shared), ops.convert_to_tensor(log_sizes)]


# Per-tensor context: the input of the per-tensor networks of the recurrent
# architectures (`layers/ffn_lstm.py`, `layers/hyper_lstm.py`). Networks
# without per-tensor state (the per-parameter MLP) never build it.

# Element features summarised over the whole tensor by their mean and RMS.
# These three are Adam-normalised, so their summaries are scale-free.
SUMMARIZED_FEATURE_NAMES = ELEMENT_FEATURE_NAMES[: 1 + len(MOMENTUM_DECAYS)]
SUMMARY_FEATURE_NAMES = tuple(
    f"{name}_{statistic}" for name in SUMMARIZED_FEATURE_NAMES for statistic in ("mean", "rms")
)
# Exponential moving averages of the training loss that the loss features
# compare the current loss with (fast, slow).
LOSS_AVERAGE_DECAYS = (0.9, 0.99)
LOSS_STATISTICS_SIZE = len(LOSS_AVERAGE_DECAYS) + 1
LOSS_FEATURE_NAMES = (
    "loss_known",
    *(f"loss_change_vs_average_{_decay_label(d)}" for d in LOSS_AVERAGE_DECAYS),
)
CONTEXT_FEATURE_NAMES = SUMMARY_FEATURE_NAMES + TENSOR_FEATURE_NAMES + LOSS_FEATURE_NAMES
NUM_CONTEXT_FEATURES = len(CONTEXT_FEATURE_NAMES)
# Keeps the relative loss change finite when the loss average is 0.
LOSS_EPSILON = 1e-12


def summary_features(element_columns: Sequence[Tensor]) -> List[Tensor]:
    """Mean and RMS over the tensor of the `SUMMARIZED_FEATURE_NAMES` columns.

    Args:
        element_columns: the `SUMMARIZED_FEATURE_NAMES` columns of
            `element_features`, in that order (or a list that starts with
            them).

    Returns:
        A list of `len(SUMMARY_FEATURE_NAMES)` float32 scalars.
    """
    summaries = []
    for column in element_columns[: len(SUMMARIZED_FEATURE_NAMES)]:
        summaries.append(ops.mean(column))
        summaries.append(ops.sqrt(ops.mean(ops.square(column))))
    return summaries


def loss_features(loss: Tensor, loss_known: Tensor, loss_statistics: Tensor) -> Tuple[List[Tensor], Tensor]:
    """Features of the training loss, relative to its own recent history.

    The loss enters only through `(loss - average) / |average|`, so a loss
    multiplied by a constant (a replica count, a loss weight) gives the same
    features. A step without a loss (`loss_known` = 0) sees zeros and leaves
    the statistics unchanged.

    Args:
        loss: float32 scalar, the training loss of the batch whose gradient
            this step applies (any value when `loss_known` is 0).
        loss_known: float32 scalar, 1 if `loss` is given, else 0.
        loss_statistics: float32 `[..., LOSS_STATISTICS_SIZE]`: the loss EMAs
            at `LOSS_AVERAGE_DECAYS` (zero-initialised, not bias-corrected)
            and the number of losses seen; leading axes (one row per tensor)
            are batched over.

    Returns:
        `(columns, new_loss_statistics)`: a list of
        `len(LOSS_FEATURE_NAMES)` float32 tensors of shape `[...]` (scalars
        for one tensor's statistics) and the updated statistics.
    """
    loss_known = ops.cast(loss_known, "float32")
    # A non-finite loss counts as unknown: it must not poison the averages.
    loss = ops.cast(loss, "float32")
    loss_known = loss_known * ops.cast(ops.isfinite(loss), "float32")
    loss = ops.where(loss_known > 0, loss, 0.0)
    count = loss_statistics[..., -1]
    seen_before = ops.cast(count > 0, "float32") * loss_known
    columns = [ops.broadcast_to(loss_known, ops.shape(count))]
    averages = []
    for i, decay in enumerate(LOSS_AVERAGE_DECAYS):
        average = loss_statistics[..., i]
        corrected = average / ops.maximum(1.0 - decay**count, LOSS_EPSILON)
        change = (loss - corrected) / (ops.abs(corrected) + LOSS_EPSILON)
        columns.append(seen_before * ops.tanh(change))
        averages.append(average + loss_known * (1.0 - decay) * (loss - average))
    new_statistics = ops.stack([*averages, count + loss_known], axis=-1)
    return columns, new_statistics


# Per-tensor signals of the step-size controller (`layers/adaptive_mlp.py`):
# the cosine between this step's gradient and the Adam-like directions of
# the momenta *before* it was folded in (positive while steps keep going the
# same way, negative when they overshoot), and the gradient's mean square.
ALIGNMENT_FEATURE_NAMES = (
    *(f"alignment_{name}" for name in momentum_slot_names()),
    "gradient_mean_square",
)
# Keeps the alignment's denominator positive for all-zero tensors.
ALIGNMENT_EPSILON = 1e-30
ALIGNMENT_RELATIVE_FLOOR = 1e-6
MAX_MEAN_SQUARE = 1e30
# Tensors with more elements are measured on an evenly strided sample of
# about this many: the signals are statistics, and a reduction over every
# element would cost more than the rest of the step.
ALIGNMENT_SAMPLE_SIZE = 4096


def _next_prime(n):
    n = max(n, 2)
    while any(n % d == 0 for d in range(2, math.isqrt(n) + 1)):
        n += 1
    return n


def alignment_sample_stride(num_elements: int) -> int:
    """The stride of the sample `alignment_features` measures: 1 for up to
    `ALIGNMENT_SAMPLE_SIZE` elements, else the smallest prime giving at most
    that many (a prime, so the sample does not alias with the tensor's
    power-of-two dimensions)."""
    if num_elements <= ALIGNMENT_SAMPLE_SIZE:
        return 1
    return _next_prime(-(-num_elements // ALIGNMENT_SAMPLE_SIZE))


def alignment_features(
    gradient: Tensor, momenta: Sequence[Tensor], second_moment: Tensor, inverse: Optional[Tensor] = None
) -> List[Tensor]:
    """Per-tensor alignment signals of one parameter tensor.

    Measured over every `alignment_sample_stride`-th element of the
    flattened tensor (all of them for tensors of up to
    `ALIGNMENT_SAMPLE_SIZE` elements). They read the moments *after* the
    step's update and recover the previous momenta from them,
    `(momentum - (1 - decay) * gradient) / decay`, so that a caller writing
    the new moments in place needs no copy of the old ones.

    Args:
        gradient: float32 tensor of shape `S`, this step's gradient.
        momenta: tuple of float32 tensors of shape `S`, one per
            `MOMENTUM_DECAYS` entry, with `gradient` folded in.
        second_moment: float32 tensor of shape `S`, with `gradient` folded in.
        inverse: None, or `inverse_denominator(second_moment)` computed
            already (see `alignment_sums`).

    Returns:
        A list of `len(ALIGNMENT_FEATURE_NAMES)` float32 scalars: for each
        momentum the cosine in `[-1, 1]` between `gradient` and the previous
        momentum divided by `sqrt(second_moment) + EPSILON` (0 while that is
        zero or negligible next to the gradient, and 0 if a sum overflows),
        then the mean of `gradient ** 2` (at most `MAX_MEAN_SQUARE`).
    """
    size = alignment_sample_count(math.prod(gradient.shape))
    return alignment_from_sums(alignment_sums(gradient, momenta, second_moment, inverse=inverse), size)


def alignment_sample_count(num_elements: int) -> float:
    """How many elements `alignment_sums` reads of a tensor of
    `num_elements` (at least 1): the mean square's denominator."""
    stride = alignment_sample_stride(num_elements)
    return float(max(-(-num_elements // stride), 1))


def alignment_sums(gradient: Tensor, momenta: Sequence[Tensor], second_moment: Tensor, stacked=False, inverse=None):
    """The reductions over one tensor that `alignment_features` reads.

    Arguments as for `alignment_features`. Returns a list of float32
    scalars: the sum of the squared (sampled) gradient, the sum of the
    squared Adam-normalised gradient, then for each momentum the sum of the
    gradient times its previous normalised momentum and the sum of that
    direction's square. With `stacked`, the same sums as one vector from
    one reduction of the stacked products (fewer kernels; another
    summation order, so not bit-equal). `inverse`: None, or
    `inverse_denominator(second_moment)` computed already (used where the
    sample is the whole tensor).
    """
    gradient = ops.convert_to_tensor(gradient, "float32")
    stride = alignment_sample_stride(math.prod(gradient.shape))

    def sample(x):
        x = ops.reshape(x, [-1])
        return x if stride == 1 else x[::stride]

    gradient = sample(gradient)
    # Reused only where the sample is the whole tensor: sampling a shared
    # whole-tensor inverse would make XLA write it out in full (the 1.07M
    # MLP's JAX step 1.25x Adam's against 1.20x).
    if inverse is not None and stride == 1:
        inverse = sample(inverse)
    else:
        inverse = inverse_denominator(sample(second_moment))
    products = [ops.square(gradient), ops.square(gradient * inverse)]
    for momentum, decay in zip(momenta, MOMENTUM_DECAYS):
        previous = (sample(momentum) - gradient * (1.0 - decay)) / decay
        direction = previous * inverse
        products += [gradient * direction, ops.square(direction)]
    if stacked:
        return ops.sum(ops.stack(products), axis=-1)
    return [ops.sum(p) for p in products]


def alignment_from_sums(sums: Sequence[Tensor], size) -> List[Tensor]:
    """`alignment_features` from `alignment_sums`' entries (a list of
    scalars, or of `[V]` vectors for `V` tensors at once) and the tensors'
    `alignment_sample_count` `size` (a number, or `[V]`)."""
    gradient_square_sum, normalized_square_sum, *products = sums
    # A previous direction smaller than this (relative to the gradient's
    # own) is rounding noise of the recovery, e.g. on the first step.
    floor = ALIGNMENT_RELATIVE_FLOOR * normalized_square_sum
    columns = []
    for product, direction_square_sum in zip(products[::2], products[1::2]):
        cosine = product * ops.rsqrt(gradient_square_sum * (direction_square_sum + floor) + ALIGNMENT_EPSILON)
        # An overflowing sum (inf / inf) says nothing about the direction.
        columns.append(ops.where(ops.isfinite(cosine), ops.clip(cosine, -1.0, 1.0), 0.0))
    # Capped so that running averages of it stay finite (a finite gradient
    # can still overflow the sum).
    columns.append(ops.minimum(gradient_square_sum / size, MAX_MEAN_SQUARE))
    return columns
