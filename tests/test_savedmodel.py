import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import adam_equivalent, features, presets, savedmodel
from keras_lopt import layers as keras_lopt_layers


def test_round_trip_is_exact(random_network, random_preset):
    loaded = savedmodel.load(random_preset)
    for want, got in zip(random_network.weights, loaded.network.weights):
        np.testing.assert_array_equal(want.numpy(), got.numpy())
    assert loaded.name == "random_v1"
    assert loaded.metadata["feature_names"] == list(features.FEATURE_NAMES)
    assert loaded.metadata["format_version"] == 1  # the oldest version that holds an mlp
    assert loaded.metadata["provenance"] == {"method": "random for tests"}


def test_serving_function_matches_layer(random_network, random_preset):
    x = np.random.default_rng(0).normal(size=(9, features.NUM_FEATURES)).astype("float32")
    served = tf.saved_model.load(random_preset).signatures["serving_default"](tf.constant(x))
    direction, magnitude = random_network(x)
    np.testing.assert_allclose(served["direction"].numpy(), direction.numpy(), rtol=1e-6)
    np.testing.assert_allclose(served["magnitude"].numpy(), magnitude.numpy(), rtol=1e-6)


def test_shipped_presets_load_and_adam_preset_is_golden():
    assert presets.DEFAULT_PRESET in presets.list_presets()
    for name in presets.list_presets(include_unstable=True):
        assert presets.load_preset(name).name == name
    loaded = presets.load_preset("adam_equivalent_v1")
    golden = adam_equivalent.adam_equivalent_weights(loaded.network)
    for want, got in zip(golden, loaded.weights):
        np.testing.assert_array_equal(want, got)
    assert loaded.metadata["provenance"]["meta_trained"] is False


def _edit_metadata(path, **changes):
    meta_path = os.path.join(path, "metadata.json")
    with open(meta_path) as f:
        metadata = json.load(f)
    metadata.update(changes)
    with open(meta_path, "w") as f:
        json.dump(metadata, f)


def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="No learned-optimizer SavedModel directory"):
        savedmodel.load(tmp_path / "nope")


def test_missing_metadata(random_preset):
    os.remove(os.path.join(random_preset, "metadata.json"))
    with pytest.raises(ValueError, match=r"random_preset.*missing file `metadata.json`"):
        savedmodel.load(random_preset)


def test_metadata_not_json(random_preset):
    with open(os.path.join(random_preset, "metadata.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        savedmodel.load(random_preset)


def test_wrong_format_version(random_preset):
    _edit_metadata(random_preset, format_version=99)
    with pytest.raises(ValueError, match=r"random_preset.*`format_version`.*Expected: 1. Received: 99"):
        savedmodel.load(random_preset)


def test_feature_names_differ(random_preset):
    names = list(features.FEATURE_NAMES)
    names[0] = "gradient_sign"
    _edit_metadata(random_preset, feature_names=names)
    with pytest.raises(ValueError, match=r"`feature_names`.*gradient_sign"):
        savedmodel.load(random_preset)


def test_missing_field(random_preset):
    meta_path = os.path.join(random_preset, "metadata.json")
    with open(meta_path) as f:
        metadata = json.load(f)
    del metadata["provenance"]
    with open(meta_path, "w") as f:
        json.dump(metadata, f)
    with pytest.raises(ValueError, match=r"`provenance`.*Received: 'missing'"):
        savedmodel.load(random_preset)


def test_unknown_architecture(random_preset):
    _edit_metadata(random_preset, architecture={"kind": "transformer", "config": {}})
    with pytest.raises(ValueError, match=r"`architecture.kind`.*'transformer'"):
        savedmodel.load(random_preset)


def test_bad_learning_rate(random_preset):
    _edit_metadata(random_preset, output={"learning_rate": -1.0, "magnitude_scale": 0.1})
    with pytest.raises(ValueError, match=r"`output.learning_rate`.*-1.0"):
        savedmodel.load(random_preset)


def test_corrupted_variables_file(random_preset):
    data = [f for f in os.listdir(os.path.join(random_preset, "variables")) if f.startswith("variables.data")][0]
    with open(os.path.join(random_preset, "variables", data), "wb") as f:
        f.write(b"\x00garbage" * 3)
    with pytest.raises(ValueError, match=r"random_preset.*variables.*cannot be read"):
        savedmodel.load(random_preset)


def test_missing_variables(random_preset):
    shutil.rmtree(os.path.join(random_preset, "variables"))
    with pytest.raises(ValueError, match="cannot be read"):
        savedmodel.load(random_preset)


def test_missing_saved_model_pb(random_preset):
    os.remove(os.path.join(random_preset, "saved_model.pb"))
    with pytest.raises(ValueError, match="missing file `saved_model.pb`"):
        savedmodel.load(random_preset)


def test_weights_of_another_architecture(random_preset):
    _edit_metadata(
        random_preset,
        architecture={
            "kind": "mlp",
            "config": {"hidden_sizes": [8, 8], "activation": "relu", "magnitude_scale": 0.1},
        },
    )
    with pytest.raises(ValueError, match=r"`variables/kernel_0`.*shape \(13, 8\)"):
        savedmodel.load(random_preset)


def test_export_refuses_non_finite_weights(random_network, tmp_path):
    weights = random_network.get_weights()
    weights[0][0, 0] = np.nan
    random_network.set_weights(weights)
    info = savedmodel.PresetInfo(name="bad_v1", learning_rate=1e-3, provenance={})
    with pytest.raises(ValueError, match="non-finite"):
        savedmodel.export(random_network, tmp_path / "bad", info)
    assert not os.path.exists(tmp_path / "bad")


def test_preset_info_validation():
    with pytest.raises(ValueError, match="Received: learning_rate=0"):
        savedmodel.PresetInfo(name="ok_v1", learning_rate=0, provenance={})
    with pytest.raises(ValueError, match="Received: name='bad name'"):
        savedmodel.PresetInfo(name="bad name", learning_rate=1e-3, provenance={})


def _bounded_network(bound):
    network = keras_lopt_layers.MLPNetwork(features.NUM_FEATURES, magnitude_scale=0.5, max_log_multiplier=bound)
    rng = np.random.default_rng(3)
    network.set_weights([rng.normal(0, 3.0, w.shape).astype("float32") for w in network.weights])
    return network


def test_max_log_multiplier_bounds_the_step_and_is_the_identity_near_zero():
    bound = np.log(10.0)
    bounded, free = _bounded_network(bound), _bounded_network(None)
    rng = np.random.default_rng(0)
    # Rows from tiny to wild inputs: both ends of the squash are exercised.
    scales = np.logspace(-5, 1.5, 500)[:, None]
    x = (scales * rng.normal(size=(500, features.NUM_FEATURES))).astype("float32")
    _, magnitude = bounded(x)
    _, raw = free(x)
    log_multiplier = 0.5 * magnitude.numpy()
    raw_log_multiplier = 0.5 * raw.numpy()
    # The inputs are wild enough that the unbounded network leaves the range.
    assert np.max(np.abs(raw_log_multiplier)) > 5 * bound
    assert np.max(np.abs(log_multiplier)) <= bound * (1 + 1e-6)
    np.testing.assert_allclose(log_multiplier, bound * np.tanh(raw_log_multiplier / bound), rtol=1e-5, atol=1e-6)
    small = np.abs(raw_log_multiplier) < 0.1
    assert small.any()
    np.testing.assert_allclose(log_multiplier[small], raw_log_multiplier[small], atol=1e-4)


def test_max_log_multiplier_round_trips_and_is_validated(tmp_path):
    network = _bounded_network(2.5)
    info = savedmodel.PresetInfo(
        name="bounded_v1",
        description="bounded",
        learning_rate=3e-3,
        provenance={"method": "random for tests"},
    )
    loaded = savedmodel.export(network, str(tmp_path / "bounded_v1"), info)
    assert loaded.network.max_log_multiplier == 2.5
    assert loaded.metadata["architecture"]["config"]["max_log_multiplier"] == 2.5
    assert "tanh" in loaded.metadata["output"]["formula"]
    x = np.random.default_rng(1).normal(0, 10, size=(50, features.NUM_FEATURES)).astype("float32")
    for want, got in zip(network(x), loaded.network(x)):
        np.testing.assert_array_equal(want.numpy(), got.numpy())
    # Presets without a bound keep their old metadata (no new key).
    plain = savedmodel.load(adam_equivalent_preset_path())
    assert "max_log_multiplier" not in plain.metadata["architecture"]["config"]
    for bad in (0, -1.0, float("inf"), "2", True):
        with pytest.raises(ValueError, match="max_log_multiplier"):
            keras_lopt_layers.MLPNetwork(features.NUM_FEATURES, max_log_multiplier=bad)


def adam_equivalent_preset_path():
    return presets.resolve("adam_equivalent_v1")
