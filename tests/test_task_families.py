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
