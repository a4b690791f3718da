"""The learned step of one variable, compiled once per variable signature.

Keras calls `update_step` once per variable while it traces a train step.
Tracing the rule there would build the whole unrolled network again for
every variable: graph building (and XLA compilation) would grow with the
number of variables, and without XLA each of its ~100 operations would be a
kernel of its own on every step. For networks whose per-tensor controller
steps a batch of tensors (the default), the optimizer calls `many` on
groups of variables instead (see `many`); for the others, on the
TensorFlow backend `VariableStep` holds one `tf.function(jit_compile=True)`
per variable signature
(shape, dtypes, whether weight decay applies): variables that share a
signature share one traced and compiled program, and optimizers of the same
preset and settings share them process-wide (`shared_key`): a second model
in the same process (a cross-validation loop, a tuner's trials) neither
traces nor compiles the update again, and the programs are not kept once
per optimizer. Called from a train step
that is not compiled (Keras' default on CPU), each call runs as one XLA
program; inside an XLA train step it is inlined into the step's program.

On the JAX backend Keras jits the whole train step (unless it runs
eagerly), so the step is traced into that program directly; on PyTorch it
runs eagerly (or under torch.compile with `jit_compile=True`). `many` steps
several variables at once, their per-tensor work batched, which the
optimizer uses on every backend for networks that support it.
"""

import collections

import keras
from keras import ops

from keras_lopt import rule
from keras_lopt.layers import ADAPTIVE_KINDS, BoundNetwork

# Compiled programs shared by `VariableStep`s of equal `shared_key` and
# settings: `(settings, signature) -> tf.function`. TensorFlow keeps every
# XLA program it has compiled for the life of the process, so programs made
# per optimizer would grow memory with each model trained in one process.
_SHARED_PROGRAMS = {}

# Tensors of a shape stepped together (in one `many` call) from which their
# per-tensor parts are one nested program each, traced once, rather than
# traced inline for each tensor (`VariableStep._per_tensor_programs_for`).
NESTED_MIN_REPEATS = 3


def in_xla_program():
    """Whether TensorFlow is tracing a program that XLA compiles whole (a
    Keras train step with `jit_compile=True`). Read from
    `tf.__internal__.get_enclosing_xla_context`, which TensorFlow exports
    but does not promise to keep: where it is missing this is False, and the
    batched steps are compiled as without XLA (which an XLA step inlines:
    the same numbers up to rounding, more programs)."""
    import tensorflow as tf

    enclosing = getattr(getattr(tf, "__internal__", None), "get_enclosing_xla_context", None)
    return enclosing is not None and enclosing() is not None


def all_finite(*tensors):
    """Whether every element of the tensors is finite: a scalar bool.

    `x * 0` is (signed) zero where `x` is finite and NaN where it is not, and
    a sum of zeros is exactly zero, so one float sum answers exactly, in any
    summation order and without overflow. Under XLA on CPU this costs less
    than `reduce_all(is_finite(x))` per tensor, which materialises a boolean
    tensor for each (see BENCHMARKS.md, "Step time").
    """
    zeros = [ops.cast(x * ops.zeros((), x.dtype), "float32") for x in tensors]
    total = zeros[0]
    for x in zeros[1:]:
        total = total + x
    return ops.isfinite(ops.sum(total))


def finite_gradient_gives_finite_update(loaded):
    """Whether a preset's update is finite whenever its gradient and the
    gradient's square are.

    True for a per-parameter MLP on the `"local"` features with a bounded
    step multiplier (or an adaptive MLP, whose log step size is clipped):
    each local feature is zero or bounded in magnitude
    (the gradient and momenta are divided by the square root of a second
    moment that is at least `1 - beta_2` times the gradient's square), the
    network's weights are finite, and `exp` of the bounded multiplier is
    finite. Then the step needs no check of the new value, which would be a
    pass over the whole tensor before any output may be written.
    """
    network = loaded.network
    if loaded.feature_set != "local":
        return False
    # The adaptive network's direction MLP reads bounded features and its
    # step size is clipped; its per-tensor signals are sanitised.
    return network.kind in ADAPTIVE_KINDS or (network.kind == "mlp" and network.max_log_multiplier is not None)


class VariableStep:
    """One variable's learned step, one compiled program per signature.

    Args:
        network: the network architecture layer (its weights are passed to
            each call, so that they can live in optimizer variables).
        feature_names: the features the network reads (a preset's).
        check_gradient_only: whether a finite gradient (with a finite
            square) always gives a finite update, so that the non-finite
            check reads the gradient alone and the network reads the
            moments as they will be stored.
        guard: an `AdamGuard`, or None.
        weight_decay: the decoupled weight decay, or None.
        counter_dtype: the integer dtype of the returned counts.
        zeros: None, or `network.exact_zeros` of the values every call's
            `network_weights` hold (`BoundNetwork`).
        shared_key: None, or a hashable identity of what `network` computes
            with the `network_weights` every call passes (a preset
            fingerprint): steps of equal `shared_key` and equal other
            arguments share their compiled programs within the process.
    """

    def __init__(
        self,
        network,
        feature_names,
        check_gradient_only,
        guard,
        weight_decay,
        counter_dtype="int64",
        zeros=None,
        shared_key=None,
    ):
        self._network = network
        self._zeros = zeros
        self._feature_names = tuple(feature_names)
        self._check_gradient_only = check_gradient_only
        self._guard = guard
        self._weight_decay = weight_decay
        self._counter_dtype = counter_dtype
        self._programs = {}
        self._batched_programs = {}
        self._per_tensor_programs = {}
        self._settings = None
        if shared_key is not None:
            guard = None if guard is None else (type(guard).__name__, tuple(sorted(guard.get_config().items())))
            self._settings = (
                shared_key,
                self._feature_names,
                bool(check_gradient_only),
                guard,
                weight_decay,
                str(counter_dtype),
            )

    @property
    def batched_programs(self):
        """`many`'s traced graphs by the signature of all its variables
        (TensorFlow backend; empty on others)."""
        return dict(self._batched_programs)

    @property
    def programs(self):
        """The compiled programs by signature `(shape, dtypes, decays, step_scale)`
        (TensorFlow backend; empty on others)."""
        return dict(self._programs)

    def __call__(self, gradient, value, slots, network_weights, scalars, decays, step_scale=1.0):
        """The step of one variable.

        Args:
            gradient: dense tensor of the variable's shape `S`.
            value: the variable's current value, shape `S`.
            slots: the variable's state slots (`rule.state_slot_names`
                order), float32.
            network_weights: float32 tensors shaped like the network's weights.
            scalars: dict of scalar tensors: `iteration` (1-based),
                `total_steps` (0 if unknown), `learning_rate`, and for
                networks that read it `loss` and `loss_known`.
            decays: whether weight decay applies to this variable.
            step_scale: a Python float that multiplies the learning rate of
                the rule and of the guard's Adam step, not the weight decay's
                (`keras_lopt.fan_in`).

        Returns:
            `(new_value, new_slots, skipped, fell_back)`: the values to store
            (the old ones where the step is skipped), and two integer scalars
            (`counter_dtype`) that count a skipped step and a step the guard
            replaced.
        """
        step_scale = float(step_scale)
        if keras.backend.backend() != "tensorflow":
            return self._step(gradient, value, tuple(slots), tuple(network_weights), scalars, decays, step_scale)

        def step(gradient, value, slots, network_weights, scalars):
            return self._step(gradient, value, slots, network_weights, scalars, decays, step_scale)

        key = (tuple(value.shape), value.dtype.name, gradient.dtype.name, decays, step_scale)
        program = self._kept_program(self._programs, key, step, jit_compile=True)
        return program(gradient, value, tuple(slots), tuple(network_weights), scalars)

    def _kept_program(self, table, key, function, jit_compile):
        """The `tf.function` of `function` kept under `key` in `table` (this
        step's programs) and, with a `shared_key`, in `_SHARED_PROGRAMS`:
        made once, then found there (by this or another `VariableStep` of the
        same settings)."""
        program = table.get(key)
        if program is None and self._settings is not None:
            program = _SHARED_PROGRAMS.get((self._settings, key))
        if program is None:
            import tensorflow as tf

            program = tf.function(function, jit_compile=jit_compile, autograph=False)
            if self._settings is not None:
                _SHARED_PROGRAMS[(self._settings, key)] = program
        table[key] = program
        return program

    def _per_tensor_programs_for(self, items):
        """`rule.step_many_with_moments`' `per_tensor` for `items`: on
        TensorFlow, for shapes of at least `NESTED_MIN_REPEATS` items, each
        per-tensor part as a `tf.function` kept as the programs are, which
        TensorFlow traces once per signature (shared by the groups, repeated
        blocks and later models that call it): each such tensor is then a
        call operation instead of its ~100 operations built again, and XLA
        inlines the calls. Other parts are traced inline (a nested function
        of one or two calls costs more to build than it saves)."""
        if keras.backend.backend() != "tensorflow":
            return None
        repeats = collections.Counter(tuple(v.shape) for _, v, *_ in items)

        def per_tensor(name, function, shape):
            if repeats[tuple(shape)] < NESTED_MIN_REPEATS:
                return function
            return self._kept_program(self._per_tensor_programs, ("per tensor", name), function, jit_compile=None)

        return per_tensor

    def batches(self):
        """Whether `many` applies: the network steps a batch of tensors'
        per-tensor state at once, and a finite gradient gives a finite
        update (so each variable's check reads its gradient alone)."""
        return self._check_gradient_only and hasattr(self._network, "control")

    def many(self, items, network_weights, scalars, tensor_state):
        """The steps of several variables, their per-tensor work batched
        (`rule.step_many_with_moments`): each variable's result is
        `__call__`'s, up to the rounding of the controller's matrix products.

        `V` copies of the per-tensor controller's scalar operations would
        each be a kernel of their own. On JAX and PyTorch this is traced into
        the caller's program (or runs eagerly). On TensorFlow it is a
        `tf.function` kept per signature of all `items` (shared as
        `__call__`'s programs are, so that a later model of the same
        structure, or a repeated block, does not trace it again): traced
        into the caller's XLA program inside one, else compiled with XLA on
        its own. Requires `batches()`.

        The per-tensor state of all the optimizer's variables is one array
        per kind (`rule.tensor_state_shapes`), a row per variable: one input
        and one output of the train step for all variables instead of one
        each (on JAX, each array of the train step's state costs every
        step; BENCHMARKS.md, "what the number of optimizer variables
        costs").

        Args:
            items: a list of `(gradient, value, slots, decays, step_scale)`,
                as `__call__`'s arguments of the same names, with only the
                per-parameter slots.
            network_weights, scalars: as for `__call__`, shared.
            tensor_state: per per-tensor state kind, the items' rows of the
                optimizer's array (`[len(items), *shape]`, in item order).

        Returns:
            `(results, new_rows)`: per item `__call__`'s result with the
            per-parameter slots only, and per kind the items' new rows
            (`[len(items), *shape]`), which the caller writes into its
            arrays (so that groups of variables stepped apart share
            programs and can run in parallel).
        """
        if not self.batches():
            raise ValueError("`VariableStep.many` needs a network that batches its per-tensor state.")
        blocks = tuple(tensor_state)
        if any(b.shape[0] != len(items) for b in blocks):
            raise ValueError(
                f"`tensor_state` needs one row per item ({len(items)}). Received: shapes {[b.shape for b in blocks]}"
            )
        if keras.backend.backend() != "tensorflow":
            return self._many(items, network_weights, scalars, blocks)
        statics = tuple((bool(decays), float(scale)) for _, _, _, decays, scale in items)

        def steps(gradients, values, slots, network_weights, scalars, blocks):
            rebuilt = [(g, v, s, *static) for g, v, s, static in zip(gradients, values, slots, statics)]
            return self._many(rebuilt, network_weights, scalars, blocks)

        # Inside an XLA program: traced into it; elsewhere: compiled.
        jit = not in_xla_program()
        key = (
            "many",
            jit,
            tuple((tuple(v.shape), v.dtype.name, g.dtype.name) for g, v, *_ in items),
            statics,
            tuple(tuple(b.shape) for b in blocks),
        )
        program = self._kept_program(self._batched_programs, key, steps, jit_compile=jit)
        results, new_rows = program(
            [g for g, *_ in items],
            [v for _, v, *_ in items],
            [tuple(slots) for _, _, slots, *_ in items],
            tuple(network_weights),
            scalars,
            blocks,
        )
        results = [(value, tuple(slots), skipped, fell_back) for value, slots, skipped, fell_back in results]
        return results, tuple(new_rows)

    def _many(self, items, network_weights, scalars, blocks):
        """`many`, traced where it is called."""
        prepared = [
            self._prepared(g, v, [*slots, *(b[i] for b in blocks)], scalars, decays, float(scale))
            for i, (g, v, slots, decays, scale) in enumerate(items)
        ]
        states = []
        for gradient, _, old_state, _, _, finite in prepared:
            moved = rule.update_moments(rule.unflatten_state(old_state), gradient)
            states.append(rule.unflatten_state(_select(finite, rule.flatten_state(moved), old_state)))
        arguments = self._rule_arguments(scalars)
        del arguments["learning_rate"]
        steps = rule.step_many_with_moments(
            BoundNetwork(self._network, network_weights, self._zeros),
            states,
            [p[0] for p in prepared],
            [ops.cast(p[3], "float32") for p in prepared],
            learning_rates=[p[4]["learning_rate"] for p in prepared],
            per_tensor=self._per_tensor_programs_for(items),
            **arguments,
        )
        finished = [self._finished(*p, update, new_state) for p, (update, new_state) in zip(prepared, steps)]
        per_parameter = len(finished[0][1]) - len(blocks)
        results = [(value, slots[:per_parameter], skipped, fell_back) for value, slots, skipped, fell_back in finished]
        new_rows = tuple(
            ops.stack([slots[per_parameter + k] for _, slots, _, _ in finished]) for k in range(len(blocks))
        )
        return results, new_rows

    def _prepared(self, gradient, old_value, old_state, scalars, decays, step_scale):
        """`(gradient, old_value, old_state, parameter, scalars, finite)`:
        float32 gradient, the decayed parameter, the scalars with this
        variable's learning rate, and (`check_gradient_only`) whether the
        gradient is finite (else None: known after the update)."""
        gradient = ops.cast(gradient, "float32")
        parameter = old_value
        if decays:
            parameter = self._decayed(parameter, scalars["learning_rate"])
        if step_scale != 1.0:
            scalars = dict(scalars, learning_rate=scalars["learning_rate"] * step_scale)
        finite = _square_is_finite(gradient) if self._check_gradient_only else None
        return gradient, old_value, old_state, parameter, scalars, finite

    def _step(self, gradient, old_value, old_state, network_weights, scalars, decays, step_scale):
        """Decay, the rule (moments, then the network's update), the guard,
        and the selection that leaves everything as it was on a non-finite
        step. Selection, not Python control flow: this runs inside XLA."""
        prepared = self._prepared(gradient, old_value, list(old_state), scalars, decays, step_scale)
        gradient, old_value, old_state, parameter, scalars, finite = prepared
        if self._check_gradient_only:
            update, new_state = self._learned_step_after_moments(
                gradient, parameter, old_state, finite, network_weights, scalars
            )
        else:
            update, new_state = rule.step(
                BoundNetwork(self._network, network_weights, self._zeros),
                rule.unflatten_state(old_state),
                gradient,
                ops.cast(parameter, "float32"),
                **self._rule_arguments(scalars),
            )
        return self._finished(*prepared, update, new_state)

    def _finished(self, gradient, old_value, old_state, parameter, scalars, finite, update, new_state):
        """The new value, slots and counts of a step from the rule's
        `(update, new_state)` (see `_step`)."""
        new_value = parameter - ops.cast(update, parameter.dtype)
        new_value, fell_back = self._guarded(parameter, new_value, new_state, scalars)
        new_slots = list(rule.flatten_state(new_state))
        if self._check_gradient_only:
            # The moments were selected before the network read them; the
            # per-tensor state (a few floats) is selected here.
            per_parameter = len(new_slots) - len(new_state.tensor_state)
            new_slots = new_slots[:per_parameter] + _select(
                finite, new_slots[per_parameter:], old_state[per_parameter:]
            )
        else:
            finite = all_finite(gradient, new_value)
            new_slots = _select(finite, new_slots, old_state)
        return (
            ops.where(finite, new_value, old_value),
            tuple(new_slots),
            ops.cast(ops.logical_not(finite), self._counter_dtype),
            ops.cast(ops.logical_and(fell_back, finite), self._counter_dtype),
        )

    def _rule_arguments(self, scalars):
        return dict(scalars, feature_names=self._feature_names)

    def _decayed(self, parameter, learning_rate):
        """`parameter` after decoupled weight decay."""
        # The association of keras' AdamW: (v * wd) * lr.
        return parameter - parameter * ops.cast(self._weight_decay, parameter.dtype) * ops.cast(
            learning_rate, parameter.dtype
        )

    def _learned_step_after_moments(self, gradient, parameter, old_state, finite, network_weights, scalars):
        """The rule's `(update, new_state)` with the moments moved first,
        and kept as they were unless `finite`.

        The network reads the moments as they are stored, so XLA writes each
        slot in place and then computes the step from the written values,
        with no copy of the old ones.
        """
        moved = rule.update_moments(rule.unflatten_state(old_state), gradient)
        state = rule.unflatten_state(_select(finite, rule.flatten_state(moved), old_state))
        return rule.step_with_moments(
            BoundNetwork(self._network, network_weights, self._zeros),
            state,
            gradient,
            ops.cast(parameter, "float32"),
            **self._rule_arguments(scalars),
        )

    def _guarded(self, parameter, new_value, new_state, scalars):
        """`(new_value, fell_back)`: Adam's step where the guard rejects the
        learned one (no guard: never)."""
        if self._guard is None:
            return new_value, ops.convert_to_tensor(False)
        learning_rate = scalars["learning_rate"]
        adam = self._guard.adam_step(new_state, scalars["iteration"], learning_rate)
        # The step taken, not `update`: a second use of `update` changes
        # how TensorFlow and XLA fuse (and round) the learned path.
        taken = ops.cast(parameter - new_value, "float32")
        fell_back = ops.logical_not(self._guard.accepts(taken, adam))
        new_value = ops.where(fell_back, parameter - ops.cast(adam, parameter.dtype), new_value)
        return new_value, fell_back


def _square_is_finite(gradient):
    """Whether `gradient` and its square are finite: a scalar bool.

    `square` overflows where the second moment would: such a step is
    skipped too, not folded into the state as an inf. (This reduction is
    faster under XLA on CPU than `all_finite`'s sum for one tensor.) A
    square is finite exactly where it times zero is zero (NaN otherwise):
    the comparison compiles faster than TensorFlow's `IsFinite`, which it
    lowers to XLA through an MLIR pipeline per use.
    """
    return ops.all(ops.equal(ops.square(gradient) * 0.0, 0.0))


def _select(finite, new, old):
    """`new` where `finite`, else `old`, element by element of two lists."""
    return [ops.where(finite, n, o) for n, o in zip(new, old)]
