"""The recurrent, attention and autoencoder meta-training families train."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lopt.meta import families


def _adam_losses(task, steps, learning_rate):
    params = [tf.Variable(p) for p in task.init_params(0)]
    optimizer = keras.optimizers.Adam(learning_rate)
    losses = []
    for t in range(steps):
        batch = task.sample_batch(task.train_data, tf.constant([0, t]))
        with tf.GradientTape() as tape:
            loss = task.loss(params, batch)
        optimizer.apply_gradients(zip(tape.gradient(loss, params), params))
        losses.append(float(loss))
    return np.array(losses)


@pytest.mark.parametrize(
    "family, size",
    [("gru_parity", 2), ("attention_parity", 2), ("autoencoder_mnist1d", 2)],
)
def test_new_families_have_distinct_structures_that_adam_trains(family, size):
    family = families.get_family(family)
    assert len(family) == size
    structures = {family.task(i).structure for i in range(size)}
    assert len(structures) == size
    losses = _adam_losses(family.task(0), 100, 3e-2)
    assert np.all(np.isfinite(losses))
    assert losses[-10:].mean() < 0.9 * losses[:10].mean(), losses


def test_autoencoder_family_reconstructs_its_input():
    task = families.get_family("autoencoder_mnist1d").task(1)
    x, y = task.train_data
    np.testing.assert_array_equal(x, y)
    assert x.shape[1] == 40
    # Encoder 32 -> 8, mirrored decoder 32, linear output 40.
    shapes = [p.shape for p in task.init_params(0)]
    assert shapes[::2] == [(40, 32), (32, 8), (8, 32), (32, 40)]


def test_patch_conv_is_keras_conv2d_with_a_gradient_that_vectorises():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    keras.utils.set_random_seed(1)
    reference = keras.layers.Conv2D(5, 3, padding="same", activation="relu")
    expected = reference(x)
    keras.utils.set_random_seed(1)
    layer = families.PatchConv2D(5, 3, activation="relu")
    got = layer(x)
    for a, b in zip(reference.get_weights(), layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    # Per-member filter gradients, as ES members take them, with no loop
    # fallback (the fallback is what made Conv2D slow in meta-training).
    kernels = tf.constant(rng.normal(size=(3, 3, 3, 3, 5)).astype("float32"))

    def filter_gradient(kernel):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            out = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))
            loss = tf.reduce_sum(out**2)
        return tape.gradient(loss, kernel)

    def patch_gradient(kernel):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            out, _ = layer.stateless_call([kernel, tf.zeros(5)], [], x)
            loss = tf.reduce_sum(out**2)
        return tape.gradient(loss, kernel)

    vectorised = tf.vectorized_map(patch_gradient, kernels, fallback_to_while_loop=False)
    for i in range(3):
        np.testing.assert_allclose(vectorised[i], filter_gradient(kernels[i]), rtol=1e-4, atol=1e-4)


def test_conv_family_trains_with_adam():
    task = families.get_family("conv_digits").task(0)
    losses = _adam_losses(task, steps=200, learning_rate=3e-2)
    assert np.all(np.isfinite(losses)) and np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
