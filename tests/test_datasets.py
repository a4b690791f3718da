"""Offline data set builders: shapes, determinism, content."""

import importlib.util
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from keras_lopt.meta import datasets

# name -> ({split: size}, {feature: (shape per example, dtype)})
SPECS = {
    "digits": (
        {"train": 1437, "test": 360},
        {"x": ((8, 8, 1), np.float32), "y": ((), np.int64)},
    ),
    "mnist1d": (
        {"train": 4000, "test": 1000},
        {"x": ((40,), np.float32), "y": ((), np.int64)},
    ),
    "python_chars": (None, {"tokens": ((129,), np.int32)}),
    "synthetic_sequences/adding": (
        {"train": 4000, "test": 1000},
        {"x": ((50, 2), np.float32), "y": ((), np.float32)},
    ),
    "synthetic_sequences/parity": (
        {"train": 4000, "test": 1000},
        {"x": ((16,), np.int32), "y": ((16,), np.int32)},
    ),
    "synthetic_sequences/copy": (
        {"train": 4000, "test": 1000},
        {"x": ((21,), np.int32), "y": ((21,), np.int32)},
    ),
    "synthetic_sequences/sort": (
        {"train": 4000, "test": 1000},
        {"x": ((16,), np.int32), "y": ((16,), np.int32)},
    ),
    "synthetic_sequences/reverse": (
        {"train": 4000, "test": 1000},
        {"x": ((17,), np.int32), "y": ((17,), np.int32)},
    ),
    "synthetic_regression": (
        {"train": 4000, "test": 1000},
        {"x": ((16,), np.float32), "y": ((4,), np.float32)},
    ),
    "scaled_linear_regression": (
        {"train": 4000, "test": 1000},
        {"x": ((10,), np.float32), "y": ((), np.float32)},
    ),
    "noisy_teacher_classification/selection": (
        {"train": 4000, "test": 1000},
        {"x": ((32,), np.float32), "y": ((), np.int64)},
    ),
    "noisy_teacher_classification/meta": (
        {"train": 4000, "test": 1000},
        {"x": ((24,), np.float32), "y": ((), np.int64)},
    ),
}


def load_all(data_dir):
    return {(name, split): datasets.load_numpy(name, split, data_dir) for name in SPECS for split in ("train", "test")}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """All splits, prepared into a fresh folder with sockets disabled."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        data = load_all(str(tmp_path_factory.mktemp("data_a")))
    assert attempts == []
    return data


def test_dataset_names_cover_specs():
    assert set(SPECS) <= set(datasets.dataset_names())
    assert set(datasets.DATASETS) <= set(datasets.dataset_names())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_shapes_dtypes_sizes(prepared, name):
    sizes, features = SPECS[name]
    for split in ("train", "test"):
        arrays = prepared[(name, split)]
        assert set(arrays) == set(features)
        lengths = {len(values) for values in arrays.values()}
        assert len(lengths) == 1
        if sizes:
            assert lengths == {sizes[split]}
        for feature, (shape, dtype) in features.items():
            assert arrays[feature].shape[1:] == shape
            assert arrays[feature].dtype == dtype


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_classification_labels(prepared, name):
    for split in ("train", "test"):
        y = prepared[(name, split)]["y"]
        assert set(np.unique(y)) == set(range(10))
    x = prepared[(name, "train")]["x"]
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_deterministic(prepared, tmp_path):
    again = load_all(str(tmp_path))
    for key, arrays in prepared.items():
        for feature, values in arrays.items():
            np.testing.assert_array_equal(values, again[key][feature], err_msg=str(key))


def test_mnist1d_classes_distinguishable(prepared):
    from sklearn.linear_model import LogisticRegression

    train, test = prepared[("mnist1d", "train")], prepared[("mnist1d", "test")]
    model = LogisticRegression(max_iter=2000).fit(train["x"], train["y"])
    # Chance is 0.10; Greydanus (2020) reports 0.32 for logistic regression.
    assert model.score(test["x"], test["y"]) > 0.25


def test_python_chars_is_python_source(prepared):
    for split in ("train", "test"):
        tokens = prepared[("python_chars", split)]["tokens"]
        assert len(tokens) > 1000
        assert tokens.min() >= 0 and tokens.max() < 256
        text = bytes(tokens[:, :-1].astype(np.uint8).ravel()).decode("utf-8", errors="replace")
        assert "def " in text and "import " in text and "return" in text
    # Consecutive windows of a file share one byte: targets continue inputs.
    tokens = prepared[("python_chars", "train")]["tokens"]
    assert np.mean(tokens[:-1, -1] == tokens[1:, 0]) > 0.9


def test_python_chars_splits_by_file(tmp_path):
    files = datasets.builder("python_chars", str(tmp_path)).source_files()
    assert files == sorted(files) and len(files) >= 10
    assert all(path.suffix == ".py" for path in files)


def test_sequence_targets(prepared):
    adding = prepared[("synthetic_sequences/adding", "train")]
    values, markers = adding["x"][..., 0], adding["x"][..., 1]
    np.testing.assert_array_equal(markers.sum(1), 2)
    np.testing.assert_allclose(adding["y"], (values * markers).sum(1), rtol=1e-6)

    parity = prepared[("synthetic_sequences/parity", "train")]
    np.testing.assert_array_equal(parity["y"], np.cumsum(parity["x"], 1) % 2)

    copy = prepared[("synthetic_sequences/copy", "train")]
    np.testing.assert_array_equal(copy["y"][:, 11:], copy["x"][:, :10])
    np.testing.assert_array_equal(copy["x"][:, 10], 9)
    assert copy["x"][:, :10].min() >= 1 and copy["x"][:, :10].max() <= 8

    sort = prepared[("synthetic_sequences/sort", "train")]
    np.testing.assert_array_equal(sort["y"], np.sort(sort["x"], axis=1))
    assert sort["x"].min() == 0 and sort["x"].max() == 15

    reverse = prepared[("synthetic_sequences/reverse", "train")]
    np.testing.assert_array_equal(reverse["y"][:, 9:], reverse["x"][:, 7::-1])
    np.testing.assert_array_equal(reverse["y"][:, :9], 0)
    np.testing.assert_array_equal(reverse["x"][:, 8], 7)
    np.testing.assert_array_equal(reverse["x"][:, 9:], 0)
    assert reverse["x"][:, :8].min() == 1 and reverse["x"][:, :8].max() == 6


def test_synthetic_regression_scale(prepared):
    y = prepared[("synthetic_regression", "train")]["y"]
    np.testing.assert_allclose(y.std(0), 1.0, atol=0.1)


def test_noisy_teacher_classification_has_balanced_classes_that_depend_on_x(prepared):
    train = prepared[("noisy_teacher_classification/selection", "train")]
    counts = np.bincount(train["y"], minlength=8)
    assert counts.shape == (8,) and counts.min() > 200 and counts.max() < 800
    # The nearest neighbour (of 1000, in 32 dimensions) shares an example's
    # label more often than chance (1/8): labels are a function of x, up to
    # the noise (0.231 measured).
    x = train["x"][:1000].astype(np.float64)
    # |a - b|^2 = |a|^2 - 2 a.b + |b|^2: a [1000, 1000] matrix, not [1000, 1000, 32].
    square = (x**2).sum(1)
    distances = square[:, None] - 2 * x @ x.T + square[None, :]
    np.fill_diagonal(distances, np.inf)
    agreement = np.mean(train["y"][:1000][distances.argmin(1)] == train["y"][:1000])
    assert 0.18 < agreement < 0.9, agreement


def test_scaled_linear_regression_is_linear_and_ill_conditioned(prepared):
    train = prepared[("scaled_linear_regression", "train")]
    scales = train["x"].std(0)
    assert np.all(np.diff(scales) > 0) and 3e3 < scales[-1] / scales[0] < 3e4
    # Least squares leaves the noise (0.01^2); y has about unit variance.
    x = np.c_[train["x"], np.ones(len(train["x"]))].astype(np.float64)
    weights, *_ = np.linalg.lstsq(x, train["y"], rcond=None)
    assert np.mean((x @ weights - train["y"]) ** 2) < 2e-4 and 0.8 < train["y"].var() < 1.2


def test_load_numpy_caches_read_only_arrays(prepared, tmp_path):
    first = datasets.load_numpy("digits", "test", str(tmp_path))
    second = datasets.load_numpy("digits", "test", str(tmp_path))
    assert first is not second and first["x"] is second["x"]
    assert not first["x"].flags.writeable


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_LOPT_DATA_DIR", str(tmp_path))
    assert datasets.default_data_dir() == str(tmp_path)
    assert datasets.builder("mnist1d").data_dir.startswith(str(tmp_path))


def test_unknown_name():
    with pytest.raises(ValueError, match="`name` must be one of .*name='mnist'"):
        datasets.builder("mnist")
    with pytest.raises(ValueError, match="synthetic_sequences/copy"):
        datasets.load_numpy("synthetic_sequences/shuffle", "train")


def test_second_import_does_not_clash():
    spec = importlib.util.spec_from_file_location("keras_lopt_datasets_copy", datasets.__file__)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    assert copy.DATASETS.keys() == datasets.DATASETS.keys()


def test_import_keras_lopt_skips_tensorflow_datasets():
    code = "import sys, keras_lopt, keras_lopt.meta; sys.exit('tensorflow_datasets' in sys.modules)"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_preparing_says_preparing_with_the_real_size(tmp_path, capfd):
    datasets.load_numpy("synthetic_regression", "test", str(tmp_path))
    out = capfd.readouterr().out
    assert "Downloading" not in out and "Unknown size" not in out, out
    assert f"Preparing data set 'synthetic_regression' (generated locally, no download) in {tmp_path}" in out
    size = re.search(r"Prepared data set 'synthetic_regression': ([0-9.]+) (KiB|MiB) in ", out)
    assert size, out
    # tfds counts the serialized examples; the files add record framing.
    reported = float(size.group(1)) * {"KiB": 1024, "MiB": 1024**2}[size.group(2)]
    written = sum(f.stat().st_size for f in tmp_path.rglob("*.tfrecord*"))
    assert 0.8 * written <= reported <= written, (reported, written)
