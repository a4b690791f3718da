"""A guard that replaces a misbehaving learned step by Adam's step.

A learned rule is only as good as the tasks it was meta-trained on; on an
unfamiliar task it may produce steps far larger (or smaller) than any
sensible optimizer would. `AdamGuard` compares, for every variable and step,
the learned update with the step `keras.optimizers.Adam` would take on the
same gradients, and uses Adam's step for that variable when the learned one
is non-finite or its norm is outside `[min_ratio, max_ratio]` times Adam's.

Adam's step needs no extra state: its first and second moments are the
learned rule's `momentum_0p9` and `second_moment` slots (decays 0.9 and
0.999, the defaults of `keras.optimizers.Adam`). A variable that falls back
on every step therefore trains exactly as with `Adam`.

This is a per-step, per-variable check of the update's size. The loss-guarded
fallback of Prémont-Schwarz et al. ("A Simple Guard for Learned Optimizers",
2022) instead compares losses after the step, which needs an extra loss
evaluation per step that an optimizer inside `model.fit` does not have.
"""

from keras import ops

from keras_lopt import features, validation

# Adam's beta_1 is the decay of the first momentum slot.
ADAM_MOMENTUM_INDEX = 0


class AdamGuard:
    """Falls back to Adam's step where the learned step misbehaves.

    For one variable and step, with `learned` the step the learned update
    takes (new value minus old: the update, up to rounding) and `adam` the
    Adam update on the same gradients (both tensors of the variable's
    shape), the guard keeps the learned step when

        min_ratio * ||adam|| <= ||learned|| <= max_ratio * ||adam||

    (Euclidean norms over the whole tensor) and uses `adam` otherwise,
    including when `learned` has a NaN or inf.

    The default bound is loose on purpose: it catches blow-ups, not a rule
    that legitimately steps further than Adam (the experimental
    `mlp_pes_v2` preset takes steps 5 to 40 times Adam's at the same
    learning rate on a small classifier, occasionally a few hundred times).

    Args:
        max_ratio: largest accepted norm ratio, learned over Adam.
        min_ratio: smallest accepted norm ratio; 0 accepts any small step
            (a rule that anneals its steps late in training is not broken).
        learning_rate: Adam's learning rate, a positive float, or None (the
            default) for the optimizer's own learning rate (schedules
            included), so that the ratio measures the rule's step relative
            to Adam's at the same rate.
    """

    name = "adam"

    def __init__(self, max_ratio=100.0, min_ratio=0.0, learning_rate=None):
        # Read-only: the bounds are baked into traced (XLA) train steps.
        self._max_ratio = validation.positive_number("max_ratio", max_ratio)
        self._min_ratio = validation.non_negative_number("min_ratio", min_ratio)
        if self._min_ratio > self._max_ratio:
            raise ValueError(
                f"`min_ratio` must not exceed `max_ratio`. Received: min_ratio={min_ratio!r}, max_ratio={max_ratio!r}"
            )
        if learning_rate is not None:
            learning_rate = validation.positive_number("learning_rate", learning_rate)
        self._learning_rate = learning_rate

    @property
    def max_ratio(self):
        return self._max_ratio

    @property
    def min_ratio(self):
        return self._min_ratio

    @property
    def learning_rate(self):
        return self._learning_rate

    def __repr__(self):
        return (
            f"AdamGuard(max_ratio={self.max_ratio!r}, "
            f"min_ratio={self.min_ratio!r}, "
            f"learning_rate={self.learning_rate!r})"
        )

    def __eq__(self, other):
        return isinstance(other, AdamGuard) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def get_config(self):
        return {
            "name": self.name,
            "max_ratio": self.max_ratio,
            "min_ratio": self.min_ratio,
            "learning_rate": self.learning_rate,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        name = config.pop("name", cls.name)
        if name != cls.name:
            raise ValueError(f"Unknown guard {name!r}. Valid guards: {[cls.name]}")
        unknown = sorted(set(config) - {"max_ratio", "min_ratio", "learning_rate"})
        if unknown:
            raise ValueError(
                f"Unknown key(s) in the guard config: {unknown}. Valid keys: "
                "['learning_rate', 'max_ratio', 'min_ratio', 'name']"
            )
        return cls(**config)

    def adam_step(self, state, iteration, learning_rate):
        """Adam's update of one variable, from the rule's updated state.

        Args:
            state: the `rule.RuleState` after this step's gradient.
            iteration: scalar, the 1-based step count.
            learning_rate: scalar, the optimizer's learning rate (used when
                `self.learning_rate` is None).

        Returns:
            The float32 update (shape of the state's tensors) to subtract.
        """
        if self.learning_rate is not None:
            learning_rate = self.learning_rate
        return adam_update(
            state.momenta[ADAM_MOMENTUM_INDEX],
            state.second_moment,
            iteration,
            learning_rate,
        )

    def accepts(self, update, adam):
        """Whether to keep the learned step: a scalar bool.

        Args:
            update: float32 learned step, shape `S`.
            adam: float32 Adam update from `adam_step`, shape `S`.
        """
        learned_sq = ops.sum(ops.square(update))
        adam_sq = ops.sum(ops.square(adam))
        # Written so that a NaN anywhere gives False.
        return ops.logical_and(
            learned_sq <= self._max_ratio**2 * adam_sq,
            learned_sq >= self._min_ratio**2 * adam_sq,
        )


def adam_update(momentum, second_moment, iteration, learning_rate):
    """`keras.optimizers.Adam`'s update from its (already updated) moments.

    With Keras' algebra, `m * alpha / (sqrt(v) + eps)` where
    `alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`.

    Args:
        momentum: float32 first moment `m`, shape `S`.
        second_moment: float32 second moment `v`, shape `S`.
        iteration: scalar, the 1-based step count `t`.
        learning_rate: scalar `lr`.

    Returns:
        The float32 update of shape `S` to subtract from the parameter.
    """
    beta_1 = features.MOMENTUM_DECAYS[ADAM_MOMENTUM_INDEX]
    beta_2 = features.SECOND_MOMENT_DECAY
    iteration = ops.cast(iteration, "float32")
    learning_rate = ops.cast(learning_rate, "float32")
    alpha = learning_rate * ops.sqrt(1.0 - ops.power(beta_2, iteration)) / (1.0 - ops.power(beta_1, iteration))
    return momentum * alpha / (ops.sqrt(second_moment) + features.EPSILON)


def get(identifier):
    """An `AdamGuard`, or None, from what `LearnedOptimizer(guard=...)` takes.

    Args:
        identifier: None (no guard), `"adam"` (an `AdamGuard` with its
            defaults), an `AdamGuard`, or a dict from `AdamGuard.get_config`.
    """
    if identifier is None or isinstance(identifier, AdamGuard):
        return identifier
    if isinstance(identifier, str) and identifier == AdamGuard.name:
        return AdamGuard()
    if isinstance(identifier, dict):
        return AdamGuard.from_config(identifier)
    raise ValueError(
        f"`guard` must be None, 'adam', a `keras_lopt.AdamGuard` or its config dict. Received: guard={identifier!r}"
    )
