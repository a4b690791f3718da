"""Terms of exactly zero preset weights are left out of the optimizer's step."""

import keras
import numpy as np
import tensorflow as tf

import keras_lopt
from keras_lopt.layers.mlp import elementwise_mlp, exact_zeros, split_weights


def _weights_with_zeros(seed=0):
    """A 3 -> 4 -> 4 -> 2 MLP with zero entries and a hidden unit no output
    reads (unit 2 of the second layer)."""
    rng = np.random.default_rng(seed)
    sizes = (3, 4, 4, 2)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        kernel = rng.normal(size=(fan_in, fan_out)).astype("float32")
        kernel[rng.random(kernel.shape) < 0.4] = 0.0
        weights += [kernel, rng.normal(size=fan_out).astype("float32")]
    weights[4][2, :] = 0.0
    return weights


def _columns(seed=1):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(5, 7)).astype("float32")) for _ in range(2)] + [tf.constant(0.3)]


def test_leaving_out_zero_terms_changes_no_output_and_shrinks_the_program():
    weights = [tf.constant(w) for w in _weights_with_zeros()]
    zeros = exact_zeros([w.numpy() for w in weights[0::2]])
    assert zeros[2][2] == (True, True)
    full = elementwise_mlp(weights, _columns(), "relu")
    pruned = elementwise_mlp(weights, _columns(), "relu", zeros)
    for a, b in zip(full, pruned):
        assert b.shape == (5, 7)
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    def count_ops(pattern):
        graph = tf.function(lambda *c: elementwise_mlp(weights, list(c), "relu", pattern)).get_concrete_function(
            *[tf.TensorSpec(c.shape, c.dtype) for c in _columns()]
        )
        return len(graph.graph.get_operations())

    assert count_ops(zeros) < count_ops(None)


def test_weights_split_once_give_the_same_outputs():
    """`split=` (the weights split into scalars once for several calls, as
    `BoundNetwork.direction` does for a step's tensors) changes no output,
    with and without scalar columns folded into the first bias."""
    weights = [tf.constant(w) for w in _weights_with_zeros()]
    split = split_weights(weights)
    zeros = exact_zeros([w.numpy() for w in weights[0::2]])
    for columns in (_columns(), _columns(2)[:2] + [tf.constant(np.full((5, 7), 0.3, "float32"))]):
        for pattern in (None, zeros):
            direct = elementwise_mlp(weights, columns, "relu", pattern)
            shared = elementwise_mlp(weights, columns, "relu", pattern, split=split)
            for a, b in zip(direct, shared):
                np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_an_output_without_element_terms_keeps_the_element_shape():
    weights = [tf.constant(w) for w in _weights_with_zeros()]
    weights[4] = tf.zeros_like(weights[4])  # the outputs read only their bias
    zeros = exact_zeros([w.numpy() for w in weights[0::2]])
    outputs = elementwise_mlp(weights, _columns(), "relu", zeros)
    for output, bias in zip(outputs, weights[5].numpy()):
        np.testing.assert_array_equal(output.numpy(), np.full((5, 7), bias, "float32"))


def _train(monkeypatch, prune, steps=30):
    if not prune:
        monkeypatch.setattr(keras_lopt.LearnedOptimizer, "_exact_zeros", lambda self: None)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    optimizer = keras_lopt.LearnedOptimizer()
    model.compile(optimizer=optimizer, loss="mse", jit_compile=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(96, 6)).astype("float32"), rng.normal(size=(96, 3)).astype("float32")
    model.fit(x, y, batch_size=32, epochs=steps // 3, shuffle=False, verbose=0)
    monkeypatch.undo()
    return optimizer, [w.numpy() for w in model.weights]


def test_the_default_trains_identically_with_its_zero_terms_left_out(monkeypatch):
    optimizer, pruned = _train(monkeypatch, prune=True)
    # The default's direction MLP reads one feature through 2 of its 8 units.
    zeros = optimizer._variable_step._zeros
    assert sum(not z for row in zeros[0] for z in row) < len(zeros[0]) * len(zeros[0][0])
    _, full = _train(monkeypatch, prune=False)
    # The same arithmetic, compiled by XLA into other fusions: a few
    # elements differ in the last bit after 30 steps (measured: 2.2e-6
    # relative at most).
    for a, b in zip(pruned, full):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
