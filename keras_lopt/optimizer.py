"""LearnedOptimizer: a Keras optimizer whose update rule is a neural network."""

import keras
import tensorflow as tf

from keras_lopt import presets, rule
from keras_lopt.layers import BoundNetwork


def _validate_total_steps(total_steps):
    if total_steps is None:
        return None
    if (
        isinstance(total_steps, bool)
        or not isinstance(total_steps, int)
        or total_steps < 1
    ):
        raise ValueError(
            "`total_steps` must be a positive integer or None. "
            f"Received: total_steps={total_steps!r}"
        )
    return total_steps


@keras.saving.register_keras_serializable(package="keras_lopt")
class LearnedOptimizer(keras.optimizers.Optimizer):
    """Optimizer that applies a meta-trained learned update rule.

    For every variable, per-element features (gradient, momenta, second
    moment, parameter, training progress) go through a small network whose
    outputs give the update

        update = learning_rate * direction * exp(magnitude_scale * magnitude)

    The network and its default learning rate come from a preset: a
    SavedModel directory with validated metadata (see `keras_lopt.savedmodel`).
    Its weights are held as (non-trainable) optimizer variables, so they are
    saved in `.keras` files and checkpoints with the slots.

    Pass `jit_compile=True` to `model.compile` to run the step under XLA:
    Keras does not pick XLA on CPU-only machines by itself.

    Args:
        preset: name of a shipped preset (see `keras_lopt.list_presets()`) or
            path to a preset directory. Defaults to
            `keras_lopt.presets.DEFAULT_PRESET`.
        learning_rate: float, schedule or callable scaling the learned step.
            Defaults to the preset's own learning rate; leave it unset unless
            you have a reason.
        total_steps: training horizon in optimizer steps, if known. Lets the
            rule use training progress; the `TrainingHorizon` callback sets it
            from `fit`. Without it the rule uses a horizon-free step encoding.
        **kwargs: the base `keras.optimizers.Optimizer` arguments
            (`weight_decay`, `clipnorm`, `clipvalue`, `global_clipnorm`,
            `use_ema`, `ema_momentum`, `ema_overwrite_frequency`,
            `loss_scale_factor`, `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        preset=None,
        learning_rate=None,
        total_steps=None,
        name="learned_optimizer",
        **kwargs,
    ):
        preset = presets.DEFAULT_PRESET if preset is None else preset
        loaded = presets.load_preset(preset)
        if learning_rate is None:
            learning_rate = float(loaded.learning_rate)
        elif isinstance(learning_rate, (int, float)) and not isinstance(
            learning_rate, bool
        ):
            if not learning_rate > 0:
                raise ValueError(
                    "`learning_rate` must be positive. "
                    f"Received: learning_rate={learning_rate!r}"
                )
            learning_rate = float(learning_rate)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.preset = str(preset)
        self._preset = loaded
        self._initial_total_steps = _validate_total_steps(total_steps)

    @property
    def network(self):
        """The network architecture layer (weights as loaded from the preset)."""
        return self._preset.network

    @property
    def total_steps(self):
        """The training horizon in steps, or None when unknown."""
        if self.built:
            value = int(self._total_steps.numpy())
            return value if value > 0 else None
        return self._initial_total_steps

    @total_steps.setter
    def total_steps(self, value):
        value = _validate_total_steps(value)
        self._initial_total_steps = value
        if self.built:
            self._total_steps.assign(float(value or 0))

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._total_steps = self.add_variable(
            shape=(),
            initializer=keras.initializers.Constant(
                float(self._initial_total_steps or 0)
            ),
            dtype="float32",
            aggregation="only_first_replica",
            name="total_steps",
        )
        self._network_weights = []
        # Initializers, not assigns: Keras may build the optimizer inside a
        # traced function or a scope where assignments are deferred.
        for weight, value in zip(self.network.weights, self._preset.weights):
            self._network_weights.append(
                self.add_variable(
                    shape=weight.shape,
                    initializer=lambda shape, dtype, value=value: value,
                    dtype="float32",
                    aggregation="only_first_replica",
                    name=f"network_{weight.name}",
                )
            )
        self._slots = self.add_optimizer_variables(
            var_list, list(rule.state_slot_names())
        )

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        slots = [slot_list[index] for slot_list in self._slots]
        gradient = tf.cast(tf.convert_to_tensor(gradient), tf.float32)
        state = rule.unflatten_state(
            [tf.cast(tf.convert_to_tensor(s), tf.float32) for s in slots]
        )
        network = BoundNetwork(
            self.network,
            [tf.convert_to_tensor(w) for w in self._network_weights],
        )
        update, new_state = rule.step(
            network,
            state,
            gradient,
            tf.cast(tf.convert_to_tensor(variable), tf.float32),
            iteration=self.iterations + 1,
            total_steps=tf.convert_to_tensor(self._total_steps),
            learning_rate=learning_rate,
        )
        for slot, value in zip(slots, rule.flatten_state(new_state)):
            self.assign(slot, value)
        self.assign_sub(variable, update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"preset": self.preset, "total_steps": self.total_steps}
        )
        return config
