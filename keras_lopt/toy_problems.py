"""Two-dimensional test problems and optimizer trajectories on them.

Each problem is a loss of one parameter tensor `[x, y]` (shape `[2]`): what
any Keras optimizer sees, so the learned rule runs exactly as in `fit`.

* `product`: `(x * y - 1)^2`. Its minima form the hyperbola `x * y = 1`;
  which one an optimizer reaches from an unbalanced start (e.g. x small,
  y large) shows its implicit bias: gradient descent keeps `x^2 - y^2`
  nearly constant, sign-like rules such as Adam move both coordinates alike.
* `difference`: `(x - y)^2`, minima on the line `x = y`.
* `rosenbrock`: `(1 - x)^2 + 100 (y - x^2)^2`, a curved valley to `(1, 1)`.

Optimizers are named by the specs of `keras_lopt.evaluation.specs` (e.g.
`learned`, `learned:PRESET_OR_PATH`, `adam@0.03`, `sgd`, `rmsprop`). Without
`@LR` the learned rule runs at its preset's own rate (as `LearnedOptimizer()`
does), Adam at the problem's `learning_rate`, SGD at its `sgd_learning_rate`
and any other optimizer at its Keras default.
"""

import dataclasses
import os
from typing import Callable, Tuple

import keras
import numpy as np
import tensorflow as tf

from keras_lopt.evaluation import specs


@dataclasses.dataclass(frozen=True)
class Problem:
    """A 2-D loss with the settings its plots use.

    loss: `[2]` float32 tensor -> scalar.
    starts: starting points `(x, y)`.
    limits: `((x_min, x_max), (y_min, y_max))` of the contour plot.
    learning_rate: default rate of Adam.
    sgd_learning_rate: default rate of SGD (stable on this problem).
    """

    name: str
    formula: str
    loss: Callable
    starts: Tuple[Tuple[float, float], ...]
    limits: Tuple[Tuple[float, float], Tuple[float, float]]
    learning_rate: float
    sgd_learning_rate: float


PROBLEMS = {
    "product": Problem(
        "product",
        "(x y - 1)^2",
        lambda p: tf.square(p[0] * p[1] - 1.0),
        starts=((0.15, 2.5), (2.5, 0.15), (-0.5, 1.5), (0.5, -1.0)),
        limits=((-1.5, 3.0), (-1.5, 3.0)),
        learning_rate=1e-2,
        sgd_learning_rate=2e-2,
    ),
    "difference": Problem(
        "difference",
        "(x - y)^2",
        lambda p: tf.square(p[0] - p[1]),
        starts=((2.0, -1.0), (-1.5, 1.0), (0.5, 2.5), (2.5, 1.5)),
        limits=((-2.0, 3.0), (-2.0, 3.0)),
        learning_rate=1e-2,
        sgd_learning_rate=5e-2,
    ),
    "rosenbrock": Problem(
        "rosenbrock",
        "(1 - x)^2 + 100 (y - x^2)^2",
        lambda p: tf.square(1.0 - p[0]) + 100.0 * tf.square(p[1] - tf.square(p[0])),
        starts=((-1.2, 1.0), (0.0, 2.0), (1.8, 2.0)),
        limits=((-2.0, 2.0), (-0.5, 3.0)),
        learning_rate=1e-2,
        sgd_learning_rate=1e-3,
    ),
}


def get_problem(name):
    if name not in PROBLEMS:
        raise ValueError(f"Unknown problem {name!r}. Valid names: {sorted(PROBLEMS)}")
    return PROBLEMS[name]


def resolve_spec(spec, problem):
    """The `specs.Spec` that `spec` runs on `problem`: an `adam` or `sgd`
    spec without `@LR` takes the problem's rate for it."""
    parsed = specs.parse(spec)
    if parsed.learning_rate is None and parsed.kind in ("adam", "sgd"):
        rate = problem.learning_rate if parsed.kind == "adam" else problem.sgd_learning_rate
        parsed = dataclasses.replace(parsed, learning_rate=rate)
    return parsed


def make_optimizer(spec, problem):
    """A fresh Keras optimizer for `spec` at `problem`'s default rates."""
    return specs.build(resolve_spec(spec, problem))


def describe(spec, problem):
    """`(kind, label)` of a spec: its kind and a legend label with its rate."""
    parsed = resolve_spec(spec, problem)
    rate = float(keras.ops.convert_to_numpy(specs.build(parsed).learning_rate))
    name = f"learned {os.path.basename(parsed.preset)}" if parsed.kind == "learned" else parsed.kind
    return parsed.kind, f"{name}, lr {rate:g}"


def trajectories(problem, spec, steps):
    """Runs `spec` from every start of `problem` for `steps` steps.

    Every start is its own variable (own state, own per-tensor features);
    one optimizer updates them all in one XLA-compiled step.

    Returns:
        `(points, losses)`: float arrays `[starts, steps + 1, 2]` and
        `[starts, steps + 1]`, including the starting point.
    """
    variables = [tf.Variable(np.asarray(s, np.float32)) for s in problem.starts]
    optimizer = make_optimizer(spec, problem)
    optimizer.build(variables)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            losses = [problem.loss(v) for v in variables]
            total = tf.add_n(losses)
        grads = tape.gradient(total, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return tf.stack(losses)

    def current():
        return np.stack([v.numpy() for v in variables])

    points, losses = [current()], []
    for _ in range(steps):
        losses.append(step().numpy())
        points.append(current())
    final = [float(problem.loss(tf.constant(p))) for p in points[-1]]
    losses.append(np.asarray(final, np.float32))
    return np.stack(points, axis=1), np.stack(losses, axis=1)
