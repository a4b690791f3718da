"""Reads TensorFlow's checkpoint format with numpy alone.

A preset's weights live in its SavedModel's `variables/`: a TensorFlow
"tensor bundle", an index file (a LevelDB-format table mapping each tensor's
name to a `BundleEntryProto`: dtype, shape, shard, offset, size, CRC32C) and
data files of raw little-endian bytes. Reading them here, instead of through
`tf.train.load_checkpoint`, lets presets load on Keras' JAX and PyTorch
backends where TensorFlow is not installed, and gives the same arrays bit for
bit (tests compare every shipped preset with TensorFlow's reader).

Supported: uncompressed tables (TensorFlow writes bundles so), numeric dtypes,
unsliced tensors. Anything else, and any checksum or structure that does not
add up, raises `BundleError` naming the file and the problem.
"""

import os

import numpy as np

__all__ = ["BundleError", "read_bundle"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked CRC32C (4 bytes)

# `tensorflow.DataType` numbers of the numeric dtypes a bundle may hold.
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
_DT_STRING = 7


class BundleError(ValueError):
    """A tensor bundle that cannot be read: the message names the file and why."""


def _crc32c_table():
    table = np.zeros(256, np.uint32)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table[i] = crc
    return table.tolist()


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of `data` (bytes), as TensorFlow computes it."""
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask(masked):
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def _varint(data, pos, where):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise BundleError(f"{where}: truncated or malformed varint at byte {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _proto_fields(data, where):
    """`{field number: [values]}` of a protobuf message: varints as ints,
    length-delimited fields as bytes, fixed32/64 as ints."""
    fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos, where)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, where)
        elif wire == 2:
            size, pos = _varint(data, pos, where)
            value = bytes(data[pos : pos + size])
            if len(value) != size:
                raise BundleError(f"{where}: truncated protobuf field {number}")
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(data):
                raise BundleError(f"{where}: truncated protobuf field {number}")
            value = int.from_bytes(data[pos : pos + width], "little")
            pos += width
        else:
            raise BundleError(f"{where}: unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _block(table, offset, size, where):
    """The contents of the table block at `(offset, size)`, checksum checked."""
    end = offset + size
    if end + _BLOCK_TRAILER_SIZE > len(table):
        raise BundleError(f"{where}: block at byte {offset} runs past the end of the file")
    contents = table[offset:end]
    compression = table[end]
    if compression != 0:
        raise BundleError(f"{where}: compressed table blocks (type {compression}) are not supported")
    stored = int.from_bytes(table[end + 1 : end + 5], "little")
    if crc32c(table[offset : end + 1]) != _unmask(stored):
        raise BundleError(f"{where}: checksum mismatch in the block at byte {offset}")
    return contents


def _block_entries(contents, where):
    """`[(key, value)]` of a table block (prefix-compressed keys)."""
    if len(contents) < 4:
        raise BundleError(f"{where}: block too short")
    num_restarts = int.from_bytes(contents[-4:], "little")
    limit = len(contents) - 4 - 4 * num_restarts
    if limit < 0:
        raise BundleError(f"{where}: malformed block ({num_restarts} restart points)")
    entries = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(contents, pos, where)
        unshared, pos = _varint(contents, pos, where)
        value_size, pos = _varint(contents, pos, where)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise BundleError(f"{where}: malformed block entry at byte {pos}")
        key = key[:shared] + bytes(contents[pos : pos + unshared])
        pos += unshared
        entries.append((key, bytes(contents[pos : pos + value_size])))
        pos += value_size
    return entries


def _table_entries(path):
    """`[(key, value)]` of a LevelDB-format table file, in key order."""
    with open(path, "rb") as f:
        table = f.read()
    if len(table) < _FOOTER_SIZE or int.from_bytes(table[-8:], "little") != _TABLE_MAGIC:
        raise BundleError(f"{path}: not a checkpoint index (no table footer)")
    footer = table[-_FOOTER_SIZE:]
    _, pos = _varint(footer, 0, path)  # metaindex offset
    _, pos = _varint(footer, pos, path)  # metaindex size
    index_offset, pos = _varint(footer, pos, path)
    index_size, pos = _varint(footer, pos, path)
    entries = []
    for _, handle in _block_entries(_block(table, index_offset, index_size, path), path):
        offset, pos = _varint(handle, 0, path)
        size, _ = _varint(handle, pos, path)
        entries += _block_entries(_block(table, offset, size, path), path)
    return entries


def _shape(shape_proto, where):
    fields = _proto_fields(shape_proto, where)
    if fields.get(3, [0])[0]:
        raise BundleError(f"{where}: tensor of unknown rank")
    return tuple(_proto_fields(dim, where).get(1, [0])[0] for dim in fields.get(2, []))


def read_bundle(prefix, names=None):
    """The tensors of a TensorFlow checkpoint as numpy arrays.

    Args:
        prefix: the checkpoint prefix, e.g. `<saved_model>/variables/variables`
            (files `prefix.index` and `prefix.data-00000-of-0000N`).
        names: a predicate on tensor names; only those it accepts are read
            (default: every numeric tensor; string tensors are skipped).

    Returns:
        `{name: np.ndarray}`.

    Raises:
        BundleError: a missing or malformed file, a checksum mismatch, an
            unsupported dtype or a sliced tensor among those asked for.
        OSError: a file that cannot be opened.
    """
    index_path = f"{prefix}.index"
    entries = _table_entries(index_path)
    if not entries or entries[0][0] != b"":
        raise BundleError(f"{index_path}: no bundle header")
    header = _proto_fields(entries[0][1], index_path)
    num_shards = header.get(1, [1])[0]
    if header.get(2, [0])[0] != 0:
        raise BundleError(f"{index_path}: big-endian bundles are not supported")
    shards = {}
    tensors = {}
    for raw_name, entry in entries[1:]:
        name = raw_name.decode("utf-8", "replace")
        if names is not None and not names(name):
            continue
        where = f"{index_path} ({name!r})"
        fields = _proto_fields(entry, where)
        dtype = fields.get(1, [0])[0]
        if dtype == _DT_STRING and names is None:
            continue
        if dtype not in _DTYPES:
            raise BundleError(f"{where}: unsupported dtype number {dtype}")
        if 7 in fields:
            raise BundleError(f"{where}: sliced (partitioned) tensors are not supported")
        shape = _shape(fields.get(2, [b""])[0], where)
        shard, offset, size = (fields.get(n, [0])[0] for n in (3, 4, 5))
        if shard not in shards:
            data_path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
            if not os.path.isfile(data_path):
                raise BundleError(f"{where}: missing data file {data_path}")
            with open(data_path, "rb") as f:
                shards[shard] = f.read()
        data = shards[shard][offset : offset + size]
        itemsize = np.dtype(_DTYPES[dtype]).itemsize
        if len(data) != size or size != itemsize * int(np.prod(shape, dtype=np.int64)):
            raise BundleError(f"{where}: {size} bytes at offset {offset} do not hold a tensor of shape {shape}")
        if 6 in fields and crc32c(data) != _unmask(fields[6][0]):
            raise BundleError(f"{where}: checksum mismatch in the data file")
        tensors[name] = np.frombuffer(data, np.dtype(_DTYPES[dtype]).newbyteorder("<")).reshape(shape).copy()
    return tensors
