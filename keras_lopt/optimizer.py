"""LearnedOptimizer: a Keras optimizer whose update rule is a neural network."""

import hashlib
import json
import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from keras_lopt import compiled_update, presets, rule
from keras_lopt import guard as guard_lib

# Version of the optimizer-state layout: the variables `build` creates, their
# order and dtypes. Bump it whenever that changes, so that checkpoints of the
# old layout are refused instead of being restored into the wrong slots.
STATE_FORMAT = 1
# The rule runs in float32 and its state is stored in float32 for every
# variable dtype: float16/bfloat16 slots would round away the small updates
# of slow momenta (a 0.999 decay moves the second moment by 0.1% a step).
STATE_DTYPE = "float32"


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _validate_total_steps(total_steps):
    if total_steps is None:
        return None
    if not _is_integer(total_steps) or total_steps < 1:
        raise ValueError(
            "`total_steps` must be a positive integer or None. "
            f"Received: total_steps={total_steps!r}"
        )
    return int(total_steps)


def _validate_learning_rate(learning_rate):
    if learning_rate is None or callable(learning_rate):
        # Schedules and callables are checked by Keras when they are called.
        return learning_rate
    if not _is_number(learning_rate):
        raise ValueError(
            "`learning_rate` must be a positive number, a "
            "`keras.optimizers.schedules.LearningRateSchedule` or a callable. "
            f"Received: learning_rate={learning_rate!r}"
        )
    if not learning_rate > 0:
        raise ValueError(
            "`learning_rate` must be positive. "
            f"Received: learning_rate={learning_rate!r}"
        )
    if not math.isfinite(learning_rate):
        raise ValueError(
            "`learning_rate` must be finite. "
            f"Received: learning_rate={learning_rate!r}"
        )
    return float(learning_rate)


def _check_optional_number(name, value, allow_zero=False):
    if value is None:
        return
    ok = _is_number(value) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        rule_text = "non-negative" if allow_zero else "positive"
        raise ValueError(
            f"`{name}` must be a {rule_text} finite number or None. "
            f"Received: {name}={value!r}"
        )


def _validate_base_arguments(
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
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"`name` must be a non-empty string. Received: name={name!r}"
        )
    _check_optional_number("weight_decay", weight_decay, allow_zero=True)
    for arg, value in (
        ("clipnorm", clipnorm),
        ("clipvalue", clipvalue),
        ("global_clipnorm", global_clipnorm),
        ("loss_scale_factor", loss_scale_factor),
    ):
        _check_optional_number(arg, value)
    if not isinstance(use_ema, bool):
        raise ValueError(
            f"`use_ema` must be a bool. Received: use_ema={use_ema!r}"
        )
    if not (_is_number(ema_momentum) and 0 <= ema_momentum <= 1):
        raise ValueError(
            "`ema_momentum` must be a number in [0, 1]. "
            f"Received: ema_momentum={ema_momentum!r}"
        )
    if ema_overwrite_frequency is not None and not (
        _is_integer(ema_overwrite_frequency) and ema_overwrite_frequency >= 1
    ):
        raise ValueError(
            "`ema_overwrite_frequency` must be an integer >= 1 or None. "
            f"Received: ema_overwrite_frequency={ema_overwrite_frequency!r}"
        )
    if gradient_accumulation_steps is not None and not (
        _is_integer(gradient_accumulation_steps)
        and gradient_accumulation_steps >= 2
    ):
        raise ValueError(
            "`gradient_accumulation_steps` must be an integer >= 2 or None. "
            "Received: gradient_accumulation_steps="
            f"{gradient_accumulation_steps!r}"
        )


def _preset_fingerprint(loaded):
    """A short hash of what a preset computes: architecture, features, weights.

    The preset's name, path and default learning rate are left out: the same
    network under another name or path is the same rule.
    """
    digest = hashlib.sha256()
    metadata = loaded.metadata
    digest.update(
        json.dumps(
            [metadata["architecture"], metadata["feature_names"]],
            sort_keys=True,
        ).encode()
    )
    for value in loaded.weights:
        value = np.ascontiguousarray(value, dtype="<f4")
        digest.update(repr(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


def _finite_gradient_gives_finite_update(loaded):
    """Whether a preset's update is finite whenever its gradient and the
    gradient's square are.

    True for a per-parameter MLP on the `"local"` features with a bounded
    step multiplier: each local feature is zero or bounded in magnitude
    (the gradient and momenta are divided by the square root of a second
    moment that is at least `1 - beta_2` times the gradient's square), the
    network's weights are finite, and `exp` of the bounded multiplier is
    finite. Then the step needs no check of the new value, which would be a
    pass over the whole tensor before any output may be written.
    """
    network = loaded.network
    return (
        loaded.feature_set == "local"
        and network.kind == "mlp"
        and network.max_log_multiplier is not None
    )


class _StateIdentity(tf.Module):
    """What wrote an optimizer's state, checked when a checkpoint is restored.

    `tf.train.Checkpoint` saves it next to the optimizer's variables (as one
    string) and hands it back through `_restore_from_tensors` before the
    optimizer runs again. A checkpoint written by another preset or another
    state layout raises there, in `checkpoint.restore(...)`, whether or not
    the optimizer has been built yet.
    """

    def __init__(self, optimizer_name, identity):
        super().__init__(name="state_identity")
        self._optimizer_name = optimizer_name
        # A JSON string: tf.Module would wrap a dict attribute for tracking.
        self._identity = json.dumps(identity, sort_keys=True)

    def _serialize_to_tensors(self):
        return {"identity": tf.constant(self._identity)}

    def _restore_from_tensors(self, restored_tensors):
        stored = restored_tensors["identity"]
        if tf.executing_eagerly():
            _check_identity(
                self._optimizer_name,
                json.loads(stored.numpy().decode()),
                json.loads(self._identity),
            )
            return tf.no_op()
        # Traced restore functions (e.g. of a SavedModel) compare in-graph.
        return tf.debugging.assert_equal(
            stored,
            tf.constant(self._identity),
            message=f"LearnedOptimizer '{self._optimizer_name}': the "
            "checkpoint was written by another preset or state layout.",
        )


def _check_identity(optimizer_name, stored, expected):
    prefix = (
        f"Cannot restore the state of LearnedOptimizer '{optimizer_name}': "
    )
    layout_keys = ("state_format", "slots", "state_dtype")
    if any(stored.get(k) != expected[k] for k in layout_keys):
        raise ValueError(
            prefix + "the checkpoint holds optimizer state in an incompatible "
            f"layout. Expected: {[(k, expected[k]) for k in layout_keys]}. "
            f"Received: {[(k, stored.get(k)) for k in layout_keys]}"
        )
    if stored.get("preset_fingerprint") != expected["preset_fingerprint"]:
        raise ValueError(
            prefix + f"it was written with preset {stored.get('preset')!r} "
            f"(fingerprint {stored.get('preset_fingerprint')}), but this "
            f"optimizer uses preset {expected['preset']!r} (fingerprint "
            f"{expected['preset_fingerprint']}). The network weights and "
            "momenta in the checkpoint belong to the other preset; create "
            "the optimizer with that preset to resume training."
        )


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

    Behaviour worth knowing:

    * Dtypes: variables may be float16, bfloat16, float32 or float64. The
      rule runs in float32; the update is cast to the variable's dtype and
      subtracted in it. The state (three slots per variable) is float32.
    * Sparse gradients (`tf.IndexedSlices`, e.g. from `Embedding`) are
      densified: rows without a gradient in a step get gradient 0, so their
      momenta decay and they keep moving while momentum remains, exactly
      like Keras' `Adam` (repeated rows are summed first, which is the
      gradient; Keras' `Adam` squares repeated slices before summing them).
      The rule was meta-trained on dense gradients and its per-tensor
      features are statistics of the whole tensor, so a "lazy" update of
      the touched rows only would run a different rule.
    * Non-finite steps are skipped per variable: if a variable's gradient
      (after clipping) has a NaN or inf, or the update computed from it
      would make the variable non-finite, that variable and its slots keep
      their values for that step (weight decay included) and
      `skipped_updates` grows by one. For presets on the `"local"` features
      with a bounded step multiplier a finite gradient always gives a finite
      update, so the check reads the gradient alone (a gradient whose square
      overflows float32 is skipped too), which saves a pass over the
      tensor. Other variables update normally and
      `iterations` still advances. `global_clipnorm` turns one non-finite
      gradient into non-finite gradients everywhere (Keras' semantics), so
      then every variable skips the step.
    * Weight decay is decoupled, as in `AdamW`:
      `variable -= variable * weight_decay * learning_rate` before the
      learned update, honouring `exclude_from_weight_decay`.
    * Checkpoints: the optimizer records which preset (a fingerprint of its
      architecture, features and weights) and which state layout wrote its
      state. `tf.train.Checkpoint.restore` and `keras.models.load_model`
      raise a `ValueError` for state written by another preset or layout
      instead of running one preset's network on another's momenta. The
      check runs inside `restore`: what it restored before reaching the
      optimizer's identity (the model, `iterations`) may already hold the
      checkpoint's values, so start from fresh objects after the error. A
      checkpoint with no identity at all (written by another optimizer)
      follows TensorFlow's rules: it fails on mismatched shapes or dtypes,
      and `status.assert_existing_objects_matched()` reports it.
    * Guard: with `guard="adam"` (or a `keras_lopt.AdamGuard`), a variable
      whose learned update is non-finite or whose norm is far from that of
      `keras.optimizers.Adam`'s step on the same gradients takes Adam's step
      instead, computed from the same slots (see `keras_lopt.guard`).
      `guard_fallbacks` counts such (variable, step) pairs; it is saved in
      checkpoints and `.keras` files. Without a guard (the default) the
      learned update is applied as it is.

    Args:
        preset: name of a shipped preset (see `keras_lopt.list_presets()`) or
            path to a preset directory. Defaults to
            `keras_lopt.presets.DEFAULT_PRESET`.
        learning_rate: float, schedule or callable scaling the learned step.
            Defaults to the preset's own learning rate; leave it unset unless
            you have a reason.
        total_steps: training horizon in optimizer steps, if known. Lets the
            rule use training progress; the `keras_lopt.TrainingHorizon`
            callback sets it from `fit`. Without it the rule uses a
            horizon-free step encoding.
        guard: None (default), `"adam"`, a `keras_lopt.AdamGuard` or its
            config dict: falls back to Adam's step where the learned step
            misbehaves (see above).
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: the base
            `keras.optimizers.Optimizer` arguments, with the same meaning.
    """

    def __init__(
        self,
        preset=None,
        learning_rate=None,
        total_steps=None,
        guard=None,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="learned_optimizer",
        **kwargs,
    ):
        preset = presets.DEFAULT_PRESET if preset is None else preset
        loaded = presets.load_preset(preset)
        learning_rate = _validate_learning_rate(learning_rate)
        if learning_rate is None:
            learning_rate = float(loaded.learning_rate)
        total_steps = _validate_total_steps(total_steps)
        guard = guard_lib.get(guard)
        base = dict(
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
        )
        _validate_base_arguments(**base)
        super().__init__(learning_rate=learning_rate, **base, **kwargs)
        self.preset = str(preset)
        self._preset = loaded
        self._guard = guard
        self._uses_loss = rule.reads_loss(loaded.network)
        self._check_gradient_only = _finite_gradient_gives_finite_update(loaded)
        if self._uses_loss:
            # Created here, not in `build`: `set_loss` may be traced before
            # the first step builds the optimizer.
            self._loss = self.add_variable(
                shape=(),
                dtype="float32",
                aggregation="only_first_replica",
                name="loss",
            )
            self._loss_known = self.add_variable(
                shape=(),
                dtype="float32",
                aggregation="only_first_replica",
                name="loss_known",
            )
        self._unbuilt_variable_count = len(self.variables)
        self._initial_total_steps = total_steps
        self._state_identity = _StateIdentity(
            name,
            {
                "state_format": STATE_FORMAT,
                "slots": list(rule.state_slot_names(loaded.network)),
                "state_dtype": STATE_DTYPE,
                "preset": loaded.name,
                "preset_fingerprint": _preset_fingerprint(loaded),
            },
        )

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

    @property
    def guard(self):
        """The `AdamGuard`, or None when the learned step is applied as is."""
        return self._guard

    @property
    def guard_fallbacks(self):
        """How many (variable, step) updates the guard replaced by Adam's."""
        if not self.built or self._guard is None:
            return 0
        return int(self._guard_fallbacks.numpy())

    @property
    def skipped_updates(self):
        """How many (variable, step) updates were skipped as non-finite."""
        if not self.built:
            return 0
        return int(self._skipped_updates.numpy())

    def build(self, var_list):
        if self.built:
            return
        # Eagerly, also when Keras builds the optimizer while it traces the
        # first train step (it does without a distribution strategy): a
        # variable created inside a traced function gets a conditional
        # initialiser of its own, a large part of the first call with three
        # slots per variable.
        with tf.init_scope():
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
            self._skipped_updates = self.add_variable(
                shape=(),
                dtype="int64",
                aggregation="only_first_replica",
                name="skipped_updates",
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
            self._slots = self._add_state_slots(var_list)
            self._variable_step = compiled_update.VariableStep(
                self.network,
                self._preset.feature_names,
                self._check_gradient_only,
                self._guard,
                self.weight_decay,
            )
            if self._guard is not None:
                # Created last: every other variable keeps its position, so
                # unguarded checkpoints restore into a guarded optimizer.
                self._guard_fallbacks = self.add_variable(
                    shape=(),
                    dtype="int64",
                    aggregation="only_first_replica",
                    name="guard_fallbacks",
                )

    def _add_state_slots(self, var_list):
        """Like `add_optimizer_variables`, but always of `STATE_DTYPE`.

        Per-parameter slots have the variable's shape; the per-tensor slots
        of recurrent networks (`rule.tensor_state_shapes`) their own.
        """
        names = rule.state_slot_names(self.network)
        tensor_shapes = rule.tensor_state_shapes(self.network)
        per_parameter = len(names) - len(tensor_shapes)
        slots = tuple([] for _ in names)
        strategy = tf.distribute.get_strategy()
        for variable in var_list:
            if getattr(variable, "overwrite_with_gradient", False):
                for slot_list in slots:
                    slot_list.append(None)
                continue
            reference = getattr(variable, "path", None) or variable.name
            reference = reference.replace("/", "_").replace(":", "_")
            placement = (
                variable.value if isinstance(variable, keras.Variable) else variable
            )
            shapes = [variable.shape] * per_parameter + list(tensor_shapes)
            with strategy.extended.colocate_vars_with(placement):
                for slot_list, name, shape in zip(slots, names, shapes):
                    slot_list.append(
                        self.add_variable(
                            shape=shape,
                            dtype=STATE_DTYPE,
                            name=f"{reference}_{name}",
                        )
                    )
        return slots

    def _apply_weight_decay(self, variables):
        # Keras' hook (called before `update_step`) does nothing here: the
        # decay is applied inside `update_step`, so that a skipped
        # (non-finite) step leaves the variable untouched. Should Keras stop
        # calling this hook, the AdamW comparison test fails (double decay).
        return

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        slots = [slot_list[index] for slot_list in self._slots]
        scalars = {
            "iteration": self.iterations + 1,
            "total_steps": tf.convert_to_tensor(self._total_steps),
            "learning_rate": tf.convert_to_tensor(learning_rate),
        }
        if self._uses_loss:
            scalars["loss"] = tf.convert_to_tensor(self._loss)
            scalars["loss_known"] = tf.convert_to_tensor(self._loss_known)
        new_value, new_slots, skipped, fell_back = self._variable_step(
            # Densifies IndexedSlices: see "Sparse gradients" in the docstring.
            tf.convert_to_tensor(gradient),
            tf.convert_to_tensor(variable),
            [tf.convert_to_tensor(s) for s in slots],
            [tf.convert_to_tensor(w) for w in self._network_weights],
            scalars,
            decays=self.weight_decay is not None
            and self._use_weight_decay(variable),
        )
        for slot, new in zip(slots, new_slots):
            self.assign(slot, new)
        self.assign(variable, new_value)
        self.assign_add(self._skipped_updates, skipped)
        if self._guard is not None:
            self.assign_add(self._guard_fallbacks, fell_back)

    @property
    def uses_loss(self):
        """Whether the preset's network reads the training loss."""
        return self._uses_loss

    def set_loss(self, loss):
        """Gives the next step the training loss of the batch it applies.

        `model.fit` needs no call: Keras' train step passes its loss to
        `scale_loss` before computing gradients, and this optimizer records
        it there. A custom training loop calls `set_loss(loss)` (or
        `scale_loss(loss)`) before `apply_gradients`. Each step uses the
        loss given since the previous step; without one the step runs with
        the feature `loss_known` = 0, as in meta-training's runs without a
        loss. Presets whose network does not read the loss ignore it.

        Args:
            loss: scalar tensor or number. Any positive multiple of the loss
                gives the same features (they compare it with its own
                moving averages).
        """
        if self._uses_loss:
            loss = tf.stop_gradient(tf.cast(tf.convert_to_tensor(loss), tf.float32))
            self._loss.assign(tf.reshape(loss, []))
            self._loss_known.assign(1.0)

    def scale_loss(self, loss):
        """Records `loss` for the next step (see `set_loss`), then scales it
        as Keras' optimizers do."""
        self.set_loss(loss)
        return super().scale_loss(loss)

    def apply(self, grads, trainable_variables=None):
        super().apply(grads, trainable_variables)
        if self._uses_loss:
            # A loss serves one step: the next needs a new one.
            self._loss_known.assign(0.0)

    def load_own_variables(self, store):
        """Loads the state from a `.keras` file, refusing what does not fit.

        Keras' default skips the optimizer's variables with a warning when
        their number differs; here that, and network weights that differ
        from this optimizer's preset, raise a `ValueError`.
        """
        if len(store.keys()) == self._unbuilt_variable_count:
            # Saved before it was built: there is no state to restore beyond
            # `iterations` and the learning rate, created first in both.
            for i in range(self._unbuilt_variable_count):
                self.variables[i].assign(store[str(i)])
            return
        if len(store.keys()) != len(self.variables):
            raise ValueError(
                f"Cannot load the state of LearnedOptimizer '{self.name}': "
                f"the file holds {len(store.keys())} optimizer variables, "
                f"this optimizer has {len(self.variables)}"
                + (
                    " (it is not built yet)."
                    if not self.built
                    else ". The file was written by another state layout "
                    f"than this version's (state format {STATE_FORMAT})."
                )
            )
        position = {id(v): i for i, v in enumerate(self.variables)}
        for weight, value in zip(self._network_weights, self._preset.weights):
            if not np.array_equal(
                np.asarray(store[str(position[id(weight)])]), value
            ):
                raise ValueError(
                    f"Cannot load the state of LearnedOptimizer "
                    f"'{self.name}': the file was saved with other network "
                    f"weights than preset {self.preset!r} holds now "
                    f"(first difference in `{weight.name}`). The state "
                    "belongs to the preset that wrote it."
                )
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "preset": self.preset,
                "total_steps": self.total_steps,
                "guard": (
                    None if self._guard is None else self._guard.get_config()
                ),
            }
        )
        return config
