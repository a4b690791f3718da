"""Per-parameter MLP with a learned per-tensor step-size controller."""

import keras
import numpy as np
from keras import ops

from keras_lopt import features, validation
from keras_lopt.layers.mlp import (
    ACTIVATIONS,
    PresetNetworkLayer,
    add_dense_weights,
    elementwise_mlp,
    exact_zeros,
    matvec_transposed,
    split_weights,
)

# Decay of the controller's running averages of its alignment signals and
# of the gradient's mean square.
SIGNAL_AVERAGE_DECAY = 0.9
# Bound on |log(gradient mean square / its average)| as a controller input.
MAX_LOG_GRADIENT_RATIO = 3.0
# The per-tensor state vector: the log step size, then the running averages.
STATE_FIELDS = (
    "log_step",
    *(f"average_{name}" for name in features.ALIGNMENT_FEATURE_NAMES),
)
# What the controller reads, in order: this step's alignments, their
# running averages, the log change of the gradient's mean square, the
# current log step size, then the tensor features.
CONTROLLER_INPUT_NAMES = (
    *features.ALIGNMENT_FEATURE_NAMES[:-1],
    *(f"average_{n}" for n in features.ALIGNMENT_FEATURE_NAMES[:-1]),
    "log_gradient_mean_square_ratio",
    "log_step",
    *features.TENSOR_FEATURE_NAMES,
)
# `AdaptiveLossMLPNetwork`'s controller also reads the training loss's
# trend (`features.loss_features`: whether the loss is known, and how it
# compares with its running averages).
LOSS_CONTROLLER_INPUT_NAMES = CONTROLLER_INPUT_NAMES + features.LOSS_FEATURE_NAMES


@keras.saving.register_keras_serializable(package="keras_lopt")
class AdaptiveMLPNetwork(PresetNetworkLayer):
    """A per-parameter direction and a learned per-tensor step size.

    Per element, an MLP on the features (`F` columns, scalars folded into its
    first bias, as `MLPNetwork`) gives the direction `d`. Per tensor, a
    small controller MLP keeps a log step size `s` in its state and moves it
    every step by at most `max_step_change`:

        s <- clip(s + max_step_change * tanh(controller(inputs)), *log_step_range)
        update = learning_rate * d * exp(s)

    With `odd_direction`, the direction is the odd part of the MLP in the
    element features `x` (the tensor features `t` kept):
    `d = (mlp(x, t) - mlp(-x, t)) / 2`. It is then zero where the gradient,
    momenta (and, with the full feature set, the parameter) are, whatever
    the weights: no weight can add an update independent of the gradient
    (a bias, or a hidden unit reading only tensor features), which
    meta-training otherwise introduces as soon as it moves those weights.
    An MLP that is already odd (e.g. `relu(x) - relu(-x)`) computes the same
    either way; the per-element cost doubles.

    The controller reads `CONTROLLER_INPUT_NAMES`: how this step's gradient
    aligns with the previous Adam-like directions (and running averages of
    that), how its mean square compares with its running average, `s`
    itself, and the tensor features (progress, tensor size). So the step
    size of every tensor grows while steps agree and shrinks when they
    overshoot or the gradient spikes, across orders of magnitude, instead of
    being a fixed multiple of the learning rate.

    The per-element cost is the direction MLP only; the controller costs a
    few hundred flops per tensor, and its signals one reduction pass.

    Weights, in order: `kernel_0 [F, h0]`, `bias_0`, ..., `kernel_n [h, 1]`,
    `bias_n [1]` (direction MLP), then `controller_kernel_0 [I, K]`,
    `controller_bias_0 [K]`, `controller_kernel_1 [K, 1]`,
    `controller_bias_1 [1]`.

    Args:
        num_features: `F`, the number of per-element input features.
        hidden_sizes: widths of the direction MLP's hidden layers.
        activation: `"relu"` or `"tanh"`, for both MLPs.
        controller_hidden_size: `K`, the controller's hidden width.
        max_step_change: the largest change of `s` in one step.
        log_step_range: `(low, high)`, the bounds of `s`.
        odd_direction: take the odd part of the direction MLP (above).
    """

    kind = "adaptive_mlp"
    state_names = ("step_control",)
    state_shapes = ((len(STATE_FIELDS),),)
    context_feature_names = features.ALIGNMENT_FEATURE_NAMES + features.TENSOR_FEATURE_NAMES
    controller_input_names = CONTROLLER_INPUT_NAMES
    reads_loss = False
    # `update = learning_rate * direction * exp(magnitude_scale * s)`.
    magnitude_scale = 1.0
    max_log_multiplier = None
    config_keys = (
        "hidden_sizes",
        "activation",
        "controller_hidden_size",
        "max_step_change",
        "log_step_range",
    )

    def __init__(
        self,
        num_features,
        hidden_sizes=(8,),
        activation="relu",
        controller_hidden_size=8,
        max_step_change=0.05,
        log_step_range=(-7.0, 5.0),
        num_context_features=None,
        odd_direction=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        validation.positive_int("num_features", num_features)
        hidden_sizes = validation.positive_ints("hidden_sizes", hidden_sizes)
        validation.one_of("activation", activation, sorted(ACTIVATIONS))
        validation.positive_int("controller_hidden_size", controller_hidden_size)
        validation.positive_number("max_step_change", max_step_change)
        low, high = validation.interval_around_zero("log_step_range", log_step_range)
        if num_context_features is not None and num_context_features != len(self.context_feature_names):
            raise ValueError(
                f"`num_context_features` must be {len(self.context_feature_names)} "
                f"for {type(self).__name__}. "
                f"Received: num_context_features={num_context_features!r}"
            )
        self.num_features = num_features
        self.num_context_features = len(self.context_feature_names)
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.controller_hidden_size = controller_hidden_size
        self.max_step_change = float(max_step_change)
        self.log_step_range = (low, high)
        validation.require(isinstance(odd_direction, bool), "odd_direction", odd_direction, "True or False")
        if odd_direction and num_features <= len(features.TENSOR_FEATURE_NAMES):
            raise ValueError(
                f"`odd_direction` needs element features before the {len(features.TENSOR_FEATURE_NAMES)} tensor "
                f"features. Received: num_features={num_features}"
            )
        self.odd_direction = odd_direction
        sizes = (num_features, *hidden_sizes, 1)
        add_dense_weights(self, sizes)
        self._num_direction_weights = 2 * (len(sizes) - 1)
        add_dense_weights(self, (len(self.controller_input_names), controller_hidden_size, 1), prefix="controller_")
        self.built = True

    def weight_names(self):
        """Names of `self.weights`, in order."""
        return [w.name for w in self.weights]

    def controller_inputs(self, context, state):
        """`([..., I] controller inputs, new running averages)` of one tensor
        (`context [C]`, `state [S]`) or of a batch of them (`[V, C]`,
        `[V, S]`).

        The inputs are `controller_input_names`; context features after the
        alignments and the tensor features (the loss features of
        `AdaptiveLossMLPNetwork`) are passed through as the last inputs. The
        running averages are a list of `[...]` tensors."""
        count = len(features.ALIGNMENT_FEATURE_NAMES)
        if len(context.shape) == 1:
            signals = ops.unstack(context[:count], num=count)
            num_rest = len(self.context_feature_names) - count
            rest = ops.unstack(context[count:], num=num_rest)
            log_step = state[0]
            averages = ops.unstack(state[1:], num=count)
        else:
            signals = [context[:, i] for i in range(count)]
            rest = [context[:, i] for i in range(count, len(self.context_feature_names))]
            log_step = state[:, 0]
            averages = [state[:, 1 + i] for i in range(count)]
        new_averages = [
            average + (signal - average) * (1.0 - SIGNAL_AVERAGE_DECAY)
            for signal, average in zip(signals[:-1], averages[:-1])
        ]
        square, square_average = signals[-1], averages[-1]
        seen = square_average > 0.0
        # The first gradient starts the average: no ratio to report yet.
        new_averages.append(
            ops.where(
                seen,
                square_average + (square - square_average) * (1.0 - SIGNAL_AVERAGE_DECAY),
                square,
            )
        )
        ratio = ops.where(
            seen,
            ops.log((square + features.ALIGNMENT_EPSILON) / (square_average + features.ALIGNMENT_EPSILON)),
            0.0,
        )
        ratio = ops.clip(ratio, -MAX_LOG_GRADIENT_RATIO, MAX_LOG_GRADIENT_RATIO)
        inputs = ops.stack([*signals[:-1], *new_averages[:-1], ratio, log_step, *rest], axis=-1)
        return inputs, new_averages

    def control(self, weights, context, state):
        """The controller of a batch of tensors: one matrix product for all.

        `forward`'s per-tensor step size, for `V` tensors at once (the same
        numbers up to the rounding of the contraction).

        Args:
            weights: list of float32 tensors shaped like `self.weights`.
            context: float32 `[V, C]`, each tensor's `context_feature_names`.
            state: float32 `[V, len(STATE_FIELDS)]`, each tensor's
                `step_control`.

        Returns:
            `(log_step [V], new_state [V, len(STATE_FIELDS)])`.
        """
        controller = weights[self._num_direction_weights :]
        inputs, new_averages = self.controller_inputs(context, state)
        hidden = ACTIVATIONS[self.activation](ops.matmul(inputs, controller[0]) + controller[1])
        change = ops.matmul(hidden, controller[2])[:, 0] + controller[3][0]
        log_step = self._moved_log_step(state[:, 0], change)
        return log_step, ops.stack([log_step, *new_averages], axis=-1)

    def split_direction(self, weights):
        """`split_weights` of the direction MLP's weights, for `direction`'s
        `split` (several tensors' directions with the same weights)."""
        return split_weights(weights[: self._num_direction_weights])

    def direction(self, weights, columns, zeros=None, split=None):
        """The direction MLP alone (`forward`'s `direction`); `split`: None,
        or `split_direction(weights)`."""
        direction_weights = weights[: self._num_direction_weights]
        (direction,) = elementwise_mlp(direction_weights, columns, self.activation, zeros, split)
        if not self.odd_direction:
            return direction
        # Feature sets list the element features first, the tensor ones last.
        num_element = self.num_features - len(features.TENSOR_FEATURE_NAMES)
        flipped = [-c for c in columns[:num_element]] + list(columns[num_element:])
        (mirrored,) = elementwise_mlp(direction_weights, flipped, self.activation, zeros, split)
        return (direction - mirrored) * 0.5

    def _moved_log_step(self, log_step, change):
        low, high = self.log_step_range
        return ops.clip(log_step + self.max_step_change * ops.tanh(change), low, high)

    def exact_zeros(self, weights):
        """`elementwise_mlp`'s `zeros` of the direction MLP for concrete
        `weights` (arrays shaped like `self.weights`)."""
        return exact_zeros(weights[: self._num_direction_weights : 2])

    def forward(self, weights, columns, context, state, zeros=None):
        """Applies the network with explicit weights.

        Args:
            weights: list of float32 tensors shaped like `self.weights`.
            columns: list of `F` float32 feature columns (scalars for tensor
                features), as for `MLPNetwork.forward`.
            context: float32 `[C]`, `context_feature_names` of the tensor.
            state: `(step_control [len(STATE_FIELDS)],)`.
            zeros: None, or `self.exact_zeros` of the values `weights` hold:
                the direction MLP leaves out the terms of exactly zero
                weights.

        Returns:
            `(direction, log_step, new_state)`: the direction (the columns'
            shape), the new log step size `s` (a scalar) and the new state.
        """
        if len(columns) != self.num_features:
            raise ValueError(f"Expected {self.num_features} feature columns. Received: {len(columns)} columns")
        controller = weights[self._num_direction_weights :]
        (step_control,) = state
        inputs, new_averages = self.controller_inputs(context, step_control)
        hidden = ACTIVATIONS[self.activation](matvec_transposed(controller[0], inputs) + controller[1])
        change = matvec_transposed(controller[2], hidden)[0] + controller[3][0]
        log_step = self._moved_log_step(step_control[0], change)
        direction = self.direction(weights, columns, zeros)
        new_state = ops.stack([log_step, *new_averages])
        return direction, log_step, (new_state,)

    def call(self, features_matrix, context, step_control):
        """features `[N, F]`, context `[C]`, state `[4]` ->
        (direction `[N]`, log step `[]`, (step_control `[4]`,))."""
        features_matrix = ops.convert_to_tensor(features_matrix, "float32")
        columns = ops.unstack(features_matrix, num=self.num_features, axis=-1)
        return self.forward(
            [w.value for w in self.weights],
            columns,
            ops.convert_to_tensor(context, "float32"),
            (ops.convert_to_tensor(step_control, "float32"),),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_features": self.num_features,
                "hidden_sizes": list(self.hidden_sizes),
                "activation": self.activation,
                "controller_hidden_size": self.controller_hidden_size,
                "max_step_change": self.max_step_change,
                "log_step_range": list(self.log_step_range),
                "odd_direction": self.odd_direction,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_lopt")
class AdaptiveLossMLPNetwork(AdaptiveMLPNetwork):
    """`AdaptiveMLPNetwork` whose controller also reads the loss trend.

    The controller's inputs are `LOSS_CONTROLLER_INPUT_NAMES`: those of
    `AdaptiveMLPNetwork`, then whether the training loss is known and how it
    compares with its running averages (`features.loss_features`, as the
    LSTM architectures read it). Alignment signals alone cannot tell a noisy
    plateau (weakly anti-aligned gradients, flat loss: keep the step) from an
    overshoot (anti-aligned gradients, rising loss: shrink it); the loss
    trend can. The optimizer passes the loss where Keras gives it (the
    TensorFlow backend's `fit`, `set_loss`); without it `loss_known` is 0
    and the loss inputs are 0.

    Weights as `AdaptiveMLPNetwork`'s, with `controller_kernel_0 [I + 3, K]`.
    `weights_from_adaptive` starts one from an `AdaptiveMLPNetwork` preset
    with zero weights on the loss inputs: the same rule until meta-training
    moves them.
    """

    kind = "adaptive_loss_mlp"
    context_feature_names = AdaptiveMLPNetwork.context_feature_names + features.LOSS_FEATURE_NAMES
    controller_input_names = LOSS_CONTROLLER_INPUT_NAMES
    reads_loss = True

    def weights_from_adaptive(self, source, weights):
        """This network's weights computing what `source` (an
        `AdaptiveMLPNetwork` of the same sizes, with `weights`) computes,
        the loss inputs weighted 0."""
        if type(source) is not AdaptiveMLPNetwork:
            raise ValueError(f"Expected an 'adaptive_mlp' network. Received: a {source.kind!r} network")
        index = self.weight_names().index("controller_kernel_0")
        extra = len(self.controller_input_names) - len(AdaptiveMLPNetwork.controller_input_names)
        expected = [tuple(w.shape) for w in self.weights]
        expected[index] = (expected[index][0] - extra, expected[index][1])
        weights = [np.asarray(w, np.float32) for w in weights]
        got = [w.shape for w in weights]
        if got != expected or source.activation != self.activation:
            raise ValueError(
                f"Expected an 'adaptive_mlp' network with weight shapes {expected} and "
                f"activation={self.activation!r}. Received: {got} and activation={source.activation!r}"
            )
        padded = list(weights)
        padded[index] = np.concatenate([weights[index], np.zeros((extra, weights[index].shape[1]), np.float32)])
        return padded
