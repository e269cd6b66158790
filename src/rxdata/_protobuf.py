"""``tf.train.Example`` protos by hand, both ways: no TensorFlow, no protobuf package.

:func:`example_features` gives ``{feature name: values}`` exactly as protobuf's own
parser reads the same bytes (tests/test_sites.py checks it on generated examples), so
that :mod:`rxdata.reader` can decode records where TensorFlow is not imported.

:func:`serialize_example` writes an Example byte for byte as protobuf's default (upb)
backend does with ``deterministic=True`` (tests/test_tfrecord.py checks it on random
features), so that :func:`rxdata.tfrecord.encode_example` needs no TensorFlow and copies
each image byte once, into the serialized example. It also pins the bytes: protobuf's
other backends order a map's keys differently, which would change a shard's bytes, and
so its checksum, with the environment.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rxdata.errors import RecordError

# The protobuf wire format of the five messages of tf.train.Example:
#   Example  {Features features = 1}        Features {map<string, Feature> feature = 1}
#   Feature  {oneof {BytesList bytes_list = 1; FloatList float_list = 2;
#                    Int64List int64_list = 3}}
#   *List    {repeated value = 1}  (bytes; float packed or fixed32; int64 packed or varint)
# Protobuf's merge rules apply: a message field repeated merges, a map keeps the last
# entry of a key, a oneof the last member set. It needs no TensorFlow and no protobuf
# package, and parses an rxdata record about as fast as protobuf's Python API.
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise RecordError("not a serialized tf.train.Example (truncated or bad varint)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of each field of one message."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == _WIRE_VARINT:
            value, pos = _varint(data, pos)
        elif wire == _WIRE_LEN:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
            size = 8 if wire == _WIRE_FIXED64 else 4
            value, pos = data[pos : pos + size], pos + size
        else:
            raise RecordError(f"not a serialized tf.train.Example (wire type {wire})")
        if pos > end or number == 0:
            raise RecordError("not a serialized tf.train.Example (truncated field)")
        yield number, wire, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _list_values(kind: int, data: memoryview) -> list[Any]:
    """The values of a BytesList (1), FloatList (2) or Int64List (3)."""
    values: list[Any] = []
    for number, wire, value in _fields(data):
        if number != 1:
            continue  # an unknown field: skipped, as protobuf does
        if kind == 1 and wire == _WIRE_LEN:
            values.append(bytes(value))
        elif kind == 2 and wire == _WIRE_LEN and len(value) % 4 == 0:
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif kind == 2 and wire == _WIRE_FIXED32:
            values.append(struct.unpack("<f", value)[0])
        elif kind == 3 and wire == _WIRE_LEN:
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                values.append(_int64(item))
        elif kind == 3 and wire == _WIRE_VARINT:
            values.append(_int64(value))
        elif kind == 2 and wire == _WIRE_LEN:
            raise RecordError("not a serialized tf.train.Example (bad packed floats)")
        # else: the field number with another wire type is an unknown field, as in protobuf
    return values


def _feature(data: memoryview) -> list[Any]:
    """The values of one Feature (its last oneof member; repeats of it concatenate)."""
    kind, parts = 0, list[memoryview]()
    for number, wire, value in _fields(data):
        if number in (1, 2, 3) and wire == _WIRE_LEN:  # other wire types: unknown fields
            if number != kind:
                kind, parts = number, []
            parts.append(value)
    return [v for part in parts for v in _list_values(kind, part)]


def example_features(serialized: bytes) -> dict[str, list[Any]]:
    """``{key: values}`` of a serialized ``tf.train.Example``; no TensorFlow needed.

    Raises:
        RecordError: ``serialized`` is not a well-formed Example.
    """
    entries: dict[str, memoryview] = {}
    # memoryview slices: the image bytes are copied once, into their value, not per level
    for number, wire, features in _fields(memoryview(serialized)):
        if number != 1 or wire != _WIRE_LEN:
            continue  # an unknown field (another number, or another wire type)
        for f_number, f_wire, entry in _fields(features):
            if f_number != 1 or f_wire != _WIRE_LEN:
                continue
            key, value = memoryview(b""), memoryview(b"")
            for e_number, e_wire, e_value in _fields(entry):
                if e_wire == _WIRE_LEN and e_number == 1:
                    key = e_value
                elif e_wire == _WIRE_LEN and e_number == 2:
                    # a message repeated merges: concatenated serialized messages do
                    value = memoryview(bytes(value) + bytes(e_value)) if value else e_value
            try:
                name = bytes(key).decode()
            except UnicodeDecodeError:
                raise RecordError(
                    "not a serialized tf.train.Example (feature name is not UTF-8)"
                ) from None
            entries[name] = value  # a key repeated: the last entry wins
    return {key: _feature(value) for key, value in entries.items()}


# --- writing -------------------------------------------------------------------------------
# The value kinds serialize_example takes, and their field number in tf.train.Feature.
_KINDS = {"bytes_list": 1, "int64_list": 3}


def _put_varint(value: int) -> bytes:
    """``value`` as a protobuf varint (a negative int64 as its 64-bit two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _map_order(key: str) -> tuple[int, ...]:
    """upb's deterministic order of map keys: bytewise, but a key after its extensions."""
    return (*key.encode(), 256)


def serialize_example(features: Mapping[str, tuple[str, Sequence[Any]]]) -> bytes:
    """A serialized ``tf.train.Example`` of ``{name: (kind, values)}``.

    Args:
        features: Each feature's kind (``"bytes_list"``: values are bytes-like, e.g.
            bytes or a contiguous array's memoryview; ``"int64_list"``: ints in the int64
            range) and values.

    Returns:
        The bytes protobuf writes for the same Example with ``deterministic=True``.

    Raises:
        RecordError: An unknown kind, or an int outside the int64 range.

    Example:
        >>> features = {"site": ("int64_list", [2]), "well": ("bytes_list", [b"B02"])}
        >>> example_features(serialize_example(features))
        {'site': [2], 'well': [b'B02']}
    """
    pieces: list[Any] = []  # each entry's head, then its values' heads and bytes
    total = 0
    for name in sorted(features, key=_map_order):
        kind, values = features[name]
        if kind not in _KINDS:
            raise RecordError(f"feature {name!r}: kind {kind!r} is not one of {sorted(_KINDS)}")
        items: list[Any] = []
        if kind == "bytes_list":
            for value in values:
                items += (b"\x0a" + _put_varint(memoryview(value).nbytes), value)
        else:
            for value in values:
                if not -(1 << 63) <= value < 1 << 63:
                    raise RecordError(f"feature {name!r}: {value} is outside the int64 range")
            packed = b"".join(_put_varint(int(v)) for v in values)
            if packed:  # an empty packed field is not written
                items += (b"\x0a" + _put_varint(len(packed)), packed)
        size = sum(memoryview(item).nbytes for item in items)
        feature = bytes([_KINDS[kind] << 3 | _WIRE_LEN]) + _put_varint(size)
        key = name.encode()
        entry = b"\x0a" + _put_varint(len(key)) + key
        value_head = b"\x12" + _put_varint(len(feature) + size)
        entry_size = len(entry) + len(value_head) + len(feature) + size
        head = b"\x0a" + _put_varint(entry_size) + entry + value_head + feature
        pieces += (head, *items)
        total += len(head) + size
    if not features:
        return b""  # protobuf writes nothing for an Example whose features were never set
    return b"".join((b"\x0a" + _put_varint(total), *pieces))
