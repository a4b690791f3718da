import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import adam_equivalent, features, rule
from keras_lopt.layers import BoundNetwork

from reference import rule_step


def _run_steps(network, grads, param, total_steps, lr, jit):
    bound = BoundNetwork(network, [w.value for w in network.weights])

    def run(grads, param):
        state = rule.init_state(param)
        updates = []
        for i, g in enumerate(tf.unstack(grads)):
            update, state = rule.step(
                bound,
                state,
                g,
                param,
                iteration=i + 1,
                total_steps=total_steps,
                learning_rate=lr,
            )
            param = param - update
            updates.append(update)
        return tf.stack(updates), rule.flatten_state(state)

    fn = tf.function(run, jit_compile=True) if jit else run
    return fn(tf.constant(grads), tf.constant(param))


def _reference_run(weights, scale, lr, grads, param, total_steps, max_log_multiplier=None):
    """The numpy reference along its own trajectory.

    Returns `(updates, unbounded, state)`: per-step updates, the updates the
    same states would give without `max_log_multiplier`, and the final state.
    """
    state = ([np.zeros(param.shape)] * len(features.MOMENTUM_DECAYS), np.zeros(param.shape))
    p = param.astype(np.float64)
    updates, unbounded = [], []
    for i, g in enumerate(grads):
        unbounded.append(rule_step(weights, scale, lr, state, g, p, i + 1, total_steps)[0])
        update, state = rule_step(
            weights,
            scale,
            lr,
            state,
            g,
            p,
            i + 1,
            total_steps,
            max_log_multiplier=max_log_multiplier,
        )
        updates.append(update)
        p = p - update
    return updates, unbounded, state


@pytest.mark.parametrize("jit", [False, True])
def test_three_steps_match_numpy_reference(random_network, jit):
    rng = np.random.default_rng(3)
    grads = rng.normal(size=(3, 4, 6)).astype("float32")
    param = rng.normal(size=(4, 6)).astype("float32")
    updates, final_state = _run_steps(random_network, grads, param, 10, 1e-2, jit)

    weights = [w.numpy() for w in random_network.weights]
    want_updates, _, state = _reference_run(weights, random_network.magnitude_scale, 1e-2, grads, param, 10)
    for got, want in zip(updates, want_updates):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-8)
    for got, want in zip(final_state, [*state[0], state[1]]):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("jit", [False, True])
def test_bounded_network_matches_numpy_reference(jit):
    from keras_lopt.layers import MLPNetwork

    network = MLPNetwork(features.NUM_FEATURES, magnitude_scale=1.0, max_log_multiplier=0.5)
    rng = np.random.default_rng(5)
    # Large weights: the unbounded multiplier would leave [e^-0.5, e^0.5].
    network.set_weights([rng.normal(0, 2.0, w.shape).astype("float32") for w in network.weights])
    grads = rng.normal(size=(3, 5, 4)).astype("float32")
    param = rng.normal(size=(5, 4)).astype("float32")
    updates, _ = _run_steps(network, grads, param, 0, 1e-2, jit)
    weights = [w.numpy() for w in network.weights]
    want_updates, free_updates, _ = _reference_run(weights, 1.0, 1e-2, grads, param, 0, max_log_multiplier=0.5)
    unbounded_ratio = []
    for got, want, free in zip(updates, want_updates, free_updates):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-8)
        ratio = np.abs(free) / np.maximum(np.abs(want), 1e-30)
        unbounded_ratio.append(np.max(np.maximum(ratio, 1.0 / np.maximum(ratio, 1e-30))))
    assert max(unbounded_ratio) > 2.0  # the bound was active


def test_adam_equivalent_weights_give_adams_update():
    network = adam_equivalent.build_network()
    rng = np.random.default_rng(4)
    grads = rng.normal(size=(5, 7)).astype("float32")
    param = rng.normal(size=(7,)).astype("float32")
    updates, _ = _run_steps(network, grads, param, 0, 1e-3, jit=True)
    m = v = np.zeros(7)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        alpha = 1e-3 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        np.testing.assert_allclose(updates[t - 1].numpy(), alpha * m / (np.sqrt(v) + 1e-7), rtol=3e-5)


def test_state_round_trips_through_flatten():
    state = rule.init_state(tf.zeros((2, 3)))
    flat = rule.flatten_state(state)
    assert len(flat) == len(rule.state_slot_names())
    assert rule.unflatten_state(flat) == state


@pytest.mark.parametrize("jit", [False, True])
def test_embedding_gradient_slices_give_the_dense_gradient_s_step(random_network, jit):
    # TensorFlow returns the gradient of an embedding lookup as IndexedSlices
    # with one row per lookup (repeated ids not summed). The rule must square
    # and average the summed gradient, as the meta-trainer's unrolls did.
    bound = BoundNetwork(random_network, [w.value for w in random_network.weights])
    rng = np.random.default_rng(5)
    table = tf.constant(rng.normal(size=(3, 4)).astype("float32"))
    ids = tf.constant([0, 2, 0, 0, 2])

    def run(as_slices):
        with tf.GradientTape() as tape:
            tape.watch(table)
            loss = tf.reduce_sum(tf.square(tf.gather(table, ids)) * tf.range(1.0, 5.0))
        gradient = tape.gradient(loss, table)
        assert isinstance(gradient, tf.IndexedSlices)
        if not as_slices:
            gradient = tf.convert_to_tensor(gradient)
        state = rule.init_state(table)
        update, state = rule.step(bound, state, gradient, table, iteration=1, total_steps=10, learning_rate=1e-2)
        update_2, state = rule.step(bound, state, gradient, table, iteration=2, total_steps=10, learning_rate=1e-2)
        return update, update_2, rule.flatten_state(state)

    fn = tf.function(run, jit_compile=True) if jit else run
    for got, want in zip(tf.nest.flatten(fn(True)), tf.nest.flatten(fn(False))):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
