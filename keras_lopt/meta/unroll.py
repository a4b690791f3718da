"""The inner training loop: `rule.step` applied to a Task for K steps.

Everything here is traced into one XLA program per (task structure,
objective), whatever the number of steps: a population of members, each with its own
meta-weights and its own inner training state, is vectorised with
`tf.vectorized_map`, and each member runs K inner steps in a `tf.while_loop`.
"""

import dataclasses
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from keras_lopt import fan_in, features, rule, validation
from keras_lopt.layers import BoundNetwork

# The meta-objectives `Unroll` computes: objective -> (the losses it scores,
# how it reduces their per-step values; see `_objective`). "valid" scores
# validation batches (one more loss per step); "joint" the mean of the
# training and the validation values, so lowering one loss by raising the
# other as much (in log terms) scores nothing.
_OBJECTIVES = {
    "mean": ("train", "mean"),
    "final": ("train", "final"),
    "tail": ("train", "tail"),
    "validation": ("valid", "mean"),
    "validation_tail": ("valid", "tail"),
    "joint_tail": ("joint", "tail"),
}
OBJECTIVES = tuple(_OBJECTIVES)
# The objectives that need validation batches.
VALIDATION_OBJECTIVES = tuple(o for o, (scored, _) in _OBJECTIVES.items() if scored != "train")
# A member whose loss is non-finite or grows past this multiple of its
# initial loss scores as if it were exactly here: a bounded penalty.
LOSS_CLIP_RATIO = 100.0
# Random stream (with the trajectory seed) that decides whether a
# trajectory's rule is told the training loss.
_LOSS_VISIBILITY_STREAM = 7919
# Random stream (with the trajectory seed) of its parameter scale.
_PARAMETER_SCALE_STREAM = 104729
# The per-trajectory `[M]` fields of `InnerState`, after params and slots.
_TRAJECTORY_FIELDS = ("step", "total_steps", "horizon_visible", "seed", "loss_ref")


def weight_shapes(layer):
    return [tuple(w.shape) for w in layer.weights]


def flatten_weights(weights):
    """List of arrays -> float32 vector `[D]`."""
    return np.concatenate([np.asarray(w, np.float32).ravel() for w in weights])


def unflatten_weights(theta, shapes):
    """Vector `[D]` (numpy or tensor) -> list of tensors with `shapes`."""
    sizes = [int(np.prod(s)) for s in shapes]
    parts = tf.split(theta, sizes)
    return [tf.reshape(p, s) for p, s in zip(parts, shapes)]


@dataclasses.dataclass
class InnerState:
    """Inner training state of a population of `M` members (leading axis M).

    params: list of `[M, *shape]` per task parameter.
    slots: list (per parameter) of tuples of `[M, *shape]` rule slots.
    step: `[M]` int32, inner steps taken so far in each trajectory.
    total_steps: `[M]` float32, each trajectory's horizon.
    horizon_visible: `[M]` float32, 1 if the rule is told the horizon, 0 if
        it must work without it (as `LearnedOptimizer` without
        `total_steps`).
    seed: `[M]` int32, each trajectory's data/noise seed.
    loss_ref: `[M]` float32, each trajectory's initial loss (set at step 0).
    """

    params: List
    slots: List
    step: tf.Tensor
    total_steps: tf.Tensor
    horizon_visible: tf.Tensor
    seed: tf.Tensor
    loss_ref: tf.Tensor

    def as_tuple(self):
        return (
            self.params,
            self.slots,
            self.step,
            self.total_steps,
            self.horizon_visible,
            self.seed,
            self.loss_ref,
        )

    @classmethod
    def from_tuple(cls, values):
        return cls(*values)

    def to_arrays(self, slot_names: Sequence[str]) -> Dict[str, np.ndarray]:
        """All arrays by name (for checkpoints): `params/{j}`,
        `slots/{j}/{name}` for each of `slot_names` (`rule.state_slot_names`
        of the network), and the per-trajectory fields."""
        arrays = {f"params/{j}": np.asarray(p) for j, p in enumerate(self.params)}
        for j, slots in enumerate(self.slots):
            if len(slots) != len(slot_names):
                raise ValueError(f"Expected {len(slots)} slot names. Received: {list(slot_names)}")
            for name, value in zip(slot_names, slots):
                arrays[f"slots/{j}/{name}"] = np.asarray(value)
        for name in _TRAJECTORY_FIELDS:
            arrays[name] = np.asarray(getattr(self, name))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Dict[str, np.ndarray], slot_names: Sequence[str]) -> "InnerState":
        """Inverse of `to_arrays`."""
        count = sum(1 for key in arrays if key.startswith("params/"))
        return cls(
            params=[tf.constant(arrays[f"params/{j}"]) for j in range(count)],
            slots=[tuple(tf.constant(arrays[f"slots/{j}/{name}"]) for name in slot_names) for j in range(count)],
            **{name: tf.constant(arrays[name]) for name in _TRAJECTORY_FIELDS},
        )


def fresh_state(task, seeds, total_steps, horizon_visible=None, network=None, init_pool_size=None):
    """Inner state at step 0 for trajectories with the given seeds.

    Args:
        task: Task.
        seeds: int array `[M]`: initialisation and data seed per member.
        total_steps: array `[M]`: horizon per member.
        horizon_visible: array `[M]` of 0/1 (default all 1).
        network: the learned-optimizer layer; needed for networks with
            per-tensor state (their slots `[M, *shape]` follow the
            per-parameter ones).
        init_pool_size: see `MetaTrainConfig.init_pool_size`
            (`Task.initial_params`).
    """
    inits = [task.initial_params(int(s), init_pool_size) for s in seeds]
    params = [tf.constant(np.stack(p)) for p in zip(*inits)]
    m = len(seeds)
    tensor_slots = tuple(tf.zeros([m, *shape]) for shape in rule.tensor_state_shapes(network))
    slots = [tuple(tf.zeros_like(p) for _ in rule.state_slot_names()) + tensor_slots for p in params]
    return InnerState(
        params=params,
        slots=slots,
        step=tf.zeros([m], tf.int32),
        total_steps=tf.constant(np.asarray(total_steps, np.float32)),
        horizon_visible=tf.constant(
            np.ones(m, np.float32) if horizon_visible is None else np.asarray(horizon_visible, np.float32)
        ),
        seed=tf.constant(np.asarray(seeds, np.int32)),
        loss_ref=tf.ones([m], tf.float32),
    )


def _meta_values(losses, loss_ref, min_loss_ratio):
    """Per-step meta-loss values: log(loss / initial loss), bounded.

    Below `min_loss_ratio` there is no further reward, so tasks that can be
    memorised down to zero loss do not dominate the meta-gradient.
    """
    ratio = losses / loss_ref
    ratio = tf.where(tf.math.is_finite(ratio), ratio, LOSS_CLIP_RATIO)
    return tf.math.log(tf.clip_by_value(ratio, min_loss_ratio, LOSS_CLIP_RATIO))


def loss_visible(seeds, fraction):
    """`[M]` float32 0/1: whether each trajectory's rule is told the loss.

    A function of the trajectory seed alone, so a resumed trajectory keeps
    its visibility without storing it.
    """
    return np.asarray(
        [np.random.default_rng([int(s), _LOSS_VISIBILITY_STREAM]).uniform() < fraction for s in np.asarray(seeds)],
        np.float32,
    )


def parameter_scales(seeds, scale_range):
    """`[M]` float32: each trajectory's reparametrisation scale `c`.

    Log-uniform in `scale_range = (low, high)`, a function of the trajectory
    seed alone (see `MetaTrainConfig.parameter_scale_range`).
    """
    low, high = (float(v) for v in scale_range)
    return np.asarray(
        [
            np.exp(np.random.default_rng([int(s), _PARAMETER_SCALE_STREAM]).uniform(np.log(low), np.log(high)))
            for s in np.asarray(seeds)
        ],
        np.float32,
    )


def _objective(objective, values, num_steps):
    """Meta-loss of one member from its per-step values `[K_max]`, of which
    the first `num_steps` (an int32 scalar tensor) were run."""
    index = tf.range(tf.shape(values)[0])
    reduction = _OBJECTIVES[objective][1]
    if reduction == "final":
        return tf.gather(values, num_steps - 1)
    if reduction == "tail":
        tail = tf.maximum(1, num_steps // 10)
        mask = (index >= num_steps - tail) & (index < num_steps)
        return tf.reduce_sum(tf.where(mask, values, 0.0)) / tf.cast(tail, tf.float32)
    # "mean": the mean over every step run.
    return tf.reduce_sum(tf.where(index < num_steps, values, 0.0)) / tf.cast(num_steps, tf.float32)


class Unroll:
    """A compiled inner training loop for one task structure and objective.

    `unroll(thetas [M, D], state, num_steps=None) -> (state, meta [M],
    losses [M, K])`: each member m trains its own task parameters for K
    steps with meta-weights `thetas[m]`; `meta[m]` is its meta-loss on
    this truncation (see `OBJECTIVES`) and `losses[m]` its raw training
    losses. K is any length from 1 to `max_steps` (default: `max_steps`),
    a runtime argument of one compiled program, so one `Unroll` per task
    structure serves every truncation and horizon length.

    Args:
        task: the `tasks.Task` trained.
        layer: the learned-optimizer network (`layers`); `thetas` are its
            flattened weights (`flatten_weights`).
        num_steps: `max_steps`, the longest K.
        objective: one of `OBJECTIVES`.
        learning_rate: the rule's `learning_rate`.
        jit_compile: False gives a program that can be differentiated with
            respect to `thetas` (XLA cannot differentiate the while loop),
            which the estimator tests use as ground truth.
        min_loss_ratio: floors the loss ratio in the meta-loss
            (`_meta_values`).
        loss_visible_fraction: networks that read the loss (per-tensor
            state) are given each step's training loss in this fraction of
            the trajectories (`loss_visible`) and `loss_known` = 0 in the
            others, as `LearnedOptimizer` runs with and without a loss.
        feature_names: the features `layer` reads (`rule.step`).
        parameter_scale_range: other than `(1, 1)`, each trajectory trains
            its task reparametrised by its `parameter_scales` `c`: the state
            holds `phi = c * theta` (scaled when the trajectory starts, at
            step 0) and the task's loss is evaluated at `phi / c`.
        fan_in_base: each kernel's `learning_rate` is scaled by `min(1,
            fan_in_base / fan_in)` (`keras_lopt.fan_in`); None: no scaling.
    """

    def __init__(
        self,
        task,
        layer,
        num_steps: int,
        objective: str,
        learning_rate: float,
        jit_compile: bool = True,
        min_loss_ratio: float = 1e-12,
        loss_visible_fraction: float = 0.5,
        feature_names: Sequence[str] = features.FEATURE_NAMES,
        parameter_scale_range=(1.0, 1.0),
        fan_in_base=None,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"`objective` must be one of {OBJECTIVES}. Received: objective={objective!r}")
        validation.positive_int("num_steps", num_steps)
        self.layer = layer
        self.max_steps = int(num_steps)
        self._loss_visible_fraction = loss_visible_fraction
        self._parameter_scale_range = parameter_scale_range
        self._program = _compile(
            task,
            layer,
            self.max_steps,
            objective,
            learning_rate,
            jit_compile,
            min_loss_ratio,
            feature_names,
            tuple(parameter_scale_range) != (1.0, 1.0),
            fan_in_base,
        )

    @property
    def tracing_count(self) -> int:
        """How many programs have been traced (one per population size M)."""
        return self._program.experimental_get_tracing_count()

    def __call__(self, thetas, state: InnerState, num_steps=None):
        """Runs `num_steps` (default `max_steps`) inner steps; see the class."""
        steps = self.max_steps if num_steps is None else int(num_steps)
        if not 1 <= steps <= self.max_steps:
            raise ValueError(
                f"This unroll was built for at most {self.max_steps} steps. Received: num_steps={num_steps!r}"
            )
        seeds = state.seed.numpy()
        new_state, meta, losses = self._program(
            tf.convert_to_tensor(thetas, tf.float32),
            state.as_tuple(),
            tf.constant(loss_visible(seeds, self._loss_visible_fraction)),
            tf.constant(parameter_scales(seeds, self._parameter_scale_range)),
            tf.constant(steps, tf.int32),
        )
        return InnerState.from_tuple(new_state), meta, losses[:, :steps]


def _compile(
    task,
    layer,
    max_steps,
    objective,
    learning_rate,
    jit_compile,
    min_loss_ratio,
    feature_names,
    reparametrized,
    fan_in_base,
):
    """The `tf.function` behind `Unroll`: `(thetas, state tuple, loss_known
    [M], scales [M], steps) -> (state tuple, meta [M], losses [M, max_steps])`."""
    shapes = weight_shapes(layer)
    train_data = tuple(tf.constant(a) for a in task.train_data)
    valid_data = tuple(tf.constant(a) for a in task.valid_data)

    def member(theta, params, slots, step, total_steps, horizon_visible, seed, loss_ref, loss_known, scale, steps):
        network = BoundNetwork(layer, unflatten_weights(theta, shapes))

        def task_loss(params, batch):
            if reparametrized:
                params = [p / scale for p in params]
            return task.loss(params, batch)

        if reparametrized:
            params = [tf.where(step == 0, p * scale, p) for p in params]
        fan_ins = task.parameter_fan_ins([p.shape for p in params])
        rates = [learning_rate * fan_in.step_scale(n, fan_in_base) for n in fan_ins]

        def body(k, params, slots, loss_ref, train_losses, valid_losses):
            t = step + k
            batch_seed = tf.stack([seed, t])
            batch = task.sample_batch(train_data, batch_seed)
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = task_loss(params, batch)
            grads = tape.gradient(loss, params)
            loss_ref = tf.where(t == 0, loss, loss_ref)
            new_params, new_slots = [], []
            for p, g, s, rate in zip(params, grads, slots, rates):
                update, new = rule.step(
                    network,
                    rule.unflatten_state(s),
                    g,
                    p,
                    iteration=t + 1,
                    total_steps=total_steps * horizon_visible,
                    learning_rate=rate,
                    loss=loss,
                    loss_known=loss_known,
                    feature_names=feature_names,
                )
                new_params.append(p - update)
                new_slots.append(rule.flatten_state(new))
            one_hot = tf.one_hot(k, max_steps)
            train_losses = train_losses + one_hot * loss
            if objective in VALIDATION_OBJECTIVES:
                valid_batch = task.sample_batch(valid_data, batch_seed + 1)
                valid_losses = valid_losses + one_hot * task_loss(new_params, valid_batch)
            return k + 1, new_params, new_slots, loss_ref, train_losses, valid_losses

        zeros = tf.zeros([max_steps])
        _, params, slots, loss_ref, train_losses, valid_losses = tf.while_loop(
            lambda k, *_: k < steps,
            body,
            (tf.constant(0), params, slots, loss_ref, zeros, zeros),
            maximum_iterations=max_steps,
        )
        scored = _OBJECTIVES[objective][0]
        if scored == "joint":
            values = 0.5 * (
                _meta_values(train_losses, loss_ref, min_loss_ratio)
                + _meta_values(valid_losses, loss_ref, min_loss_ratio)
            )
        else:
            values = _meta_values(valid_losses if scored == "valid" else train_losses, loss_ref, min_loss_ratio)
        meta = _objective(objective, values, steps)
        return (
            params,
            slots,
            step + steps,
            total_steps,
            horizon_visible,
            seed,
            loss_ref,
            meta,
            train_losses,
        )

    # One trace per population size M, never a relaxed `[None, ...]` trace:
    # the trainer calls the same unroll with M = 2 * num_pairs (estimates)
    # and M = 1 (evaluation), and with `reduce_retracing` the program an M
    # gets would depend on the order of the calls (a relaxed trace computes
    # the same values up to float rounding), so a resumed run would not
    # reproduce an uninterrupted one bit for bit.
    @tf.function(jit_compile=jit_compile)
    def unroll(thetas, state_tuple, loss_known, scales, steps):
        # `steps` is captured, not mapped: the loop bound is the same for
        # every member, so the vectorised while loop needs no per-member mask.
        out = tf.vectorized_map(lambda args: member(*args, steps), (thetas, *state_tuple, loss_known, scales))
        *new_state, meta, losses = out
        return tuple(new_state), meta, losses

    return unroll
