"""The adaptive architecture: a direction MLP and a per-tensor step-size controller."""

import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lopt
from keras_lopt import adam_equivalent, features, presets, rule, savedmodel
from keras_lopt.layers import AdaptiveLossMLPNetwork, AdaptiveMLPNetwork, BoundNetwork
from keras_lopt.layers.adaptive_mlp import CONTROLLER_INPUT_NAMES, STATE_FIELDS

from conftest import unroll_and_optimizer_losses

LOCAL = features.FEATURE_SETS["local"]
PRESET = adam_equivalent.HYPERGRADIENT_PRESET_NAME


def _random_network(seed=3, **kwargs):
    network = AdaptiveMLPNetwork(num_features=len(LOCAL), name="adaptive_random", **kwargs)
    rng = np.random.default_rng(seed)
    network.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in network.weights])
    return network


def _export(network, path):
    return savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(
            name="adaptive_random_v1",
            learning_rate=1e-3,
            provenance={"method": "random for tests"},
            feature_set="local",
        ),
    )


def test_alignment_features_match_numpy():
    """Cosines with the momenta before the step, read from the moments after it."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(5, 3)).astype("float32")
    previous = tuple(rng.normal(size=(5, 3)).astype("float32") for _ in features.MOMENTUM_DECAYS)
    old_v = rng.uniform(0.1, 2.0, size=(5, 3)).astype("float32")
    new = rule.update_moments(rule.RuleState(momenta=previous, second_moment=old_v), g)
    got = [float(c) for c in features.alignment_features(g, new.momenta, new.second_moment)]
    v = new.second_moment.numpy()
    expected = []
    for m in previous:
        d = m / (np.sqrt(v) + features.EPSILON)
        expected.append(np.sum(g * d) / np.sqrt(np.sum(g * g) * np.sum(d * d)))
    expected.append(np.mean(g * g))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert features.ALIGNMENT_FEATURE_NAMES == (
        "alignment_momentum_0p9",
        "alignment_momentum_0p99",
        "gradient_mean_square",
    )


def test_alignment_features_sample_large_tensors():
    assert features.alignment_sample_stride(features.ALIGNMENT_SAMPLE_SIZE) == 1
    stride = features.alignment_sample_stride(1024 * 1024)
    assert stride == 257  # the smallest prime >= 1024 * 1024 / 4096 = 256
    rng = np.random.default_rng(1)
    g = rng.normal(size=(1024, 1024)).astype("float32")
    m = (0.5 * g + rng.normal(size=g.shape)).astype("float32")
    v = np.ones_like(g)
    got = [float(c) for c in features.alignment_features(g, (m, m), v)]
    flat_g, flat_m = g.ravel()[::stride], m.ravel()[::stride]
    previous = (flat_m - 0.1 * flat_g) / 0.9
    expected = np.sum(flat_g * previous) / np.sqrt(np.sum(flat_g**2) * np.sum(previous**2))
    assert got[0] == pytest.approx(expected, rel=1e-4)
    assert got[2] == pytest.approx(np.mean(flat_g**2), rel=1e-5)


def test_alignment_features_are_finite_for_zero_state_and_overflow():
    g = np.ones(4, "float32")
    # The first step: the moments hold only (1 - decay) * g, the previous ones are zero.
    first = rule.update_moments(rule.init_state(tf.zeros(4)), tf.constant(g))
    columns = features.alignment_features(g, first.momenta, first.second_moment)
    assert [float(c) for c in columns] == [0.0, 0.0, 1.0]
    huge = np.full((4,), 1e19, "float32")  # finite, but the sum of squares overflows
    columns = features.alignment_features(huge, (huge, huge), np.ones(4, "float32"))
    values = [float(c) for c in columns]
    assert values[:2] == [0.0, 0.0]
    assert values[2] == pytest.approx(features.MAX_MEAN_SQUARE)


def _numpy_controller(weights, context, state, network):
    """The controller of `AdaptiveMLPNetwork.forward`, written out in numpy."""
    decay = 0.9
    signals, tensor = context[:3], context[3:]
    log_step, averages = state[0], state[1:]
    new_averages = averages[:2] + (signals[:2] - averages[:2]) * (1 - decay)
    if averages[2] > 0:
        square_average = averages[2] + (signals[2] - averages[2]) * (1 - decay)
        ratio = np.clip(np.log((signals[2] + 1e-30) / (averages[2] + 1e-30)), -3, 3)
    else:
        square_average, ratio = signals[2], 0.0
    inputs = np.concatenate([signals[:2], new_averages, [ratio, log_step], tensor])
    hidden = np.maximum(inputs @ weights[4] + weights[5], 0.0)
    change = (hidden @ weights[6] + weights[7])[0]
    low, high = network.log_step_range
    new_log_step = np.clip(log_step + network.max_step_change * np.tanh(change), low, high)
    return new_log_step, np.concatenate([[new_log_step], new_averages, [square_average]])


@pytest.mark.parametrize("square_average", [0.0, 0.7])
def test_forward_matches_numpy(square_average):
    network = _random_network()
    weights = [w.numpy() for w in network.weights]
    rng = np.random.default_rng(1)
    columns = [rng.normal(size=(6,)).astype("float32") for _ in range(3)] + [
        np.float32(v) for v in rng.uniform(0, 1, len(LOCAL) - 3)
    ]
    context = np.concatenate([rng.uniform(-1, 1, 2), [0.3], rng.uniform(0, 1, 7)]).astype("float32")
    state = np.array([0.4, 0.1, -0.2, square_average], "float32")
    direction, log_step, (new_state,) = network.forward(
        network.weights, [tf.constant(c) for c in columns], tf.constant(context), (tf.constant(state),)
    )
    expected_log_step, expected_state = _numpy_controller(weights, context, state, network)
    assert float(log_step) == pytest.approx(expected_log_step, rel=1e-5)
    np.testing.assert_allclose(new_state.numpy(), expected_state, rtol=1e-5, atol=1e-6)
    # The direction MLP: tensor columns fold into the first bias.
    x = np.stack(columns[:3], axis=-1)
    bias = weights[1] + np.asarray(columns[3:]) @ weights[0][3:]
    hidden = np.maximum(x @ weights[0][:3] + bias, 0.0)
    np.testing.assert_allclose(direction.numpy(), (hidden @ weights[2] + weights[3])[:, 0], rtol=1e-5, atol=1e-6)
    assert len(CONTROLLER_INPUT_NAMES) == weights[4].shape[0]
    assert len(STATE_FIELDS) == network.state_shapes[0][0]


def test_log_step_is_bounded():
    network = _random_network(max_step_change=2.0, log_step_range=(-1.0, 0.5))
    state = (tf.constant([0.0, 0.0, 0.0, 0.0]),)
    columns = [tf.ones((3,))] * 3 + [tf.constant(0.5)] * (len(LOCAL) - 3)
    context = tf.constant([1.0, 1.0, 1.0] + [0.5] * 7)
    seen = []
    for _ in range(20):
        _, log_step, state = network.forward(network.weights, columns, context, state)
        seen.append(float(log_step))
    assert -1.0 <= min(seen) and max(seen) <= 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"controller_hidden_size": 0},
            "`controller_hidden_size` must be a positive integer. Received: controller_hidden_size=0",
        ),
        (
            {"max_step_change": -1.0},
            "`max_step_change` must be a positive finite number. Received: max_step_change=-1.0",
        ),
        (
            {"log_step_range": (0.5, 2.0)},
            "`log_step_range` must be finite `(low, high)` with low <= 0 <= high. Received: log_step_range=(0.5, 2.0)",
        ),
        (
            {"hidden_sizes": (4, "8")},
            "`hidden_sizes` must be a sequence of positive integers. Received: hidden_sizes=(4, '8')",
        ),
        ({"activation": "gelu"}, "`activation` must be one of ['relu', 'tanh']. Received: activation='gelu'"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError) as info:
        AdaptiveMLPNetwork(num_features=len(LOCAL), **kwargs)
    assert str(info.value) == message


def test_state_slots_and_shapes():
    network = _random_network()
    assert rule.state_slot_names(network) == (*rule.state_slot_names(), "step_control")
    assert rule.tensor_state_shapes(network) == ((4,),)
    assert not rule.reads_loss(network)


def test_hand_set_preset_is_adam_with_a_hypergradient_step_size():
    """Golden: the shipped hand-set preset against its formula in numpy."""
    loaded = presets.load_preset(PRESET)
    network = loaded.network
    variable = tf.Variable(np.zeros((3, 2), "float32"))
    optimizer = keras_lopt.LearnedOptimizer(preset=PRESET)
    rng = np.random.default_rng(5)
    grads = [rng.normal(size=(3, 2)).astype("float32") for _ in range(12)]
    p = np.zeros((3, 2))
    m = np.zeros((3, 2))
    v = np.zeros((3, 2))
    s, average = 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        v = 0.999 * v + 0.001 * g * g
        direction = m / (np.sqrt(v) + 1e-7)
        cosine = np.sum(g * direction) / np.sqrt(np.sum(g * g) * np.sum(direction * direction) + 1e-30)
        average = 0.9 * average + 0.1 * cosine
        change = adam_equivalent.HYPERGRADIENT_RULE["alignment_gain"] * (cosine + average)
        s = np.clip(s + network.max_step_change * np.tanh(change + adam_equivalent.HYPERGRADIENT_RULE["bias"]), -7, 5)
        m = 0.9 * m + 0.1 * g
        m_hat, v_hat = m / (1 - 0.9**t), v / (1 - 0.999**t)
        p = p - 1e-3 * np.exp(s) * m_hat / (np.sqrt(v_hat) + 1e-7)
        optimizer.apply_gradients([(tf.constant(g), variable)])
    np.testing.assert_allclose(variable.numpy(), p, rtol=2e-4, atol=1e-7)
    assert loaded.metadata["provenance"]["method"] == "hand-initialised"


def test_preset_round_trip_and_serving_function(tmp_path):
    network = _random_network()
    loaded = _export(network, tmp_path / "adaptive")
    assert loaded.network.kind == "adaptive_mlp"
    assert loaded.metadata["format_version"] == savedmodel.TENSOR_STATE_VERSION == 2
    assert loaded.metadata["context_feature_names"] == list(AdaptiveMLPNetwork.context_feature_names)
    assert loaded.metadata["network_state"] == {"names": ["step_control"], "shapes": [[4]]}
    for a, b in zip(loaded.weights, network.get_weights()):
        np.testing.assert_array_equal(a, b)
    served = tf.saved_model.load(str(tmp_path / "adaptive")).signatures["serving_default"]
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(5, len(LOCAL))).astype("float32")
    context = rng.uniform(-1, 1, len(AdaptiveMLPNetwork.context_feature_names)).astype("float32")
    state = np.array([0.1, 0.2, 0.3, 0.4], "float32")
    out = served(feature_matrix=tf.constant(matrix), context=tf.constant(context), step_control=tf.constant(state))
    direction, log_step, (new_state,) = network.call(matrix, context, state)
    np.testing.assert_allclose(out["direction"].numpy(), direction.numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["step_control"].numpy(), new_state.numpy(), rtol=1e-6)
    assert float(out["magnitude"]) == pytest.approx(float(log_step))


def test_metadata_with_wrong_context_features_is_refused(tmp_path):
    path = tmp_path / "adaptive"
    _export(_random_network(), path)
    metadata_path = path / savedmodel.METADATA_FILE
    metadata = json.loads(metadata_path.read_text())
    metadata["context_feature_names"] = metadata["context_feature_names"][::-1]
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="field `context_feature_names` is wrong"):
        savedmodel.load(path)


def test_unroll_matches_optimizer(tmp_path):
    path = tmp_path / "adaptive"
    _export(_random_network(), path)
    expected, got = unroll_and_optimizer_losses(str(path), steps=25, learning_rate=1e-2)
    np.testing.assert_allclose(got, expected, rtol=2e-5)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_non_finite_gradient_keeps_every_slot(tmp_path, jit_compile):
    path = tmp_path / "adaptive"
    _export(_random_network(), path)
    optimizer = keras_lopt.LearnedOptimizer(preset=str(path))
    variable = tf.Variable(np.ones((4,), "float32"))

    @tf.function(jit_compile=jit_compile)
    def apply(g):
        optimizer.apply_gradients([(g, variable)])

    apply(tf.constant([0.1, -0.2, 0.3, 0.4]))
    before = [v.numpy().copy() for v in optimizer.variables if "iteration" not in v.name]
    apply(tf.constant([0.1, np.nan, 0.3, 0.4]))
    after = [v.numpy() for v in optimizer.variables if "iteration" not in v.name]
    names = [v.name for v in optimizer.variables if "iteration" not in v.name]
    for name, a, b in zip(names, before, after):
        if name != "skipped_updates":
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert optimizer.skipped_updates == 1
    apply(tf.constant([0.1, -0.2, 0.3, 0.4]))
    assert np.all(np.isfinite(variable.numpy()))


@pytest.mark.parametrize("jit_compile", [True, False])
def test_fit_with_the_hand_set_preset_learns_faster_than_adam(jit_compile):
    """Convergence: the step size grows on an easy regression problem."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    losses = {}
    for name, optimizer in (
        ("adam", keras.optimizers.Adam(1e-3)),
        ("learned", keras_lopt.LearnedOptimizer(preset=PRESET)),
    ):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
        losses[name] = model.fit(x, y, epochs=4, batch_size=32, verbose=0).history["loss"][-1]
    assert losses["learned"] < 0.5 * losses["adam"]


def test_bound_network_forwards_the_protocol():
    network = _random_network()
    bound = BoundNetwork(network, network.weights)
    assert not bound.reads_loss
    assert bound.context_feature_names == network.context_feature_names


def test_config_log_step_range_reaches_the_network_and_the_preset(tmp_path):
    from keras_lopt.meta import config as config_lib
    from keras_lopt.meta import networks

    config = config_lib.MetaTrainConfig.from_dict(
        {
            "name": "bounded",
            "task_families": ["mlp_digits"],
            "network": {
                "architecture": "adaptive_mlp",
                "hidden_sizes": [8],
                "feature_set": "local",
                "log_step_range": [-2.3, 2.3],
            },
            "init_preset": None,
        }
    )
    network = networks.build_network(config)
    assert network.log_step_range == (-2.3, 2.3)
    loaded = presets.load_preset(_export(network, tmp_path / "bounded").path)
    assert loaded.network.log_step_range == (-2.3, 2.3)


# The controller that also reads the loss trend (`AdaptiveLossMLPNetwork`).


def _random_loss_network(seed=4):
    network = AdaptiveLossMLPNetwork(num_features=len(LOCAL), name="adaptive_loss_random")
    rng = np.random.default_rng(seed)
    network.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in network.weights])
    return network


def _fit_weights(preset, seed=0):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras_lopt.LearnedOptimizer(preset=preset), loss="mse")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False)
    return [w.numpy() for w in model.weights]


def test_loss_controller_reads_the_loss_features(tmp_path):
    network = _random_loss_network()
    assert network.reads_loss and network.kind == "adaptive_loss_mlp"
    assert network.controller_input_names == CONTROLLER_INPUT_NAMES + features.LOSS_FEATURE_NAMES
    assert tuple(network.context_feature_names[-3:]) == features.LOSS_FEATURE_NAMES
    assert network.weights[network.weight_names().index("controller_kernel_0")].shape == (
        len(CONTROLLER_INPUT_NAMES) + len(features.LOSS_FEATURE_NAMES),
        8,
    )
    loaded = _export(network, tmp_path / "loss")
    assert loaded.network.kind == "adaptive_loss_mlp"
    assert loaded.metadata["context_feature_names"] == list(AdaptiveLossMLPNetwork.context_feature_names)
    state_names = rule.state_slot_names(loaded.network)
    assert "loss_statistics" in state_names and "step_control" in state_names
    # The loss inputs move the step: the same context with another loss trend
    # gives another log step size.
    matrix = np.ones((3, len(LOCAL)), "float32")
    context = np.zeros(len(network.context_feature_names), "float32")
    state = np.zeros(len(STATE_FIELDS), "float32")
    _, flat, _ = network.call(matrix, context, state)
    context[-3:] = [1.0, 0.5, 0.5]
    _, rising, _ = network.call(matrix, context, state)
    assert float(flat) != float(rising)


def test_loss_controller_unroll_matches_optimizer(tmp_path):
    """Meta-training's unroll and `LearnedOptimizer`, both given the loss."""
    path = tmp_path / "loss"
    _export(_random_loss_network(), path)
    expected, got = unroll_and_optimizer_losses(str(path), steps=25, learning_rate=1e-2)
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_loss_controller_from_an_adaptive_preset_is_the_same_rule(tmp_path):
    source = presets.load_preset(PRESET)
    network = AdaptiveLossMLPNetwork(num_features=len(LOCAL), name="from_hand_set")
    network.set_weights(network.weights_from_adaptive(source.network, source.weights))
    _export(network, tmp_path / "padded")
    for a, b in zip(_fit_weights(PRESET), _fit_weights(str(tmp_path / "padded"))):
        np.testing.assert_array_equal(a, b)
    # In `fit` the loss reaches the controller: weights on its loss inputs
    # change the trajectory.
    weights = network.get_weights()
    index = network.weight_names().index("controller_kernel_0")
    weights[index][-2:] = 0.5
    network.set_weights(weights)
    _export(network, tmp_path / "loss_weighted")
    changed = _fit_weights(str(tmp_path / "loss_weighted"))
    assert any(np.max(np.abs(a - b)) > 1e-6 for a, b in zip(_fit_weights(PRESET), changed))


def test_loss_controller_start_refuses_other_networks():
    network = AdaptiveLossMLPNetwork(num_features=len(LOCAL), name="target")
    mlp = presets.load_preset("adam_equivalent_v1")
    with pytest.raises(ValueError, match="Expected an 'adaptive_mlp' network. Received: a 'mlp' network"):
        network.weights_from_adaptive(mlp.network, mlp.weights)
    wider = AdaptiveMLPNetwork(num_features=len(LOCAL), controller_hidden_size=4, name="narrow")
    with pytest.raises(ValueError, match=r"weight shapes .* Received: "):
        network.weights_from_adaptive(wider, wider.get_weights())


def test_loss_controller_config_starts_from_an_adaptive_preset():
    from keras_lopt.meta import config as config_lib
    from keras_lopt.meta import networks, unroll

    config = config_lib.MetaTrainConfig.from_dict(
        {
            "name": "loss_controller",
            "task_families": ["mlp_digits"],
            "network": {"architecture": "adaptive_loss_mlp", "hidden_sizes": [8], "feature_set": "local"},
            "init_preset": PRESET,
        }
    )
    layer = networks.build_network(config)
    assert layer.kind == "adaptive_loss_mlp"
    theta = networks.initial_theta(config, layer)
    source = presets.load_preset(PRESET)
    expected = layer.weights_from_adaptive(source.network, source.weights)
    np.testing.assert_array_equal(theta, unroll.flatten_weights(expected))


def test_probe_of_the_default_shows_adams_direction_at_its_first_step():
    """`probes.probe` runs presets with per-tensor state from their zero
    state; the default's direction MLP is Adam's (hand-set, frozen in
    meta-training), so its probe is Adam's update times the controller's
    first step-size change."""
    from keras_lopt import probes

    default = presets.DEFAULT_PRESET
    result = probes.probe(default, np.array([-1.0, 0.0, 1.0]), 1.0, 1.0, 1000)
    np.testing.assert_allclose(result["direction"], result["adam"], rtol=1e-5)
    max_step_change = presets.load_preset(default).network.max_step_change
    assert np.all(np.abs(result["log_multiplier"]) <= max_step_change + 1e-6)
    assert np.any(np.abs(result["log_multiplier"]) > 0.0)
    np.testing.assert_allclose(result["learned"], result["adam"] * np.exp(result["log_multiplier"]), rtol=1e-5)


@pytest.mark.parametrize("reads_loss", [False, True])
def test_step_many_is_step_per_tensor(reads_loss):
    """`rule.step_many_with_moments` (the per-tensor controller batched, as
    the optimizer runs on JAX) gives each tensor `step_with_moments`' update
    and state, over several steps, with a tensor large enough to be sampled
    and random controller weights (so that every input matters)."""
    cls = AdaptiveLossMLPNetwork if reads_loss else AdaptiveMLPNetwork
    layer = cls(num_features=len(LOCAL), name="adaptive_many")
    rng = np.random.default_rng(5)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.weights])
    network = BoundNetwork(layer, [w.value for w in layer.weights])
    shapes = [(5, 3), (3,), (90, 70), (1,)]
    parameters = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
    learning_rates = [3e-3, 1e-3, 2e-3, 3e-3]
    one = [rule.init_state(p, layer) for p in parameters]
    many = list(one)
    for step in range(1, 6):
        gradients = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
        scalars = dict(iteration=step, total_steps=0.0, loss=1.0 / step, loss_known=1.0, feature_names=LOCAL)
        moved = [rule.update_moments(s, g) for s, g in zip(many, gradients)]
        batched = rule.step_many_with_moments(
            network, moved, gradients, parameters, learning_rates=learning_rates, **scalars
        )
        for i, (gradient, parameter) in enumerate(zip(gradients, parameters)):
            update, state = rule.step(network, one[i], gradient, parameter, learning_rate=learning_rates[i], **scalars)
            np.testing.assert_allclose(batched[i][0], update, rtol=1e-5, atol=1e-9)
            for got, expected in zip(rule.flatten_state(batched[i][1]), rule.flatten_state(state)):
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
            one[i] = state
        many = [s for _, s in batched]
    # The controller moved the step sizes: the comparison is not of constants.
    assert np.ptp([float(s.tensor_state[-1][0]) for s in one]) > 0.01


def test_step_many_needs_a_batching_network():
    network = BoundNetwork(keras_lopt.layers.MLPNetwork(num_features=len(LOCAL)), [])
    with pytest.raises(ValueError, match="batches_control"):
        rule.step_many_with_moments(network, [], [], [], 1, 0, [])


# The odd direction (`odd_direction=True`).


def _columns(rng, scale=1.0):
    """3 element columns of 6 elements, then the tensor features (scalars)."""
    element = [tf.constant(scale * rng.normal(size=(6,)).astype("float32")) for _ in range(3)]
    return element + [tf.constant(np.float32(v)) for v in rng.uniform(0.5, 4.0, len(LOCAL) - 3)]


def test_odd_direction_is_the_odd_part_of_the_mlp():
    odd, plain = _random_network(odd_direction=True), _random_network()
    weights = [w.numpy() for w in plain.weights]
    assert all(np.array_equal(a.numpy(), b) for a, b in zip(odd.weights, weights))
    columns = _columns(np.random.default_rng(2))
    flipped = [-c for c in columns[:3]] + columns[3:]
    direction = odd.direction(odd.weights, columns).numpy()
    expected = 0.5 * (plain.direction(weights, columns).numpy() - plain.direction(weights, flipped).numpy())
    np.testing.assert_allclose(direction, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(odd.direction(odd.weights, flipped).numpy(), -direction)
    # Zero gradient and momenta: no update, whatever the biases and the
    # tensor features (the plain MLP's is not zero with these weights).
    zero = [tf.zeros((6,))] * 3 + columns[3:]
    np.testing.assert_array_equal(odd.direction(odd.weights, zero).numpy(), np.zeros(6))
    assert np.all(plain.direction(weights, zero).numpy() != 0.0)
    state = (tf.constant([0.4, 0.1, -0.2, 0.7]),)
    context = tf.constant([0.2, -0.1, 0.3] + [0.5] * 7)
    forward_direction, _, _ = odd.forward(odd.weights, columns, context, state)
    np.testing.assert_array_equal(forward_direction.numpy(), direction)


def test_odd_direction_of_an_odd_mlp_is_the_default_rule():
    # The default's direction MLP is already odd (relu(m) - relu(-m)): as an
    # odd network it computes the same.
    default = presets.load_preset("adaptive_slow_v3")
    odd = AdaptiveLossMLPNetwork.from_config({**default.network.get_config(), "odd_direction": True})
    columns = _columns(np.random.default_rng(5), scale=3.0)
    np.testing.assert_allclose(
        odd.direction(list(default.weights), columns).numpy(),
        default.network.direction(list(default.weights), columns).numpy(),
        rtol=1e-6,
        atol=1e-7,
    )


def test_config_odd_direction_reaches_the_network_and_the_preset(tmp_path):
    from keras_lopt.meta import config as config_lib
    from keras_lopt.meta import networks

    def config(**network):
        return config_lib.MetaTrainConfig.from_dict(
            {
                "name": "odd",
                "task_families": ["mlp_digits"],
                "network": {
                    "architecture": "adaptive_loss_mlp",
                    "hidden_sizes": [8],
                    "feature_set": "local",
                    **network,
                },
                "init_preset": "adaptive_slow_v3",
            }
        )

    network = networks.build_network(config(odd_direction=True, log_step_range=[-2.3, 2.3]))
    assert network.odd_direction and network.get_config()["odd_direction"] is True
    # Starts from the default's weights (the same shapes; the same rule, as above).
    theta = networks.initial_theta(config(odd_direction=True, log_step_range=[-2.3, 2.3]), network)
    assert theta.shape == (sum(int(np.prod(w.shape)) for w in network.weights),)
    path = tmp_path / "odd"
    savedmodel.export(
        network,
        path,
        savedmodel.PresetInfo(name="odd_v1", learning_rate=3e-3, provenance={"method": "test"}, feature_set="local"),
    )
    assert json.loads((path / "metadata.json").read_text())["architecture"]["config"]["odd_direction"] is True
    assert presets.load_preset(str(path)).network.odd_direction
    plain = json.loads((pathlib.Path(presets.resolve("adaptive_slow_v3")) / "metadata.json").read_text())
    assert "odd_direction" not in plain["architecture"]["config"]  # written only when set
    with pytest.raises(ValueError, match="`odd_direction` applies to architecture='adaptive_mlp'"):
        config_lib.NetworkConfig(architecture="mlp", odd_direction=True)
    with pytest.raises(ValueError, match=r"`odd_direction` must be a bool. Received: odd_direction='yes'"):
        config(odd_direction="yes")
    with pytest.raises(ValueError, match=r"`odd_direction` must be True or False. Received: odd_direction=1"):
        AdaptiveMLPNetwork(num_features=len(LOCAL), odd_direction=1)


def _step_control(optimizer):
    (packed,) = [v for v in optimizer.variables if v.name == "tensor_step_control"]
    return np.asarray(packed)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_default_steps_a_subset_of_its_variables_in_their_rows_of_the_per_tensor_state(jit_compile):
    """The optimizer keeps every variable's `step_control` as a row of one
    `[V, 4]` variable. A step of some variables (others without a gradient)
    reads and writes their rows only, and moves them as an optimizer built
    for those variables alone does."""

    def dense_model():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])

    model, alone = dense_model(), dense_model()
    variables, stepped = model.trainable_variables, [alone.trainable_variables[i] for i in (1, 3)]
    gradients = [np.linspace(-0.2, 0.3, v.shape.num_elements()).reshape(v.shape).astype("float32") for v in variables]
    optimizer, reference = keras_lopt.LearnedOptimizer(), keras_lopt.LearnedOptimizer()
    optimizer.build(variables)
    reference.build(stepped)
    assert _step_control(optimizer).shape == (4, 4) and _step_control(reference).shape == (2, 4)
    initial = _step_control(optimizer)

    def compiled_step(opt, targets):
        grads = [tf.constant(gradients[i]) for i in (1, 3)]
        return tf.function(lambda: opt.apply(grads, targets), jit_compile=jit_compile)

    steps = [compiled_step(optimizer, [variables[1], variables[3]]), compiled_step(reference, stepped)]
    for _ in range(3):
        for step in steps:
            step()
    rows = _step_control(optimizer)
    np.testing.assert_array_equal(rows[[0, 2]], initial[[0, 2]])
    assert np.all(rows[[1, 3]] != initial[[1, 3]])
    np.testing.assert_allclose(rows[[1, 3]], _step_control(reference), rtol=1e-6)
    for i, other in zip((1, 3), stepped):
        np.testing.assert_allclose(np.asarray(variables[i]), np.asarray(other), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(variables[0]), np.asarray(alone.trainable_variables[0]))
