"""Train a small Keras model on 8x8 digits with LearnedOptimizer and with Adam.

    python examples/digits_demo.py [--epochs 20]

Prints final train/validation loss and accuracy and the median seconds per
training step of each optimizer. Steps are timed with a callback that reads
the loss, which waits for the step to finish.
"""

import argparse
import time

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_lopt


class StepTimer(keras.callbacks.Callback):
    """Records the wall time of each training batch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # synchronise: the loss exists once the step ran
        self.seconds.append(time.perf_counter() - self._start)


def make_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    data = dict(
        x=x[:split],
        y=y[:split],
        validation_data=(x[split:], y[split:]),
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=0,
    )

    rows = []
    for label, optimizer in [
        ("LearnedOptimizer()", keras_lopt.LearnedOptimizer()),
        ("Adam(1e-3)", keras.optimizers.Adam(1e-3)),
    ]:
        model = make_model(args.seed)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            jit_compile=True,
        )
        timer = StepTimer()
        history = model.fit(callbacks=[timer], **data).history
        # The first steps include tracing and XLA compilation.
        steady = timer.seconds[len(timer.seconds) // 10 + 1 :]
        rows.append(
            (
                label,
                history["loss"][-1],
                history["val_loss"][-1],
                history["accuracy"][-1],
                history["val_accuracy"][-1],
                float(np.median(steady)),
            )
        )

    print(
        f"\n8x8 digits, MLP 64-128-64-10, {args.epochs} epochs, "
        f"batch {args.batch_size}, preset {keras_lopt.LearnedOptimizer().preset}"
    )
    header = ("optimizer", "train loss", "val loss", "train acc", "val acc", "time/step")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, *values in rows:
        print(
            f"| {label} | "
            + " | ".join(f"{v:.4f}" if i < 4 else f"{v * 1e3:.2f} ms" for i, v in enumerate(values))
            + " |"
        )


if __name__ == "__main__":
    main()
