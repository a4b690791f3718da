"""Keras callbacks for `LearnedOptimizer`."""

import warnings

import keras

from keras_lopt.optimizer import LearnedOptimizer


def find_learned_optimizer(optimizer):
    """The `LearnedOptimizer` in `optimizer`, unwrapping `LossScaleOptimizer`.

    Raises:
        ValueError: if there is none.
    """
    inner = optimizer
    while not isinstance(inner, LearnedOptimizer) and hasattr(inner, "inner_optimizer"):
        inner = inner.inner_optimizer
    if not isinstance(inner, LearnedOptimizer):
        raise ValueError(
            "The model's optimizer must be a `keras_lopt.LearnedOptimizer` "
            "(or a `LossScaleOptimizer` wrapping one). "
            f"Received: optimizer={optimizer!r}"
        )
    return inner


class TrainingHorizon(keras.callbacks.Callback):
    """Tells a `LearnedOptimizer` how long `fit` will train.

    At the start of `fit` it sets the optimizer's `total_steps` to the
    optimizer steps already taken plus those this `fit` will take:
    `(epochs - initial_epoch) * steps_per_epoch`, divided by
    `gradient_accumulation_steps` when that is set. The rule then sees its
    training progress (`iterations / total_steps`). A later `fit` call extends
    the horizon from where the previous one stopped; an explicit
    `LearnedOptimizer(total_steps=...)` is overwritten.

    When `fit` cannot know its number of steps (a generator or dataset of
    unknown length without `steps_per_epoch`), the horizon is left as it is
    and a warning says so.

    Example:

    ```python
    model.compile(optimizer=keras_lopt.LearnedOptimizer(), loss=...)
    model.fit(x, y, epochs=10, callbacks=[keras_lopt.TrainingHorizon()])
    ```
    """

    def on_train_begin(self, logs=None):
        self._pending = True

    def on_epoch_begin(self, epoch, logs=None):
        # Here rather than in on_train_begin: `epoch` is fit's initial_epoch.
        if not getattr(self, "_pending", False):
            return
        self._pending = False
        optimizer = find_learned_optimizer(self.model.optimizer)
        steps = self.params.get("steps")
        epochs = self.params.get("epochs")
        if not steps or not epochs:
            warnings.warn(
                "TrainingHorizon: `fit` does not know its number of steps "
                f"(steps={steps}, epochs={epochs}), so the optimizer's "
                f"horizon stays total_steps={optimizer.total_steps}. Pass "
                "`steps_per_epoch` to `fit` to set it.",
                stacklevel=2,
            )
            return
        batches = (epochs - epoch) * steps
        optimizer_steps = batches // (optimizer.gradient_accumulation_steps or 1)
        optimizer.total_steps = max(1, int(optimizer.iterations.numpy()) + optimizer_steps)
