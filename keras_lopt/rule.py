"""The learned update rule: pure functions shared by the optimizer and meta/.

`step` turns one parameter tensor's gradient and state into an update and a
new state. `LearnedOptimizer.update_step` and the meta-training unroll both
call it unchanged, so what is meta-trained is exactly what users run.

    update = learning_rate * direction * exp(magnitude_scale * magnitude)
    new_parameter = parameter - update

where `(direction, magnitude)` is the network's output for each element.
"""

import functools
import math
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

from keras import ops

from keras_lopt import backend, features
from keras_lopt.features import Tensor


class RuleState(NamedTuple):
    """Optimizer state of one parameter tensor (all float32).

    `momenta` and `second_moment` have the parameter's shape. `tensor_state`
    is empty for networks without per-tensor state (the per-parameter MLP);
    for recurrent networks it is `(loss_statistics [LOSS_STATISTICS_SIZE],
    *network_state)`, a few floats per tensor (`tensor_state_shapes`).
    """

    momenta: Tuple[Any, ...]
    second_moment: Any
    tensor_state: Tuple[Any, ...] = ()


# A network layer of `keras_lopt.layers`, or a plain callable
# `columns -> (direction, magnitude)` with a `magnitude_scale` (see `step`).
Network = Any
Scalar = Union[Tensor, float, int]


def _network_state_names(network):
    # Plain callables `columns -> (direction, magnitude)` have no state.
    return tuple(getattr(network, "state_names", ()))


def has_tensor_state(network: Optional[Network]) -> bool:
    """Whether `network` keeps per-tensor state (and is called with a context)."""
    return bool(_network_state_names(network))


def reads_loss(network: Optional[Network]) -> bool:
    """Whether `step` feeds `network` the training loss."""
    return bool(getattr(network, "reads_loss", False))


def state_slot_names(network: Optional[Network] = None) -> Tuple[str, ...]:
    """Names of the state slots, in the order `flatten_state` uses.

    The per-parameter slots come first; then `loss_statistics` for a network
    that reads the loss, and the network's own per-tensor state names.
    """
    names = (*features.momentum_slot_names(), "second_moment")
    if reads_loss(network):
        names += ("loss_statistics",)
    return names + _network_state_names(network)


def tensor_state_shapes(network: Optional[Network] = None) -> Tuple[Tuple[int, ...], ...]:
    """Shapes of the per-tensor slots (after the per-parameter ones)."""
    shapes = ((features.LOSS_STATISTICS_SIZE,),) if reads_loss(network) else ()
    if has_tensor_state(network):
        shapes += tuple(tuple(s) for s in network.state_shapes)
    return shapes


def init_state(parameter: Tensor, network: Optional[Network] = None) -> RuleState:
    """Zero state for a parameter tensor of any shape."""
    zeros = ops.zeros_like(parameter, dtype="float32")
    return RuleState(
        momenta=tuple(zeros for _ in features.MOMENTUM_DECAYS),
        second_moment=zeros,
        tensor_state=tuple(ops.zeros(shape, "float32") for shape in tensor_state_shapes(network)),
    )


def flatten_state(state: RuleState) -> Tuple[Tensor, ...]:
    """RuleState -> tuple of tensors, in `state_slot_names()` order."""
    return (*state.momenta, state.second_moment, *state.tensor_state)


def unflatten_state(slots: Sequence[Tensor]) -> RuleState:
    """Inverse of `flatten_state`."""
    count = len(features.MOMENTUM_DECAYS)
    return RuleState(
        momenta=tuple(slots[:count]),
        second_moment=slots[count],
        tensor_state=tuple(slots[count + 1 :]),
    )


def update_moments(state: RuleState, gradient: Tensor) -> RuleState:
    """`state` with this step's gradient folded into its moments.

    The per-tensor state is left as it is (`step_with_moments` updates it).

    Args:
        state: `RuleState` of a parameter tensor of shape `S`.
        gradient: float32 tensor of shape `S` (or `tf.IndexedSlices`).

    Returns:
        The new `RuleState`.
    """
    gradient = backend.dense(gradient)
    momenta = tuple(m + (gradient - m) * (1.0 - decay) for m, decay in zip(state.momenta, features.MOMENTUM_DECAYS))
    second_moment = state.second_moment + (ops.square(gradient) - state.second_moment) * (
        1.0 - features.SECOND_MOMENT_DECAY
    )
    return RuleState(
        momenta=momenta,
        second_moment=second_moment,
        tensor_state=state.tensor_state,
    )


def step(
    network: Network,
    state: RuleState,
    gradient: Tensor,
    parameter: Tensor,
    iteration: Scalar,
    total_steps: Scalar,
    learning_rate: Scalar,
    loss: Scalar = 0.0,
    loss_known: Scalar = 0.0,
    feature_names: Sequence[str] = features.FEATURE_NAMES,
) -> Tuple[Tensor, RuleState]:
    """One application of the learned rule to one parameter tensor.

    Args:
        network: callable `columns -> (direction, magnitude)` with a float
            attribute `magnitude_scale`; `columns` is the list of
            `feature_names` feature tensors (scalars for tensor features)
            and the outputs have the parameter's shape. A network
            with per-tensor state (non-empty `state_names`) is called as
            `(columns, context [C], network_state) -> (direction, magnitude,
            new_network_state)`, `context` holding its
            `context_feature_names` (per-tensor summaries, tensor, loss or
            alignment features); `magnitude` may be a per-tensor scalar.
        state: `RuleState` of this parameter.
        gradient: float32 tensor of shape `S` (or `tf.IndexedSlices`).
        parameter: float32 tensor of shape `S`.
        iteration: scalar, the 1-based step count.
        total_steps: scalar, the training horizon in steps; 0 if unknown.
        learning_rate: scalar, `lr` in the formula above.
        loss: scalar, the training loss of the batch `gradient` comes from.
            Only networks with `reads_loss` read it.
        loss_known: scalar, 1 if `loss` is given, 0 if not.
        feature_names: the features the network reads, one of
            `features.FEATURE_SETS` (a preset's `feature_names`); only these
            are computed.

    Returns:
        `(update, new_state)`: the float32 update of shape `S` to subtract
        from the parameter, and the new `RuleState`.
    """
    return step_with_moments(
        network,
        update_moments(state, gradient),
        gradient,
        parameter,
        iteration,
        total_steps,
        learning_rate,
        loss=loss,
        loss_known=loss_known,
        feature_names=feature_names,
    )


def step_with_moments(
    network: Network,
    state: RuleState,
    gradient: Tensor,
    parameter: Tensor,
    iteration: Scalar,
    total_steps: Scalar,
    learning_rate: Scalar,
    loss: Scalar = 0.0,
    loss_known: Scalar = 0.0,
    feature_names: Sequence[str] = features.FEATURE_NAMES,
) -> Tuple[Tensor, RuleState]:
    """`step` for a `state` whose moments already hold `gradient`.

    `step(network, state, g, ...)` is
    `step_with_moments(network, update_moments(state, g), g, ...)`. Given
    apart so that a caller can decide what to store as the new moments (for
    example keep the old ones when `g` is not finite) before the network
    reads them. Arguments and return value as in `step`; the returned
    state's moments are `state`'s.
    """
    gradient = backend.dense(gradient)
    iteration = ops.cast(iteration, "float32")
    total_steps = ops.cast(total_steps, "float32")
    learning_rate = ops.cast(learning_rate, "float32")
    momenta, second_moment = state.momenta, state.second_moment
    columns, context_columns = _columns(network, state, gradient, parameter, iteration, total_steps, feature_names)
    tensor_state = ()
    if has_tensor_state(network):
        network_state = state.tensor_state
        if reads_loss(network):
            loss_statistics, *network_state = network_state
            loss_columns, loss_statistics = features.loss_features(loss, loss_known, loss_statistics)
            context_columns.update(zip(features.LOSS_FEATURE_NAMES, loss_columns))
            tensor_state = (loss_statistics,)
        context = ops.stack([context_columns[n] for n in network.context_feature_names])
        direction, magnitude, network_state = network(columns, context, tuple(network_state))
        tensor_state += tuple(network_state)
    else:
        direction, magnitude = network(columns)
    update = learning_rate * direction * ops.exp(network.magnitude_scale * magnitude)
    return update, RuleState(momenta=momenta, second_moment=second_moment, tensor_state=tensor_state)


def step_many_with_moments(
    network: Network,
    states: Sequence[RuleState],
    gradients: Sequence[Tensor],
    parameters: Sequence[Tensor],
    iteration: Scalar,
    total_steps: Scalar,
    learning_rates: Sequence[Scalar],
    loss: Scalar = 0.0,
    loss_known: Scalar = 0.0,
    feature_names: Sequence[str] = features.FEATURE_NAMES,
    per_tensor=None,
) -> Tuple[Tuple[Tensor, RuleState], ...]:
    """`step_with_moments` of `V` tensors at once, for a network whose
    per-tensor state is stepped for a batch of tensors in one call
    (`network.batches_control`: `control` and `direction`).

    The same rule: each tensor's update and new state are those of
    `step_with_moments` (up to the rounding of the controller's matrix
    products), but the per-tensor work (a few hundred flops on scalars) is
    one set of operations on `[V, ...]` arrays instead of `V` sets on
    scalars, which a compiler turns into far fewer kernels.

    Args:
        network: as for `step`, with `batches_control`.
        states, gradients, parameters, learning_rates: one entry per tensor,
            as `step_with_moments`' `state`, `gradient`, `parameter` and
            `learning_rate`.
        iteration, total_steps, loss, loss_known, feature_names: as for
            `step`, shared by the tensors.
        per_tensor: None, or `per_tensor(name, function, shape)`: how to
            run a per-tensor part (`name` "inputs": features and alignment
            sums; "update": the direction times the step) for a tensor of
            `shape`: `function` itself (inline) or a callable that computes
            the same, e.g. a program traced once per signature. The part is
            called with tensors only. None: every part inline.

    Returns:
        A tuple of `(update, new_state)` per tensor.
    """
    if not getattr(network, "batches_control", False):
        raise ValueError(f"`network` must step a batch of tensors (`batches_control`). Received: {network!r}")
    iteration = ops.cast(iteration, "float32")
    total_steps = ops.cast(total_steps, "float32")
    sizes = [math.prod(p.shape) for p in parameters]
    # What every tensor of the step shares is computed once: fewer
    # operations to trace and compile (each `tanh`, `sqrt` or `exp` that
    # TensorFlow lowers to XLA costs milliseconds of compilation).
    shared = {
        "step": features.step_features(iteration, total_steps),
        "corrections": features.bias_corrections(iteration),
    }
    batched = dict(
        zip(
            features.TENSOR_FEATURE_NAMES,
            features.tensor_features(iteration, total_steps, sizes, shared=shared["step"]),
        )
    )
    reads_alignment = any(n in features.ALIGNMENT_FEATURE_NAMES for n in network.context_feature_names)
    per_tensor = per_tensor or (lambda name, function, shape: function)
    inputs = functools.partial(_tensor_inputs, network.layer, tuple(feature_names), reads_alignment)
    columns, contexts, network_states, sums = [], [], [], []
    for state, gradient, parameter in zip(states, gradients, parameters):
        element_columns, context_columns, tensor_sums = per_tensor("inputs", inputs, tuple(parameter.shape))(
            state, backend.dense(gradient), parameter, iteration, total_steps, shared
        )
        columns.append(element_columns)
        contexts.append(context_columns)
        network_states.append(state.tensor_state)
        if reads_alignment:
            sums.append(tensor_sums)
    if sums:
        # One reduction per tensor, the arithmetic on the sums batched.
        stacked = ops.stack(sums, axis=-1)
        signals = features.alignment_from_sums(
            ops.unstack(stacked, num=stacked.shape[0]),
            ops.convert_to_tensor([features.alignment_sample_count(n) for n in sizes]),
        )
        batched.update(zip(features.ALIGNMENT_FEATURE_NAMES, signals))
    if reads_loss(network):
        loss_columns, loss_statistics = features.loss_features(
            loss, loss_known, ops.stack([s[0] for s in network_states])
        )
        batched.update(zip(features.LOSS_FEATURE_NAMES, loss_columns))
        network_states = [s[1:] for s in network_states]
    (_,) = {len(s) for s in network_states}  # One per-tensor state array.
    context = ops.stack(
        [batched[n] if n in batched else ops.stack([c[n] for c in contexts]) for n in network.context_feature_names],
        axis=-1,
    )
    magnitudes, new_network_states = network.control(context, ops.stack([s[0] for s in network_states]))
    multipliers = ops.exp(network.magnitude_scale * magnitudes)
    update_part = functools.partial(_tensor_update, network.layer, network.zeros)
    results = []
    for i, (state, learning_rate) in enumerate(zip(states, learning_rates)):
        learning_rate = ops.cast(learning_rate, "float32")
        update_of = per_tensor("update", update_part, tuple(parameters[i].shape))
        if update_of is update_part:
            # Inline: the bound network splits its weights into scalars once
            # for all tensors, where `_tensor_update` splits them per call.
            update = learning_rate * network.direction(columns[i]) * multipliers[i]
        else:
            update = update_of(network.weights, columns[i], learning_rate, multipliers[i])
        tensor_state = (loss_statistics[i],) if reads_loss(network) else ()
        tensor_state += (new_network_states[i],)
        results.append(
            (update, RuleState(momenta=state.momenta, second_moment=state.second_moment, tensor_state=tensor_state))
        )
    return tuple(results)


def _tensor_inputs(layer, feature_names, reads_alignment, state, gradient, parameter, iteration, total_steps, shared):
    """`(columns, context_columns, sums)` of one tensor for
    `step_many_with_moments` (`sums`: its `features.alignment_sums`, None
    unless `reads_alignment`). Reads no weights of the network `layer`."""
    inverse = features.inverse_denominator(state.second_moment)
    element_columns, context_columns = _columns(
        layer,
        state,
        gradient,
        parameter,
        iteration,
        total_steps,
        feature_names,
        alignment=False,
        shared=dict(shared, inverse=inverse),
    )
    sums = None
    if reads_alignment:
        sums = features.alignment_sums(gradient, state.momenta, state.second_moment, stacked=True, inverse=inverse)
    return element_columns, context_columns, sums


def _tensor_update(layer, zeros, weights, columns, learning_rate, multiplier):
    """One tensor's update in `step_many_with_moments`: its direction
    (`layer.direction` with `weights`) times its learning rate and step
    size multiplier."""
    return learning_rate * layer.direction(weights, columns, zeros, layer.split_direction(weights)) * multiplier


def _columns(network, state, gradient, parameter, iteration, total_steps, feature_names, alignment=True, shared=None):
    """`(columns, context_columns)`: the `feature_names` columns of one
    tensor, and by name the per-tensor context a network with tensor state
    reads (tensor, summary and, if `alignment`, alignment features; not the
    loss's). `shared`: None, or a dict of what is computed already:
    `step` (`features.step_features`), `corrections`
    (`features.bias_corrections`) and `inverse` (this tensor's
    `features.inverse_denominator`)."""
    shared = shared or {}
    momenta, second_moment = state.momenta, state.second_moment
    # One `1 / (sqrt(v) + eps)` for the element features and the alignment.
    inverse = shared.get("inverse")
    if inverse is None:
        inverse = features.inverse_denominator(second_moment)
    features.feature_set_of(feature_names)
    element_names = [n for n in feature_names if n in features.ELEMENT_FEATURE_NAMES]
    element_columns = features.element_features(
        gradient,
        parameter,
        momenta,
        second_moment,
        iteration,
        element_names,
        corrections=shared.get("corrections"),
        inverse=inverse,
    )
    tensor_columns = features.tensor_features(
        iteration, total_steps, math.prod(parameter.shape), shared=shared.get("step")
    )
    by_name = {
        **dict(zip(element_names, element_columns)),
        **dict(zip(features.TENSOR_FEATURE_NAMES, tensor_columns)),
    }
    columns = [by_name[n] for n in feature_names]
    context_columns = {}
    if has_tensor_state(network):
        context_columns = dict(zip(features.TENSOR_FEATURE_NAMES, tensor_columns))
        context_names = network.context_feature_names
        if any(n in features.SUMMARY_FEATURE_NAMES for n in context_names):
            summarized = [by_name[n] for n in features.SUMMARIZED_FEATURE_NAMES]
            context_columns.update(zip(features.SUMMARY_FEATURE_NAMES, features.summary_features(summarized)))
        if alignment and any(n in features.ALIGNMENT_FEATURE_NAMES for n in context_names):
            signals = features.alignment_features(gradient, momenta, second_moment, inverse=inverse)
            context_columns.update(zip(features.ALIGNMENT_FEATURE_NAMES, signals))
    return columns, context_columns
