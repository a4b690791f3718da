"""LearnedOptimizer: a Keras optimizer whose update rule is a neural network.

The class is longer than the house's ~250 lines because Keras' `Optimizer`
API puts everything on it: `build` (the state), `update_step`, the hooks
that save and restore the state in Keras files, the loss hooks and the
config. What can live elsewhere does: the rule (`rule`), one variable's
compiled step (`compiled_update`), the state's identity (`saved_state`) and
the argument checks (`optimizer_arguments`).
"""

import contextlib
import json
import os
import warnings

import keras
import numpy as np
from keras import ops

from keras_lopt import backend, compiled_update, fan_in, optimizer_arguments, presets, rule, saved_state, savedmodel
from keras_lopt import guard as guard_lib

# Version of the optimizer-state layout: the variables `build` creates, their
# order and dtypes. Bump it whenever that changes, so that checkpoints of the
# old layout are refused instead of being restored into the wrong slots.
# 2: the per-tensor state of all variables in one variable per kind, after
# the per-parameter slots (1: a variable per kind and model variable).
STATE_FORMAT = 2
# The rule runs in float32 and its state is stored in float32 for every
# variable dtype: float16/bfloat16 slots would round away the small updates
# of slow momenta (a 0.999 decay moves the second moment by 0.1% a step).
STATE_DTYPE = "float32"
# The step counters' dtype, as Keras' own `iterations`: int64 on TensorFlow,
# int32 on JAX (which has 64-bit integers only when x64 is enabled).
COUNTER_DTYPE = "int"


def _on_tensorflow():
    return keras.backend.backend() == "tensorflow"


def _tf():
    """TensorFlow, imported where the TensorFlow backend needs it: on the
    JAX and PyTorch backends keras_lopt runs without it."""
    import tensorflow as tf

    return tf


def _eager_scope():
    """`tf.init_scope()` on the TensorFlow backend: lifts variable creation
    and assignment out of a traced train step. Other backends create the
    optimizer's state outside their compiled step."""
    return _tf().init_scope() if _on_tensorflow() else contextlib.nullcontext()


def _colocated_with(variable):
    """Places new variables beside `variable` under a `tf.distribute`
    strategy (TensorFlow backend; a no-op on others)."""
    if not _on_tensorflow():
        return contextlib.nullcontext()
    return _tf().distribute.get_strategy().extended.colocate_vars_with(variable)


def _all_rows(array, rows):
    """Whether the Python int `rows` are all of `array`'s, in order."""
    return rows == list(range(array.shape[0]))


def _rows_of(array, rows):
    """`array[rows]` for a list of Python int `rows`: the array itself, a
    slice where they are consecutive, else a gather."""
    if _all_rows(array, rows):
        return array
    if rows == list(range(rows[0], rows[0] + len(rows))):
        return array[rows[0] : rows[0] + len(rows)]
    return ops.take(array, rows, axis=0)


def _with_rows(array, rows, new):
    """`array` with its `rows` (Python ints) set to `new`
    (`[len(rows), ...]`): `new` itself where they are all of its rows."""
    if _all_rows(array, rows):
        return new
    return ops.scatter_update(array, [[r] for r in rows], new)


# Without XLA on TensorFlow, the batched steps of this many consecutive
# variables are one compiled program (see `_batched_update_steps`).
PROGRAM_GROUP_SIZE = 8


def _names(variables):
    return [getattr(v, "path", None) or v.name for v in variables]


class _Batch:
    """The variables of one `apply` whose steps run together, and the
    `(gradient, variable)` pairs received so far. A plain object: Keras
    tracks lists and dicts of variables assigned to an optimizer."""

    def __init__(self, variables):
        self.variables = list(variables)
        self.pending = []


@keras.saving.register_keras_serializable(package="keras_lopt")
class LearnedOptimizer(keras.optimizers.Optimizer):
    """Optimizer whose update rule is a small meta-trained network.

    For every element of every variable, features of its gradient `g` go
    through a small network (the same for all elements) whose two outputs
    give the step:

        m_0.9, m_0.99 = momenta of g at decays 0.9 and 0.99
        v = second moment of g (decay 0.999), as in Adam
        features = [g, m_0.9, m_0.99] / (sqrt(v) + epsilon)  (bias-corrected),
                   training progress, step-count encodings, tensor size,
                   and for the "full" feature set also g, the variable and
                   sqrt(v), each divided by its tensor's RMS
        direction, magnitude = network(features)
        variable -= learning_rate * direction * exp(magnitude_scale * magnitude)

    The network, its weights and the default `learning_rate` come from a
    preset, a SavedModel directory: see `keras_lopt.list_presets()` and
    `keras_lopt.preset_info(name)`. Some presets also keep a per-tensor LSTM
    state and read the training loss. A preset with a `fan_in_base` scales
    the step of each kernel wider than that by `fan_in_base / fan_in`
    (`keras_lopt.fan_in`), so that its step suits wide layers as well as
    narrow ones. Everything else works as in Keras'
    optimizers; dtypes, sparse gradients, non-finite steps, weight decay,
    saving and loading, and the guard are described in docs/optimizer.md.
    Pass `jit_compile=True` to `model.compile` for XLA: Keras does not choose
    it on CPU by itself.

    Args:
        learning_rate: float, a `keras.optimizers.schedules.LearningRateSchedule`
            or a callable; scales the learned step. Defaults to the preset's
            own rate, the one it was meta-trained with.
        preset: name of a shipped preset or path to a preset directory.
            Defaults to the default preset (`keras_lopt.presets.DEFAULT_PRESET`).
            A shipped name wins over a local directory of the same name:
            write such a directory as a path (`"./name"`).
        total_steps: training horizon in optimizer steps, if known. Lets the
            rule use training progress; the `keras_lopt.TrainingHorizon`
            callback sets it from `fit`. Without it the rule uses a
            horizon-free step encoding.
        guard: None (default), `"adam"`, a `keras_lopt.AdamGuard` or its
            config dict: takes Adam's step where the learned step is not
            finite or its norm is far from Adam's.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
        ema_momentum, ema_overwrite_frequency, loss_scale_factor,
        gradient_accumulation_steps, name: the base
            `keras.optimizers.Optimizer` arguments, with the same meaning.

    Example:

    >>> import keras, keras_lopt, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras_lopt.LearnedOptimizer(), loss="mse")
    >>> history = model.fit(np.ones((32, 4)), np.ones((32, 1)), verbose=0)
    >>> int(model.optimizer.iterations.numpy())
    1

    References:
        - [Metz et al., 2020](https://arxiv.org/abs/2009.11243): Tasks,
          stability, architecture, and compute: Training more effective
          learned optimizers, and using them to train themselves.
        - [Metz et al., 2022](https://arxiv.org/abs/2211.09760): VeLO:
          Training Versatile Learned Optimizers by Scaling Up.
        - [Vicol et al., 2021](https://arxiv.org/abs/2112.13835): Unbiased
          Gradient Estimation in Unrolled Computation Graphs with Persistent
          Evolution Strategies.
    """

    # Why this class is longer than ~250 lines: most of it is the surface
    # Keras calls on an optimizer (build, update_step, apply, scale_loss,
    # save/load_own_variables, get/from_config) and its docstrings. The
    # update itself is `compiled_update.VariableStep` over `rule`; argument
    # checks live in `optimizer_arguments` and the checkpoint identity in
    # `saved_state`.

    def __init__(
        self,
        learning_rate=None,
        preset=None,
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
        learning_rate = optimizer_arguments.checked_learning_rate(learning_rate)
        preset = presets.DEFAULT_PRESET if preset is None else preset
        directory = presets.resolve(preset)
        loaded = savedmodel.load(directory)
        if learning_rate is None:
            learning_rate = float(loaded.learning_rate)
        total_steps = optimizer_arguments.checked_total_steps(total_steps)
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
        optimizer_arguments.check_base_arguments(**base)
        super().__init__(learning_rate=learning_rate, **base, **kwargs)
        # The config holds a shipped preset's name, which is portable, or the
        # directory's absolute path, which does not depend on the working
        # directory of whoever loads a saved model.
        self.preset = preset if presets.is_shipped(preset) else directory
        self._preset = loaded
        self._guard = guard
        # The variables of the `apply` in progress whose steps are batched
        # (`_batch_plan`), or None.
        self._batch = None
        self._uses_loss = rule.reads_loss(loaded.network)
        self._check_gradient_only = compiled_update.finite_gradient_gives_finite_update(loaded)
        if self._uses_loss and keras.backend.backend() == "jax":
            warnings.warn(
                f"Preset {loaded.name!r} reads the training loss, but on the "
                "JAX backend `model.fit` does not "
                "give it to the optimizer (Keras calls `scale_loss` there in "
                "a scope whose assignments it discards): every step runs "
                "with the feature `loss_known` = 0, as the TensorFlow backend "
                "does without a loss. A custom training loop that calls "
                "`optimizer.set_loss(loss)` outside a traced function "
                "passes it.",
                stacklevel=2,
            )
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
        # State read from a Keras file before the optimizer was built; it is
        # restored when `build` has made the variables.
        self._pending_state = None
        identity = {
            "state_format": STATE_FORMAT,
            "slots": list(rule.state_slot_names(loaded.network)),
            "state_dtype": STATE_DTYPE,
            "preset": loaded.name,
            "preset_fingerprint": saved_state.preset_fingerprint(loaded),
        }
        # A JSON string: TensorFlow's tracking would wrap a dict attribute.
        self._identity_json = json.dumps(identity, sort_keys=True)
        if _on_tensorflow():
            # Checked by `tf.train.Checkpoint`, which only the TensorFlow
            # backend's variables take part in; Keras files carry the
            # identity on every backend (`save_own_variables`).
            from keras_lopt.state_identity import StateIdentity

            self._state_identity = StateIdentity(name, identity)

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
        value = optimizer_arguments.checked_total_steps(value)
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
        with _eager_scope():
            super().build(var_list)
            self._total_steps = self.add_variable(
                shape=(),
                initializer=keras.initializers.Constant(float(self._initial_total_steps or 0)),
                dtype="float32",
                aggregation="only_first_replica",
                name="total_steps",
            )
            self._skipped_updates = self.add_variable(
                shape=(),
                dtype=COUNTER_DTYPE,
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
            self._slots, self._tensor_slots, self._tensor_rows = self._add_state_slots(var_list)
            self._variable_step = compiled_update.VariableStep(
                self.network,
                self._preset.feature_names,
                self._check_gradient_only,
                self._guard,
                self.weight_decay,
                counter_dtype=self._skipped_updates.dtype,
                # The network weights are the preset's and stay so (state
                # from another preset is never restored: its fingerprint
                # differs), so terms of its exactly zero weights can go.
                zeros=self._exact_zeros(),
                shared_key=json.loads(self._identity_json)["preset_fingerprint"],
            )
            if self._guard is not None:
                # Created last: every other variable keeps its position, so
                # unguarded checkpoints restore into a guarded optimizer.
                self._guard_fallbacks = self.add_variable(
                    shape=(),
                    dtype=COUNTER_DTYPE,
                    aggregation="only_first_replica",
                    name="guard_fallbacks",
                )
            # Inside init_scope: the restored values are assigned eagerly.
            self._restore_pending_state()

    def _add_state_slots(self, var_list):
        """Like `add_optimizer_variables`, but always of `STATE_DTYPE`.

        Returns `(slots, tensor_slots, rows)`. `slots`: per per-parameter
        slot name, a list with each variable's slot (its shape; None for
        variables Keras overwrites with their gradient). `tensor_slots`: per
        per-tensor state kind of recurrent and adaptive networks
        (`rule.tensor_state_shapes`), one variable `[R, *shape]` holding a
        row for each of the `R` variables with slots (one array of the train
        step for all of them: on JAX each array costs every step).
        `rows`: each variable's row (None without slots).
        """
        names = rule.state_slot_names(self.network)
        tensor_shapes = rule.tensor_state_shapes(self.network)
        per_parameter = len(names) - len(tensor_shapes)
        slots = tuple([] for _ in names[:per_parameter])
        rows, count = [], 0
        for variable in var_list:
            if getattr(variable, "overwrite_with_gradient", False):
                for slot_list in slots:
                    slot_list.append(None)
                rows.append(None)
                continue
            reference = getattr(variable, "path", None) or variable.name
            reference = reference.replace("/", "_").replace(":", "_")
            placement = variable.value if isinstance(variable, keras.Variable) else variable
            rows.append(count)
            count += 1
            with _colocated_with(placement):
                for slot_list, name in zip(slots, names):
                    slot_list.append(
                        self.add_variable(shape=variable.shape, dtype=STATE_DTYPE, name=f"{reference}_{name}")
                    )
        tensor_slots = tuple(
            self.add_variable(shape=(count, *shape), dtype=STATE_DTYPE, name=f"tensor_{name}")
            for name, shape in zip(names[per_parameter:], tensor_shapes)
        )
        return slots, tensor_slots, rows

    def _apply_weight_decay(self, variables):
        # Keras' hook (called before `update_step`) does nothing here: the
        # decay is applied inside `update_step`, so that a skipped
        # (non-finite) step leaves the variable untouched. Should Keras stop
        # calling this hook, the AdamW comparison test fails (double decay).
        return

    def update_step(self, gradient, variable, learning_rate):
        batch = self._batch
        if batch is not None and self._variable_step.batches():
            # Deferred: all variables of this `apply` step together.
            batch.pending.append((gradient, variable))
            if len(batch.pending) == len(batch.variables):
                self._batched_update_steps(batch, learning_rate)
            return
        gradient, value, slots = self._step_arguments(gradient, variable)
        row = self._tensor_rows[self._get_variable_index(variable)]
        new_value, new_slots, skipped, fell_back = self._variable_step(
            gradient,
            value,
            [*slots, *(backend.dense(t)[row] for t in self._tensor_slots)],
            [backend.dense(w) for w in self._network_weights],
            self._step_scalars(learning_rate),
            decays=self.weight_decay is not None and self._use_weight_decay(variable),
            step_scale=self._step_scale(variable),
        )
        per_parameter = len(new_slots) - len(self._tensor_slots)
        self._store_step(variable, new_value, new_slots[:per_parameter], skipped, fell_back)
        for tensor_slot, new_row in zip(self._tensor_slots, new_slots[per_parameter:]):
            start = [row] + [0] * len(new_row.shape)
            self.assign(tensor_slot, ops.slice_update(backend.dense(tensor_slot), start, new_row[None]))

    def _step_arguments(self, gradient, variable):
        """`(gradient, value, slots)` of `variable` for `VariableStep` (the
        per-parameter slots)."""
        index = self._get_variable_index(variable)
        slots = [slot_list[index] for slot_list in self._slots]
        # Densifies IndexedSlices: see "Sparse gradients" in the docstring.
        return backend.dense(gradient), backend.dense(variable), [backend.dense(s) for s in slots]

    def _step_scalars(self, learning_rate):
        scalars = {
            "iteration": self.iterations + 1,
            "total_steps": backend.dense(self._total_steps),
            "learning_rate": backend.dense(learning_rate),
        }
        if self._uses_loss:
            scalars["loss"] = backend.dense(self._loss)
            scalars["loss_known"] = backend.dense(self._loss_known)
        return scalars

    def _batched_update_steps(self, batch, learning_rate):
        """The deferred `update_step`s of one `apply`, their per-tensor
        work batched (`VariableStep.many`)."""
        pending = batch.pending
        got = [self._get_variable_index(v) for _, v in pending]
        if got != [self._get_variable_index(v) for v in batch.variables]:
            raise RuntimeError(
                "LearnedOptimizer expected `update_step` calls for the variables "
                f"{_names(batch.variables)} in this order. "
                f"Received: {_names(v for _, v in pending)}"
            )
        items = [
            (
                *self._step_arguments(gradient, variable),
                self.weight_decay is not None and self._use_weight_decay(variable),
                self._step_scale(variable),
            )
            for gradient, variable in pending
        ]
        network_weights = [backend.dense(w) for w in self._network_weights]
        scalars = self._step_scalars(learning_rate)
        tensor_state = tuple(backend.dense(t) for t in self._tensor_slots)
        rows = [self._tensor_rows[self._get_variable_index(v)] for _, v in pending]
        # Without XLA on TensorFlow each group is one compiled program: a
        # few variables per program, so that repeated blocks share one.
        on_tensorflow_without_xla = _on_tensorflow() and not compiled_update.in_xla_program()
        size = PROGRAM_GROUP_SIZE if on_tensorflow_without_xla else len(items)
        results, new_rows = [], [[] for _ in tensor_state]
        for start in range(0, len(items), size):
            blocks = [_rows_of(value, rows[start : start + size]) for value in tensor_state]
            group, group_rows = self._variable_step.many(items[start : start + size], network_weights, scalars, blocks)
            results += group
            for kind, kind_rows in zip(new_rows, group_rows):
                kind.append(kind_rows)
        for (_, variable), result in zip(pending, results):
            self._store_step(variable, *result)
        for tensor_slot, old, kind in zip(self._tensor_slots, tensor_state, new_rows):
            new = kind[0] if len(kind) == 1 else ops.concatenate(kind, axis=0)
            self.assign(tensor_slot, _with_rows(old, rows, new))
        batch.pending = []

    def _store_step(self, variable, new_value, new_slots, skipped, fell_back):
        index = self._get_variable_index(variable)
        slots = [slot_list[index] for slot_list in self._slots]
        for slot, new in zip(slots, new_slots, strict=True):
            self.assign(slot, new)
        self.assign(variable, new_value)
        self.assign_add(self._skipped_updates, skipped)
        if self._guard is not None:
            self.assign_add(self._guard_fallbacks, fell_back)

    def _exact_zeros(self):
        """The preset's exactly zero network weights (`elementwise_mlp`), or
        None for networks without an elementwise MLP."""
        if not hasattr(self.network, "exact_zeros"):
            return None
        return self.network.exact_zeros([np.asarray(w) for w in self._preset.weights])

    def _step_scale(self, variable):
        """The factor of `variable`'s learning rate (`keras_lopt.fan_in`)."""
        path = getattr(variable, "path", None) or variable.name
        return fan_in.step_scale(fan_in.fan_in(variable.shape, path), self._preset.fan_in_base)

    @property
    def uses_loss(self):
        """Whether the preset's network reads the training loss."""
        return self._uses_loss

    def set_loss(self, loss):
        """Gives the next step the training loss of the batch it applies.

        `model.fit` needs no call on the TensorFlow backend: Keras' train
        step passes its loss to `scale_loss` before computing gradients, and
        this optimizer records it there (on the JAX backend it cannot: see
        the warning such presets give there). A custom training loop calls `set_loss(loss)` (or
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
            loss = ops.stop_gradient(ops.cast(loss, "float32"))
            self._loss.assign(ops.reshape(loss, []))
            self._loss_known.assign(1.0)

    def scale_loss(self, loss):
        """Records `loss` for the next step (see `set_loss`), then scales it
        as Keras' optimizers do."""
        self.set_loss(loss)
        return super().scale_loss(loss)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
        self._batch = self._batch_plan(grads, trainable_variables)
        try:
            super().apply(grads, trainable_variables)
            if self._batch is not None and self._batch.pending:
                raise RuntimeError(
                    "LearnedOptimizer deferred the steps of "
                    f"{_names(v for _, v in self._batch.pending)} and Keras made no "
                    f"`update_step` call for the rest of {_names(self._batch.variables)}."
                )
        finally:
            self._batch = None
        if self._uses_loss:
            # A loss serves one step: the next needs a new one.
            self._loss_known.assign(0.0)

    def _batch_plan(self, grads, trainable_variables):
        """The variables whose `update_step` this `apply` makes, in order:
        their steps are deferred to the last one and run together, the
        per-tensor controller batched (for networks that batch it:
        `VariableStep.batches`). On JAX and in TensorFlow's XLA train step
        (`jit_compile=True`), which trace the train step into one program,
        fewer and larger operations in it; on PyTorch, which runs eagerly by
        default, fewer operations launched (the default's eager `fit` step
        1.7x faster on the residual MLP of `benchmarks/step_time.py`); in
        TensorFlow's other train steps, one compiled program per group of
        `PROGRAM_GROUP_SIZE` variables instead of one per variable. None
        under a `tf.distribute` strategy, which applies each variable's step
        in a context of its own.

        The variables are those Keras keeps (a gradient that is not None, no
        `overwrite_with_gradient`); the steps run as soon as the last has
        arrived, before Keras applies constraints or moving averages.
        """
        if _on_tensorflow() and _tf().distribute.has_strategy():
            return None
        if trainable_variables is None:
            if not self.built:
                return None
            trainable_variables = self._trainable_variables
        variables = [
            v
            for g, v in zip(grads, trainable_variables)
            if g is not None and not getattr(v, "overwrite_with_gradient", False)
        ]
        return _Batch(variables)

    def save_own_variables(self, store):
        """Saves the variables and the state identity into a Keras store."""
        super().save_own_variables(store)
        store[saved_state.IDENTITY_KEY] = saved_state.encode_identity(json.loads(self._identity_json))

    def load_own_variables(self, store):
        """Restores the state saved in a `.keras` or `.weights.h5` file.

        State that another optimizer, preset or state layout wrote is skipped
        with a warning that says why, as Keras' optimizers skip state that
        does not fit, and this optimizer keeps its own. Nothing is restored
        in part. An optimizer that is not built yet restores the state when
        it is built: at the first training step, or at
        `optimizer.build(model.trainable_variables)`.
        """
        values, reason, state_format = saved_state.read_keras_store(store, json.loads(self._identity_json))
        if reason is None and len(values) == self._unbuilt_variable_count:
            # Saved before it was built: `iterations`, the learning rate
            # (and the loss inputs), created first in both (any format).
            values = values + [np.asarray(v) for v in self.variables[len(values) :]]
            state_format = STATE_FORMAT
        elif reason is None and not self.built:
            self._pending_state = (values, state_format)
            return
        self._restore_state(values, reason, state_format)

    def _restore_state(self, values, reason=None, state_format=STATE_FORMAT):
        """Assigns `values` (written in `state_format`) to all variables, or
        warns and assigns none."""
        if reason is None and state_format == 1:
            values = self._upgraded_format_1(values)
        reason = reason or saved_state.variables_mismatch(self.variables, values)
        if reason:
            warnings.warn(
                f"Skipping the saved state of LearnedOptimizer '{self.name}': "
                f"{reason}. The optimizer keeps its current state.",
                stacklevel=3,
            )
            return
        # Eager even when `build` runs inside a traced function: the values
        # are assigned once, not at every call of that function.
        with _eager_scope():
            for variable, value in zip(self.variables, values):
                variable.assign(value)

    def _restore_pending_state(self):
        if self._pending_state is not None:
            (values, state_format), self._pending_state = self._pending_state, None
            self._restore_state(values, state_format=state_format)

    def _upgraded_format_1(self, values):
        """Values written in state format 1 (per-tensor state one variable
        per model variable, after its slots) in this optimizer's order;
        as they are where their number does not fit (the mismatch is then
        reported as for any other file)."""
        kinds = len(self._tensor_slots)
        if not kinds:
            return values  # The same layout.
        rows = self._tensor_slots[0].shape[0]
        if len(values) != len(self.variables) + kinds * (rows - 1):
            return values  # State for other variables.
        first = next(i for i, v in enumerate(self.variables) if v is self._tensor_slots[0])
        head = first - len(self._slots) * rows
        shapes = [tuple(t.shape[1:]) for t in self._tensor_slots]
        return saved_state.upgrade_format_1(values, head, len(self._slots), shapes, rows)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        preset = config.get("preset")
        if isinstance(preset, str) and os.path.isabs(preset) and not os.path.isdir(preset):
            raise ValueError(
                f"The saved LearnedOptimizer (e.g. in the `.keras` file being "
                f"loaded) uses the preset directory {preset!r}, which does not "
                "exist here. If the preset moved, load the model with "
                "`keras.models.load_model(path, compile=False)`, compile it "
                "with `LearnedOptimizer(preset=NEW_DIRECTORY)` and call "
                "`model.load_weights(path)`: that restores the optimizer's "
                "state too (docs/optimizer.md, 'A moved preset')."
            )
        return super().from_config(config, custom_objects)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "preset": self.preset,
                "total_steps": self.total_steps,
                "guard": (None if self._guard is None else self._guard.get_config()),
            }
        )
        return config


# The names users type: `keras.optimizers.get("learned_optimizer")`, and
# `model.compile(optimizer="LearnedOptimizer")`, as for Keras' own optimizers.
# Saved configs keep the registered name "keras_lopt>LearnedOptimizer".
keras.saving.get_custom_objects().update({"LearnedOptimizer": LearnedOptimizer, "learned_optimizer": LearnedOptimizer})
