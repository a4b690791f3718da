"""Scratch (2026-12-05, thirteenth session): Keras usage the default preset
should survive, on the backend `KERAS_BACKEND` names; prints what happened
(`python smoke_keras_usage.py`, once per backend), with Keras' Adam for the
two cases where Keras itself raises."""

import os
import tempfile
import warnings

import keras
import numpy as np

import keras_lopt

warnings.simplefilter("ignore")
X = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
Y = X[:, :1] * 2


def model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])


def attempt(label, function):
    try:
        print(label, function())
    except Exception as error:  # noqa: BLE001 - the point is to print it
        print(label, "raises", type(error).__name__, str(error)[:160])


def serialized():
    config = keras.optimizers.serialize(keras_lopt.LearnedOptimizer())
    again = keras.optimizers.deserialize(config)
    by_name = keras.optimizers.get(config["registered_name"])
    return config["registered_name"], type(again).__name__, type(by_name).__name__


def reused(make):
    first, second = model(0), model(1)
    optimizer = make()
    first.compile(optimizer, "mse")
    first.fit(X, Y, epochs=1, verbose=0)
    second.compile(optimizer, "mse")
    second.fit(X, Y, epochs=1, verbose=0)
    return "trains"


def resumed():
    trained = model(0)
    trained.compile(keras_lopt.LearnedOptimizer(), "mse")
    trained.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    trained.save(path)
    loaded = keras.saving.load_model(path)
    for m in (trained, loaded):
        m.fit(X, Y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(trained.get_weights(), loaded.get_weights()))


def learning_rates():
    m = model(0)
    optimizer = keras_lopt.LearnedOptimizer()
    m.compile(optimizer, "mse")
    halve = keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5, min_delta=10.0)
    m.fit(X, Y, epochs=3, verbose=0, callbacks=[halve, keras.callbacks.LearningRateScheduler(lambda e, lr: lr)])
    after_callbacks = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    optimizer.learning_rate = 0.5
    return after_callbacks, float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def frozen(make):
    m = model(0)
    m.compile(make(), "mse")
    m.fit(X, Y, epochs=1, verbose=0)
    m.layers[0].trainable = False
    m.compile(m.optimizer, "mse")
    before = m.layers[0].get_weights()[0].copy()
    m.fit(X, Y, epochs=1, verbose=0)
    kept = np.array_equal(before, m.layers[0].get_weights()[0])
    m.layers[0].trainable = True
    m.compile(m.optimizer, "mse")
    m.fit(X, Y, epochs=1, verbose=0)
    return f"frozen kept {kept}, unfrozen moved {not np.array_equal(before, m.layers[0].get_weights()[0])}"


def config_round_trip():
    optimizer = keras_lopt.LearnedOptimizer(weight_decay=0.01, clipnorm=1.0)
    return keras_lopt.LearnedOptimizer.from_config(optimizer.get_config()).get_config() == optimizer.get_config()


print(keras.backend.backend())
attempt("serialize/deserialize/get:", serialized)
attempt("one instance, two models (learned):", lambda: reused(keras_lopt.LearnedOptimizer))
attempt("one instance, two models (Adam):", lambda: reused(keras.optimizers.Adam))
attempt("resume from .keras, max difference:", resumed)
attempt("learning rate after callbacks, after assignment:", learning_rates)
attempt("freeze/unfreeze (learned):", lambda: frozen(keras_lopt.LearnedOptimizer))
attempt("freeze/unfreeze (Adam):", lambda: frozen(keras.optimizers.Adam))
attempt("config round trip:", config_round_trip)
for arguments in [dict(learning_rate=-1.0), dict(preset="nope"), dict(weight_decay=-0.1), dict(total_steps=-5)]:
    attempt(f"LearnedOptimizer(**{arguments}):", lambda a=arguments: keras_lopt.LearnedOptimizer(**a))
