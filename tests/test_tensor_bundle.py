"""keras_lopt.tensor_bundle reads TensorFlow checkpoints as TensorFlow does."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_lopt import presets, tensor_bundle


def _tensorflow_read(prefix):
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {name: reader.get_tensor(name) for name in dtypes if dtypes[name] != tf.string}


def _assert_same(got, expected):
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.mark.parametrize("name", presets.list_presets())
def test_shipped_presets_read_as_tensorflow_reads_them(name):
    prefix = os.path.join(presets.resolve(name), "variables", "variables")
    _assert_same(tensor_bundle.read_bundle(prefix), _tensorflow_read(prefix))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of many variables (an index of several blocks) and dtypes."""
    rng = np.random.default_rng(0)
    values = {f"v{i:03d}_{'x' * i}": rng.normal(size=(i % 7 + 1, 3)).astype(np.float32) for i in range(120)}
    values.update(
        big=rng.normal(size=(300, 200)).astype(np.float32),
        f64=rng.normal(size=(2, 2)),
        i64=np.arange(7, dtype=np.int64),
        i32=np.arange(-3, 3, dtype=np.int32),
        f16=np.linspace(-1, 1, 5).astype(np.float16),
        flags=np.array([True, False, True]),
        scalar=np.float32(2.5),
    )
    prefix = tf.train.Checkpoint(**{k: tf.Variable(v) for k, v in values.items()}).write(
        str(tmp_path_factory.mktemp("bundle") / "ckpt")
    )
    return prefix


def test_many_variables_and_dtypes_read_as_tensorflow_reads_them(checkpoint):
    assert os.path.getsize(checkpoint + ".index") > 3 * 4096  # several data blocks
    _assert_same(tensor_bundle.read_bundle(checkpoint), _tensorflow_read(checkpoint))


def test_names_selects_tensors(checkpoint):
    got = tensor_bundle.read_bundle(checkpoint, names=lambda name: name.startswith("big/"))
    assert list(got) == ["big/.ATTRIBUTES/VARIABLE_VALUE"]
    assert got["big/.ATTRIBUTES/VARIABLE_VALUE"].shape == (300, 200)


def test_crc32c_known_value():
    # The CRC-32C check value (RFC 3720, iSCSI).
    assert tensor_bundle.crc32c(b"123456789") == 0xE3069283


def _copy(checkpoint, tmp_path):
    prefix = str(tmp_path / "ckpt")
    for suffix in (".index", ".data-00000-of-00001"):
        with open(checkpoint + suffix, "rb") as src, open(prefix + suffix, "wb") as dst:
            dst.write(src.read())
    return prefix


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_corrupted_data_fails_its_checksum(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    _flip_byte(prefix + ".data-00000-of-00001", 100)
    with pytest.raises(tensor_bundle.BundleError, match="checksum mismatch in the data file"):
        tensor_bundle.read_bundle(prefix)


def test_corrupted_index_fails_its_checksum(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    _flip_byte(prefix + ".index", 40)
    with pytest.raises(tensor_bundle.BundleError, match=r"ckpt\.index.*checksum mismatch"):
        tensor_bundle.read_bundle(prefix)


def test_truncated_index_is_not_a_table(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    with open(prefix + ".index", "r+b") as f:
        f.truncate(100)
    with pytest.raises(tensor_bundle.BundleError, match="not a checkpoint index"):
        tensor_bundle.read_bundle(prefix)


def test_missing_data_file(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    os.remove(prefix + ".data-00000-of-00001")
    with pytest.raises(tensor_bundle.BundleError, match="missing data file"):
        tensor_bundle.read_bundle(prefix)


def test_missing_index_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        tensor_bundle.read_bundle(str(tmp_path / "nothing"))
