"""Trains tiny models with `LearnedOptimizer` on Keras' current backend and
saves the results to an npz file, for `test_backends.py` to compare across
backends.

Run as `KERAS_BACKEND=jax python tests/backend_trajectories.py GROUP OUT.npz`
with GROUP one of `CASES`. All initial weights and data come from numpy, so
the runs on two backends start from the same values. Each case writes arrays
named `CASE/NAME`.
"""

import os
import sys
import tempfile
import warnings

import keras
import numpy as np

import keras_lopt
from keras_lopt.compiled_update import VariableStep

FIT_STEPS = 100
APPLY_STEPS = 30
LOSS_FIT_STEPS = 20
BATCH = 16


def _data(steps, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH * steps, 6)).astype("float32")
    y = (x[:, :1] * 0.5 - x[:, 1:2] + 0.1 * rng.normal(size=(len(x), 1))).astype("float32")
    return x, np.concatenate([y, np.tanh(x[:, 2:3])], axis=1).astype("float32")


def _model(dtype_policy=None):
    rng = np.random.default_rng(1)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", dtype=dtype_policy),
            keras.layers.Dense(2, dtype=dtype_policy),
        ]
    )
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.weights])
    return model


def _fit(optimizer, steps=FIT_STEPS, dtype_policy=None, model=None):
    x, y = _data(steps)
    model = model or _model(dtype_policy)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=True)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return model


def _weights(model):
    return {f"w{i}": np.asarray(w, "float32") for i, w in enumerate(model.get_weights())}


def keras_file_case():
    """Trains half the steps, saves a `.keras` file, loads it and trains the
    other half; and the same steps without the round trip."""
    half = FIT_STEPS // 2
    x, y = _data(FIT_STEPS)
    model = _model()
    model.compile(optimizer=keras_lopt.LearnedOptimizer(), loss="mse", jit_compile=True)
    model.fit(x[: BATCH * half], y[: BATCH * half], batch_size=BATCH, shuffle=False, verbose=0)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        restored = keras.models.load_model(path)
    saved = [np.asarray(v) for v in model.optimizer.variables]
    loaded = [np.asarray(v) for v in restored.optimizer.variables]
    state_equal = len(saved) == len(loaded) and all(np.array_equal(a, b) for a, b in zip(saved, loaded))
    restored.fit(x[BATCH * half :], y[BATCH * half :], batch_size=BATCH, shuffle=False, verbose=0)
    return {
        **_weights(restored),
        "state_equal": np.asarray(state_equal),
        "iterations": np.asarray(int(restored.optimizer.iterations.numpy())),
    }


def _quadratic_gradients(variables, targets):
    """Loss and gradients of `sum((v - t)**2 * (1 + i))`, in numpy."""
    loss, gradients = 0.0, []
    for i, (variable, target) in enumerate(zip(variables, targets)):
        error = np.asarray(variable) - target
        loss += float(np.sum(error**2 * (1 + i)))
        gradients.append((2 * (1 + i) * error).astype("float32"))
    return loss, gradients


def apply_case(preset, nonfinite_steps=()):
    """Eager `apply` on two variables with numpy gradients of a quadratic,
    the loss given by `set_loss`; NaN gradients at `nonfinite_steps`."""
    rng = np.random.default_rng(2)
    variables = [
        keras.Variable(rng.normal(size=shape).astype("float32"), name=f"v{i}") for i, shape in enumerate([(5, 3), (3,)])
    ]
    targets = [rng.normal(size=v.shape).astype("float32") for v in variables]
    optimizer = keras_lopt.LearnedOptimizer(preset=preset, total_steps=APPLY_STEPS)
    # Counts the steps whose variables were stepped together (JAX,
    # PyTorch). TensorFlow steps them one by one here, so that the other
    # backends' batched steps are held to its per-variable programs
    # (`tests/test_performance_guard.py` holds its batched steps to them).
    many, batches, batched_calls = VariableStep.many, VariableStep.batches, []

    def counted(self, items, *args):
        batched_calls.append(len(items))
        return many(self, items, *args)

    VariableStep.many = counted
    if keras.backend.backend() == "tensorflow":
        VariableStep.batches = lambda self: False
    try:
        for step in range(APPLY_STEPS):
            loss, gradients = _quadratic_gradients(variables, targets)
            if step in nonfinite_steps:
                gradients[0][0, 0] = np.nan
            optimizer.set_loss(loss)
            optimizer.apply(gradients, variables)
    finally:
        VariableStep.many, VariableStep.batches = many, batches
    return {
        **{f"w{i}": np.asarray(v) for i, v in enumerate(variables)},
        "skipped": np.asarray(optimizer.skipped_updates),
        "batched_calls": np.asarray(batched_calls, "int64").reshape([-1]),
    }


def loss_fit_case():
    """`fit` with a preset that reads the training loss (`ffn_lstm_es_v2`):
    the number of steps at which the loss had reached the optimizer."""

    class Counting(keras_lopt.LearnedOptimizer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.steps_with_loss = self.add_variable((), initializer="zeros", name="steps_with_loss")

        def apply(self, grads, trainable_variables=None):
            self.steps_with_loss.assign_add(self._loss_known)
            return super().apply(grads, trainable_variables)

    optimizer = Counting(preset="ffn_lstm_es_v2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX: "reads the training loss, but ..."
        model = _fit(optimizer, steps=LOSS_FIT_STEPS)
    return {**_weights(model), "steps_with_loss": np.asarray(optimizer.steps_with_loss)}


class _WithoutLoss(keras_lopt.LearnedOptimizer):
    """The default preset never given the loss, as Keras' JAX `fit` runs it."""

    def set_loss(self, loss):
        return


# Group -> case -> a function returning `{name: array}`. "fast" runs in the
# default test run; "slow" covers the other architectures and mixed precision.
CASES = {
    "fast": {
        "adam_equivalent": lambda: _weights(_fit(keras_lopt.LearnedOptimizer(preset="adam_equivalent_v1"))),
        "keras_adam": lambda: _weights(_fit(keras.optimizers.Adam(learning_rate=1e-3))),
        "default": lambda: _weights(_fit(keras_lopt.LearnedOptimizer())),
        "default_without_loss": lambda: _weights(_fit(_WithoutLoss())),
        "keras_file": keras_file_case,
        "nonfinite_skip": lambda: apply_case("mlp_local_es_v1", nonfinite_steps=(3, 4)),
        "default_nonfinite_skip": lambda: apply_case("adaptive_fan_in_v1", nonfinite_steps=(3, 4)),
        "loss_fit": loss_fit_case,
    },
    "slow": {
        "adaptive_mlp": lambda: _weights(_fit(keras_lopt.LearnedOptimizer(preset="adam_hypergradient_v1"))),
        "full_features_guard_decay": lambda: _weights(
            _fit(keras_lopt.LearnedOptimizer(preset="mlp_es_v4", guard="adam", weight_decay=0.01))
        ),
        "mixed_float16": lambda: _weights(_fit(keras_lopt.LearnedOptimizer(), dtype_policy="mixed_float16")),
        "ffn_lstm": lambda: apply_case("ffn_lstm_es_v2"),
        "hyper_lstm": lambda: apply_case("hyper_lstm_es_v2"),
    },
}


def _device():
    """What the backend computes on: "cpu" or the accelerator's name."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return "cpu" if device.platform == "cpu" else device.device_kind
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "cpu"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")


def main(group, path):
    arrays = {"backend": np.asarray(keras.backend.backend()), "device": np.asarray(_device())}
    for case, run in CASES[group].items():
        arrays.update({f"{case}/{name}": value for name, value in run().items()})
    np.savez(path, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
