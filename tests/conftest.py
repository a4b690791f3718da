"""Shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_lopt import features  # noqa: E402
from keras_lopt.layers import MLPNetwork  # noqa: E402


@pytest.fixture
def random_network():
    """An MLPNetwork with seeded random (non-Adam) weights."""
    network = MLPNetwork(num_features=features.NUM_FEATURES, name="random_net")
    rng = np.random.default_rng(1234)
    network.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in network.weights])
    return network


def export_random_preset(network, path, **info):
    """Exports `network` as the preset "random_v1" (learning rate 1e-3) with
    further `savedmodel.PresetInfo` fields `info`; returns the `LoadedPreset`."""
    from keras_lopt import savedmodel

    return savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(name="random_v1", learning_rate=1e-3, provenance={"method": "random for tests"}, **info),
    )


@pytest.fixture
def random_preset(tmp_path, random_network):
    """A preset directory holding `random_network`."""
    path = tmp_path / "random_preset"
    export_random_preset(random_network, path)
    return str(path)


@pytest.fixture
def local_preset(tmp_path):
    """A preset of seeded random weights on the "local" features, with a
    bounded step multiplier."""
    from keras_lopt import savedmodel

    names = features.FEATURE_SETS["local"]
    network = MLPNetwork(num_features=len(names), magnitude_scale=0.5, max_log_multiplier=2.0, name="local_net")
    rng = np.random.default_rng(7)
    network.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in network.weights])
    path = tmp_path / "local_random"
    savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(
            name="local_random_v1",
            learning_rate=1e-2,
            provenance={"method": "random for tests"},
            feature_set="local",
        ),
    )
    return str(path)


def checkpoint_step(path):
    """Outer step of a meta-training checkpoint file; -1 while absent or half-read."""
    try:
        with np.load(path) as data:
            return int(data["step"])
    except (OSError, KeyError, ValueError):
        return -1


def small_classifier(seed=0, inputs=8, classes=3):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(classes),
        ]
    )


def xla_train_step(model, optimizer, loss_fn):
    """A `tf.function(jit_compile=True)` step: loss, gradients, apply."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return train_step


def classification_data(n=256, inputs=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, inputs)).astype("float32")
    w = rng.normal(size=(inputs, classes))
    y = np.argmax(x @ w, axis=1).astype("int32")
    return x, y


def unroll_and_optimizer_losses(preset, steps, seed=77, learning_rate=1e-2):
    """Training losses of the same noise-free quadratic run twice: by the
    meta-training unroll and by `LearnedOptimizer` in a custom loop (which
    is given each step's loss, as the unroll's trajectories with the loss
    visible). Returns `(unroll_losses [steps], optimizer_losses [steps])`.
    """
    import tensorflow as tf

    import keras_lopt
    from keras_lopt import presets
    from keras_lopt.meta import tasks, unroll

    loaded = presets.load_preset(preset)
    # Noise-free: XLA and TF kernels draw different stateless random numbers.
    task = tasks.quadratic_task(dim=8, noise=0.0, seed=3)
    run = unroll.Unroll(
        task,
        loaded.network,
        steps,
        "mean",
        learning_rate,
        loss_visible_fraction=1.0,
        feature_names=loaded.feature_names,
    )
    state = unroll.fresh_state(task, [seed], [steps], [1.0], network=loaded.network)
    _, _, losses = run(unroll.flatten_weights(loaded.weights)[None], state)

    optimizer = keras_lopt.LearnedOptimizer(preset=preset, learning_rate=learning_rate, total_steps=steps)
    x = tf.Variable(task.init_params(seed)[0])
    expected = []
    for t in range(steps):
        batch = task.sample_batch(task.train_data, tf.constant([seed, t]))
        with tf.GradientTape() as tape:
            loss = task.loss([x], batch)
        expected.append(float(loss))
        optimizer.set_loss(loss)
        optimizer.apply_gradients([(tape.gradient(loss, x), x)])
    return losses.numpy()[0], np.asarray(expected)
