"""The rxdata TFRecord format: schema, single-example encoding, atomic shards, reading.

Contract:
    * One ``tf.train.Example`` per **site**. The feature layout is the table of key-name
      constants below; it is a superset of the layout `recursionpharma/rxrx1-utils` wrote,
      so records written by rxrx1-utils are read unchanged, and rxdata's ``raw`` records
      carry every feature rxrx1-utils' ``parse_example`` asked for.
    * :func:`encode_example` turns one row of the metadata table (see CONTRIBUTING.md)
      plus the site's pixels into serialized bytes; :func:`write_shard` writes serialized
      examples to one shard file under a temporary name and renames it into place only
      when complete, so no half-written shard is ever visible.
    * :func:`read_tfrecord` yields plain dicts of Python/numpy values (image as
      ``(H, W, C)`` uint8) and needs no flags: it detects the record compression from the
      file's first bytes and the image encoding from each example.
    * :func:`parse_example` and :func:`decode_image` are the graph-side twins used by
      :mod:`rxdata.pipeline` inside ``tf.data``.

Compression detection (:func:`detect_compression`), in this order:
    1. an empty file, or a first 12 bytes that form a valid TFRecord length header (the
       masked CRC-32C of the 8-byte length matches), is uncompressed;
    2. the GZIP magic bytes ``1f 8b`` mean ``gzip``;
    3. a valid ZLIB header (deflate method, 32 KiB window, ``(CMF*256+FLG) % 31 == 0``)
       means ``zlib``;
    4. anything else is not a TFRecord file: :class:`~rxdata.errors.RecordError`.
    An uncompressed header is checked first because its CRC makes a false match with
    step 2 or 3 essentially impossible (one in 2**32), while a raw length byte can be
    ``0x78`` or ``0x1f``.

Example:
    >>> import numpy as np, tempfile, os
    >>> from rxdata import tfrecord
    >>> site = {"experiment": "HEPG2-01", "plate": 1, "well": "B03", "site": 2,
    ...         "well_type": "treatment", "sirna": "513", "sirna_id": 513}
    >>> image = np.arange(4 * 4 * 6, dtype=np.uint8).reshape(4, 4, 6)
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.tfrecord")
    >>> info = tfrecord.write_shard(path, [tfrecord.encode_example(site, image=image)])
    >>> info.count
    1
    >>> record = next(tfrecord.read_tfrecord(path))
    >>> record["id_code"], record["sirna_id"], record["image"].shape
    ('HEPG2-01_1_B03', 513, (4, 4, 6))
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from rxdata import _io, naming
from rxdata._compat import moved
from rxdata.errors import OptionsError, RecordError

__all__ = [
    "CELL_TYPE",
    "CHANNELS_KEY",
    "COMPRESSIONS",
    "DATASET",
    "DEFAULT_CHANNEL_COUNT",
    "ENCODING",
    "ENCODINGS",
    "EXPERIMENT",
    "HEIGHT",
    "ID_CODE",
    "IMAGE",
    "PLATE",
    "SIRNA",
    "SIRNA_ID",
    "SIRNA_LABEL",
    "SITE",
    "WELL",
    "WELL_TYPE",
    "WIDTH",
    "RecordLayout",
    "RecordReader",
    "ShardInfo",
    "decode_example",
    "decode_image",
    "detect_compression",
    "encode_example",
    "feature_spec",
    "parse_example",
    "read_layout",
    "read_tfrecord",
    "write_shard",
]

# ---------------------------------------------------------------------------------------
# The feature schema. One tf.train.Example per site.
#
# | key           | type  | presence                  | meaning                                |
# |---------------|-------|---------------------------|----------------------------------------|
# | image         | bytes | always                    | raw: 1 value, H*W*C uint8 bytes in     |
# |               |       |                           | (H, W, C) C order (rxrx1-utils layout);|
# |               |       |                           | png: C values, one 8-bit grayscale PNG |
# |               |       |                           | per channel, in channel order          |
# | encoding      | bytes | rxdata                    | "raw" or "png"; absent means "raw"     |
# | height        | int64 | rxdata                    | image rows H                           |
# | width         | int64 | rxdata                    | image columns W                        |
# | channels      | int64 | rxdata                    | channel count C; absent: a square      |
# |               |       |                           | image of 6 channels (or of the first of|
# |               |       |                           | 3, 4, 5, 2, 1 that makes one square)   |
# | id_code       | bytes | rxdata                    | Kaggle well id "HEPG2-01_1_B03";       |
# |               |       |                           | absent: "{experiment}_{plate}_{well}"  |
# | dataset       | bytes | rxdata, when known        | "train" or "test"                      |
# | experiment    | bytes | always                    | "HEPG2-01"                             |
# | cell_type     | bytes | always (rxdata: derived   | "HEPG2", "HUVEC", "RPE", "U2OS"        |
# |               |       | from experiment if unset) |                                        |
# | plate         | int64 | always                    | 1..4                                   |
# | well          | bytes | always                    | "B03"                                  |
# | site          | int64 | always                    | 1 or 2                                 |
# | well_type     | bytes | when known                | "treatment", "positive_control",       |
# |               |       |                           | "negative_control"                     |
# | sirna         | int64 | when labelled             | the class 0..1138, equal to sirna_id   |
# |               |       |                           | (rxrx1-utils wrote the Kaggle integer  |
# |               |       |                           | label here); absent on unlabeled sites |
# | sirna_id      | int64 | rxdata, when labelled     | the class 0..1138 (1108..1137 positive |
# |               |       |                           | controls, 1138 negative control)       |
# | sirna_label   | bytes | rxdata, when labelled     | the label as given in the metadata:    |
# |               |       |                           | "513", "sirna_250", "UNTREATED",       |
# |               |       |                           | "s21721"                               |
#
# "always" = written by rxdata and by rxrx1-utils; "rxdata" = written by rxdata only, with
# the stated fallback when reading rxrx1-utils records.
# ---------------------------------------------------------------------------------------
IMAGE = "image"
ENCODING = "encoding"
HEIGHT = "height"
WIDTH = "width"
CHANNELS_KEY = "channels"  # the feature key (was CHANNELS; channel tuples: naming.CHANNELS)
ID_CODE = "id_code"
DATASET = "dataset"
EXPERIMENT = "experiment"
CELL_TYPE = "cell_type"
PLATE = "plate"
WELL = "well"
SITE = "site"
WELL_TYPE = "well_type"
SIRNA = "sirna"
SIRNA_ID = "sirna_id"
SIRNA_LABEL = "sirna_label"

#: Channel count assumed for records without a ``channels`` feature (rxrx1-utils wrote
#: all six RxRx1 channels).
DEFAULT_CHANNEL_COUNT = len(naming.CHANNELS)

#: Image encodings: ``raw`` uint8 bytes (fast to decode, ~3x larger) or per-channel PNG.
ENCODINGS: tuple[str, ...] = ("raw", "png")
#: Record compressions accepted by :func:`write_shard`.
COMPRESSIONS: tuple[str, ...] = ("none", "gzip", "zlib")

Compression = Literal["none", "gzip", "zlib"]
OnError = Literal["raise", "skip", "warn"]
_ON_ERROR = ("raise", "skip", "warn")
_TF_COMPRESSION = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Example keys that hold text; all other scalar keys hold int64.
_STRING_KEYS = (ID_CODE, DATASET, EXPERIMENT, CELL_TYPE, WELL, WELL_TYPE, SIRNA_LABEL)
_INT_KEYS = (PLATE, SITE, SIRNA, SIRNA_ID)
_REQUIRED_SITE_KEYS = (EXPERIMENT, PLATE, WELL, SITE)


# ---------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    """True for None, pandas NA/NaT and float NaN (the metadata table's "absent")."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


# A feature as (list field of tf.train.Feature, values). encode_example fills the Example
# in place from these: nesting BytesList -> Feature -> Features -> Example deep-copies each
# level, which is four copies of every image byte instead of one.
_Feature = tuple[str, list[Any]]


def _bytes_feature(values: Sequence[bytes]) -> _Feature:
    return ("bytes_list", list(values))


def _int_feature(value: int) -> _Feature:
    return ("int64_list", [value])


def _as_int(site: Mapping[str, Any], key: str) -> int:
    value = site[key]
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise RecordError(
            f"site {_describe(site)}: column {key!r} must be an integer, got {value!r}"
        ) from None
    if as_int != value and not isinstance(value, str):
        raise RecordError(
            f"site {_describe(site)}: column {key!r} must be an integer, got {value!r}"
        )
    return as_int


def _describe(site: Mapping[str, Any]) -> str:
    for key in ("site_id", ID_CODE):
        if key in site and not _is_missing(site[key]):
            return repr(str(site[key]))
    parts = [str(site.get(k, "?")) for k in _REQUIRED_SITE_KEYS]
    return repr("_".join(parts))


def _png_size(png: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk, without decoding."""
    if len(png) < 24 or png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise RecordError("not a PNG byte string (bad signature or missing IHDR chunk)")
    width, height = struct.unpack(">II", png[16:24])
    return int(height), int(width)


def encode_example(
    site: Mapping[str, Any],
    *,
    image: np.ndarray | None = None,
    pngs: Sequence[bytes] | None = None,
    height: int | None = None,
    width: int | None = None,
) -> bytes:
    """Serialize one site as a ``tf.train.Example`` in the rxdata layout.

    Args:
        site: One row of the metadata table (a mapping such as ``row._asdict()`` or
            ``df.iloc[i].to_dict()``). Needs ``experiment``, ``plate``, ``well`` and
            ``site``; ``id_code``, ``dataset``, ``cell_type``, ``well_type``, ``sirna``
            and ``sirna_id`` are written when present. ``None``, ``pd.NA`` and NaN count
            as absent. Other columns are ignored.
        image: The site's pixels, ``(H, W, C)`` uint8; stored with encoding ``raw``.
        pngs: One 8-bit grayscale PNG byte string per channel, in channel order, already
            validated by the caller; stored as given with encoding ``png``.
        height: Image height for ``pngs`` (read from the first PNG's header if omitted;
            must equal ``image.shape[0]`` if given with ``image``).
        width: Image width, like ``height``.

    Returns:
        The serialized example.

    Raises:
        RecordError: Neither or both of ``image`` and ``pngs``; an image that is not
            ``(H, W, C)`` uint8; PNGs whose header size disagrees with ``height``/``width``
            or with each other; a required column missing or not an integer.

    Example:
        >>> import numpy as np
        >>> site = {"experiment": "U2OS-01", "plate": 2, "well": "C04", "site": 1}
        >>> data = encode_example(site, image=np.zeros((8, 8, 3), np.uint8))
        >>> import tensorflow as tf
        >>> ex = tf.train.Example.FromString(data)
        >>> ex.features.feature["id_code"].bytes_list.value[0]
        b'U2OS-01_2_C04'
    """
    if (image is None) == (pngs is None):
        raise RecordError(
            f"site {_describe(site)}: pass exactly one of image= (raw) or pngs= (png)"
        )
    for key in _REQUIRED_SITE_KEYS:
        if key not in site or _is_missing(site[key]):
            raise RecordError(
                f"site {_describe(site)}: required column {key!r} is missing; "
                f"need {', '.join(_REQUIRED_SITE_KEYS)}"
            )
    feature: dict[str, _Feature] = {}
    if image is not None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise RecordError(
                f"site {_describe(site)}: image must be an (H, W, C) uint8 array, "
                f"got shape {shape} dtype {dtype}"
            )
        h, w, c = (int(n) for n in image.shape)
        if (height is not None and height != h) or (width is not None and width != w):
            raise RecordError(
                f"site {_describe(site)}: image is {h}x{w} but height={height}, width={width}"
            )
        feature[IMAGE] = _bytes_feature([np.ascontiguousarray(image).tobytes()])
        feature[ENCODING] = _bytes_feature([b"raw"])
    else:
        assert pngs is not None  # for the type checker; checked above
        pngs = list(pngs)
        if not pngs:
            raise RecordError(f"site {_describe(site)}: pngs is empty; need one PNG per channel")
        sizes = []
        for i, png in enumerate(pngs):
            try:
                sizes.append(_png_size(png))
            except RecordError as err:
                raise RecordError(f"site {_describe(site)}: channel {i + 1}: {err}") from None
        if len(set(sizes)) != 1:
            raise RecordError(f"site {_describe(site)}: channel PNG sizes differ: {sizes}")
        h, w = sizes[0]
        if (height is not None and height != h) or (width is not None and width != w):
            raise RecordError(
                f"site {_describe(site)}: PNGs are {h}x{w} but height={height}, width={width}"
            )
        c = len(pngs)
        feature[IMAGE] = _bytes_feature(pngs)
        feature[ENCODING] = _bytes_feature([b"png"])
    feature[HEIGHT] = _int_feature(h)
    feature[WIDTH] = _int_feature(w)
    feature[CHANNELS_KEY] = _int_feature(c)

    experiment = str(site[EXPERIMENT])
    plate = _as_int(site, PLATE)
    well = str(site[WELL])
    feature[EXPERIMENT] = _bytes_feature([experiment.encode()])
    feature[PLATE] = _int_feature(plate)
    feature[WELL] = _bytes_feature([well.encode()])
    feature[SITE] = _int_feature(_as_int(site, SITE))
    id_code = site.get(ID_CODE)
    if _is_missing(id_code):
        id_code = f"{experiment}_{plate}_{well}"
    feature[ID_CODE] = _bytes_feature([str(id_code).encode()])
    cell_type = site.get(CELL_TYPE)
    if _is_missing(cell_type):
        cell_type = experiment.split("-")[0]  # RxRx1 experiments are "<CELL TYPE>-<NN>"
    feature[CELL_TYPE] = _bytes_feature([str(cell_type).encode()])
    for key in (DATASET, WELL_TYPE):
        value = site.get(key)
        if not _is_missing(value):
            feature[key] = _bytes_feature([str(value).encode()])
    sirna_id = None if _is_missing(site.get(SIRNA_ID)) else _as_int(site, SIRNA_ID)
    label = site.get(SIRNA)
    if not _is_missing(label):
        feature[SIRNA_LABEL] = _bytes_feature([str(label).encode()])
        if sirna_id is None and str(label).isdigit():
            sirna_id = int(str(label))  # competition CSVs: the label is the class
    if sirna_id is not None:
        feature[SIRNA_ID] = _int_feature(sirna_id)
        feature[SIRNA] = _int_feature(sirna_id)
    example = tf.train.Example()
    features = example.features.feature
    for key, (kind, values) in feature.items():
        getattr(features[key], kind).value.extend(values)
    # Protobuf's default map order varies between processes. Deterministic serialization
    # (same cost) makes a site's bytes a pure function of its content, so a resumed,
    # parallel or Beam conversion writes byte-identical shards to an uninterrupted one.
    return bytes(example.SerializeToString(deterministic=True))


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardInfo:
    """What :func:`write_shard` wrote.

    Attributes:
        path: The final shard path.
        count: Number of examples in the shard.
        sha256: Hex SHA-256 of the final file's bytes (after compression).
        size: File size in bytes.
    """

    path: str
    count: int
    sha256: str
    size: int


def _check_compression(compression: str) -> str:
    if compression not in COMPRESSIONS:
        raise OptionsError(f"compression={compression!r}; allowed: {', '.join(COMPRESSIONS)}")
    return compression


def write_shard(
    path: str | os.PathLike[str],
    examples: Iterable[bytes],
    *,
    compression: Compression = "none",
) -> ShardInfo:
    """Write serialized examples to one TFRecord shard, atomically.

    The records go to a hidden temporary file in the same directory (``.NAME.tmp-…``,
    which ``*.tfrecord`` globs do not match) that is renamed to ``path`` only after the
    last record is written and the file closed; on any failure, including an exception
    raised by the ``examples`` iterable, the temporary file is removed and ``path`` is
    left as it was. Works for local paths and ``gs://`` URLs.

    Args:
        path: Destination shard path; its directory is created if needed.
        examples: Serialized ``tf.train.Example`` bytes (from :func:`encode_example`).
        compression: ``"none"`` (default: fastest to read, see docs/performance.md),
            ``"gzip"`` or ``"zlib"``.

    Returns:
        A :class:`ShardInfo` with the count, SHA-256 and size of the final file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
        >>> write_shard(path, [b"", b"abc"], compression="gzip").count
        2
    """
    _check_compression(compression)
    path_s = os.fspath(path)
    directory = _io.dirname(path_s)
    if directory:
        _io.makedirs(directory)
    tmp = _io.temporary_name(path_s)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp, options=_TF_COMPRESSION[compression]) as writer:
            for record in examples:
                writer.write(record)
                count += 1
        sha256, size = _io.sha256_and_size(tmp)  # TFRecordWriter cannot hash as it writes
        _io.rename(tmp, path_s)
    except BaseException:
        with contextlib.suppress(OSError, tf.errors.OpError):
            if _io.exists(tmp):
                _io.remove(tmp)
        raise
    return ShardInfo(path=path_s, count=count, sha256=sha256, size=size)


# ---------------------------------------------------------------------------------------
# Compression detection
# ---------------------------------------------------------------------------------------
def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _read_head(path: str, n: int) -> bytes:
    try:
        with _io.open(path, "rb") as f:
            return bytes(f.read(n))
    except FileNotFoundError:
        raise FileNotFoundError(f"TFRecord shard not found: {path}") from None


def _compression_of_head(head: bytes) -> Compression | None:
    if not head:
        return "none"  # an empty file is a valid, empty, uncompressed TFRecord file
    if len(head) >= 12 and struct.unpack("<I", head[8:12])[0] == _masked_crc32c(head[:8]):
        return "none"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    is_deflate = len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7
    if is_deflate and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


def detect_compression(path: str | os.PathLike[str]) -> Compression:
    """Detect a TFRecord file's compression from its first 12 bytes.

    See the module docstring for the rules.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RecordError: The file is neither an uncompressed, a GZIP nor a ZLIB TFRecord file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
        >>> _ = write_shard(path, [b"abc"], compression="zlib")
        >>> detect_compression(path)
        'zlib'
    """
    path_s = os.fspath(path)
    head = _read_head(path_s, 12)
    found = _compression_of_head(head)
    if found is None:
        raise RecordError(
            f"{path_s}: not a TFRecord file (first bytes {head.hex(' ')} are neither a "
            "TFRecord length header, GZIP magic 1f 8b, nor a ZLIB header)"
        )
    return found


# ---------------------------------------------------------------------------------------
# Reading into numpy
# ---------------------------------------------------------------------------------------
def _feature_values(feature: tf.train.Feature) -> list[Any]:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    return list(getattr(feature, kind).value)


def decode_example(serialized: bytes, *, decode: bool = True) -> dict[str, Any]:
    """Decode one serialized example (rxdata or rxrx1-utils layout) into plain values.

    Args:
        serialized: A serialized ``tf.train.Example``.
        decode: Decode the image to an ``(H, W, C)`` uint8 array (default); with
            ``False`` ``image`` holds the stored bytes (one value for raw, one PNG per
            channel for png) for callers that only need the metadata.

    Returns:
        A dict with the metadata-table names ``id_code``, ``dataset``, ``experiment``,
        ``cell_type``, ``plate``, ``well``, ``site``, ``well_type``, ``sirna`` (the label
        as text), ``sirna_id`` (int), plus ``image``, ``height``, ``width``,
        ``channels`` and ``encoding``. Absent optional features are ``None``.

    Raises:
        RecordError: Not an Example, a required feature missing, or image bytes that do
            not match the stated shape or encoding.

    Example:
        >>> import numpy as np
        >>> data = encode_example({"experiment": "RPE-03", "plate": 4, "well": "D05",
        ...                        "site": 1}, image=np.ones((2, 2, 1), np.uint8))
        >>> record = decode_example(data)
        >>> record["id_code"], record["sirna"], record["image"].sum()
        ('RPE-03_4_D05', None, np.uint64(4))
    """
    try:
        example = tf.train.Example.FromString(serialized)
    except Exception as err:  # protobuf raises its own DecodeError type
        raise RecordError(f"not a serialized tf.train.Example ({err})") from None
    features = {k: _feature_values(v) for k, v in example.features.feature.items()}

    def scalar(key: str) -> Any:
        values = features.get(key, [])
        if len(values) > 1:
            raise RecordError(f"feature {key!r} has {len(values)} values, expected one")
        if not values:
            return None
        value = values[0]
        if key in _STRING_KEYS or key == ENCODING:
            if not isinstance(value, bytes):
                raise RecordError(f"feature {key!r} must be bytes, got {type(value).__name__}")
            return value.decode()
        if not isinstance(value, int):
            raise RecordError(f"feature {key!r} must be int64, got {type(value).__name__}")
        return value

    record: dict[str, Any] = {key: scalar(key) for key in (*_STRING_KEYS, *_INT_KEYS)}
    for key in _REQUIRED_SITE_KEYS:
        if record[key] is None:
            raise RecordError(f"required feature {key!r} is missing")
    if record[ID_CODE] is None:
        record[ID_CODE] = f"{record[EXPERIMENT]}_{record[PLATE]}_{record[WELL]}"
    label, class_id, int_label = record.pop(SIRNA_LABEL), record[SIRNA_ID], record[SIRNA]
    record[SIRNA_ID] = class_id if class_id is not None else int_label
    record[SIRNA] = label if label is not None else (None if int_label is None else str(int_label))

    encoding = scalar(ENCODING) or "raw"
    if encoding not in ENCODINGS:
        raise RecordError(f"feature 'encoding' is {encoding!r}; known: {', '.join(ENCODINGS)}")
    image_values = features.get(IMAGE, [])
    if not image_values or not all(isinstance(v, bytes) for v in image_values):
        raise RecordError("feature 'image' is missing or not bytes")
    height, width, channels = scalar(HEIGHT), scalar(WIDTH), scalar(CHANNELS_KEY)
    if encoding == "raw":
        if len(image_values) != 1:
            raise RecordError(f"raw 'image' has {len(image_values)} values, expected one")
        nbytes = len(image_values[0])
        if height is None or width is None:  # rxrx1-utils: square sites, 6 channels
            counts = [channels] if channels is not None else _CHANNEL_GUESSES
            fits = [(_square_side(nbytes, c), c) for c in counts if _square_side(nbytes, c)]
            shape = fits[0] if fits else None
            if shape is None:
                raise RecordError(
                    f"raw 'image' of {nbytes} bytes has no height/width and is not a square "
                    f"image of {' or '.join(str(c) for c in counts)} channels"
                )
            side, channels = shape
            height = height or side
            width = width or side
        if channels is None:
            channels = DEFAULT_CHANNEL_COUNT
        if height * width * channels != nbytes:
            raise RecordError(
                f"raw 'image' has {nbytes} bytes, expected {height}x{width}x{channels} = "
                f"{height * width * channels}"
            )
    else:
        if channels is None:
            channels = len(image_values)
        if len(image_values) != channels:
            raise RecordError(f"png 'image' has {len(image_values)} PNGs, channels={channels}")
        if height is None or width is None:
            height, width = _png_size(image_values[0])
    record.update(height=height, width=width, channels=channels, encoding=encoding)
    if not decode:
        record[IMAGE] = image_values[0] if encoding == "raw" else image_values
    elif encoding == "raw":
        pixels = np.frombuffer(image_values[0], dtype=np.uint8)
        record[IMAGE] = pixels.reshape(height, width, channels)
    else:
        record[IMAGE] = _decode_pngs(image_values, height, width)
    return record


# Channel counts tried, in order, for raw records without a shape (rxrx1-utils wrote all
# six channels by default; a channel subset is found when its square side is whole).
_CHANNEL_GUESSES = [DEFAULT_CHANNEL_COUNT, 3, 4, 5, 2, 1]


def _square_side(nbytes: int, channels: int) -> int:
    """The side of a square ``channels``-channel image of ``nbytes`` bytes, or 0."""
    if nbytes % channels:
        return 0
    side = math.isqrt(nbytes // channels)
    return side if side * side * channels == nbytes else 0


def _decode_pngs(pngs: Sequence[bytes], height: int, width: int) -> np.ndarray:
    from PIL import Image  # Pillow: a core dependency, imported here to keep import light

    planes = []
    for i, png in enumerate(pngs):
        try:
            with Image.open(io.BytesIO(png)) as img:
                if img.mode != "L":
                    raise RecordError(f"channel {i + 1} PNG is mode {img.mode!r}, expected 'L'")
                plane = np.asarray(img, dtype=np.uint8)
        except RecordError:
            raise
        except Exception as err:  # Pillow raises several types for corrupt data
            raise RecordError(f"channel {i + 1} PNG cannot be decoded ({err})") from None
        if plane.shape != (height, width):
            raise RecordError(
                f"channel {i + 1} PNG is {plane.shape[0]}x{plane.shape[1]}, "
                f"expected {height}x{width}"
            )
        planes.append(plane)
    return np.stack(planes, axis=-1)


@dataclass(frozen=True)
class RecordLayout:
    """What a shard's records hold: one image encoding and one image shape.

    Attributes:
        encoding: ``"raw"`` or ``"png"``.
        height: Image rows.
        width: Image columns.
        channels: Stored channels.
    """

    encoding: str
    height: int
    width: int
    channels: int

    def __str__(self) -> str:
        return f"{self.encoding} {self.height}x{self.width}x{self.channels}"


def _layout_of(record: Mapping[str, Any]) -> RecordLayout:
    """The layout of a :func:`decode_example` result."""
    return RecordLayout(
        encoding=str(record["encoding"]),
        height=int(record["height"]),
        width=int(record["width"]),
        channels=int(record["channels"]),
    )


class _Stream:
    """The (inflated) bytes of a shard, read on demand, up to the first damage.

    Python's ``zlib`` discards the output of a call that fails, so compressed input is
    fed in 64 KiB pieces and a piece that fails is replayed byte by byte from a copy of
    the inflater's state: every byte zlib produced before it detected the error is
    returned; after it, reads come back short and :attr:`error` says why.
    """

    def __init__(self, source: Any, compression: str) -> None:
        self._source = source
        self._inflater = (
            None
            if compression == "none"
            else zlib.decompressobj(31 if compression == "gzip" else 15)
        )
        self._buffer = bytearray()
        self._done = False
        self.error: zlib.error | None = None

    def _fill(self) -> None:
        piece = self._source.read(1 << 16)
        if not piece:
            self._done = True
            if self._inflater is not None and not self._inflater.eof:
                try:
                    self._buffer += self._inflater.flush()
                except zlib.error as err:  # pragma: no cover (flush rarely fails)
                    self.error = err
            return
        if self._inflater is None:
            self._buffer += piece
            return
        before = self._inflater.copy()
        try:
            self._buffer += self._inflater.decompress(piece)
        except zlib.error as err:
            self.error, self._done = err, True
            for i in range(len(piece)):
                try:
                    self._buffer += before.decompress(piece[i : i + 1])
                except zlib.error:
                    break
            return
        if self._inflater.eof:
            self._done = True

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream or at its damage."""
        while len(self._buffer) < n and not self._done:
            self._fill()
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


def read_layout(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    compression: Compression | Literal["auto"] = "auto",
) -> RecordLayout | None:
    """The layout of a shard's first good record, read cheaply in plain Python.

    Reads one record (more only when the first ones are bad and ``on_error`` skips
    them) without starting a TensorFlow iterator, which costs ~50x more per file. The
    length header's CRC is checked and the example parsed; the payload CRC is not
    (Python has no fast CRC-32C): callers that must trust a layout confirm it with
    :func:`read_tfrecord`.

    Args:
        path: A local path or ``gs://`` URL.
        on_error: ``"raise"`` a :class:`~rxdata.errors.RecordError` naming the file and
            record if a record before the first good one is bad; ``"skip"`` it, or
            ``"warn"`` and skip it.
        compression: ``"auto"`` (detected) or the file's compression.

    Returns:
        The :class:`RecordLayout`, or ``None`` for a shard without a good record.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "l.tfrecord")
        >>> site = {"experiment": "U2OS-01", "plate": 1, "well": "B02", "site": 1}
        >>> image = np.zeros((4, 6, 3), np.uint8)
        >>> _ = write_shard(path, [b"junk", encode_example(site, image=image)])
        >>> str(read_layout(path, on_error="skip"))
        'raw 4x6x3'
    """
    if on_error not in _ON_ERROR:
        raise OptionsError(f"on_error={on_error!r}; allowed: {', '.join(_ON_ERROR)}")
    path_s = os.fspath(path)
    found = detect_compression(path_s) if compression == "auto" else compression
    _check_compression(found)

    def bad(index: int, what: str) -> None:
        message = f"{path_s}: record {index}: {what}"
        if on_error == "raise":
            raise RecordError(message)
        if on_error == "warn":
            warnings.warn(message, stacklevel=3)

    with _io.open(path_s, "rb") as source:
        stream = _Stream(source, found)
        index = 0
        while True:
            damaged = f"corrupt {found} stream ({stream.error})"
            header = stream.read(12)
            if not header and stream.error is None:
                return None
            if len(header) < 12:
                bad(index, damaged if stream.error else "truncated record header")
                return None
            length = struct.unpack("<Q", header[:8])[0]
            if struct.unpack("<I", header[8:12])[0] != _masked_crc32c(header[:8]):
                bad(index, "corrupt record length (CRC mismatch)")
                return None
            data = stream.read(length + 4)
            if len(data) < length + 4:
                bad(
                    index,
                    f"corrupt {found} stream ({stream.error})"
                    if stream.error
                    else "truncated record",
                )
                return None
            try:
                record = decode_example(data[:length], decode=False)
            except RecordError as err:
                bad(index, str(err))
                index += 1
                continue
            return _layout_of(record)


class RecordReader(Iterator[dict[str, Any]]):
    """Iterator over one shard's examples; returned by :func:`read_tfrecord`.

    Attributes:
        path: The shard.
        compression: The detected (or given) compression.
        count: Examples yielded so far.
        bad: Bad records skipped so far (``on_error="skip"`` or ``"warn"``). A corrupt or
            truncated record ends the file (TFRecord framing cannot be resynchronised)
            and counts as one bad record; in a GZIP/ZLIB shard every record that ends
            before the first damaged byte of the inflated stream is still read
            (inflated with Python's ``zlib`` exactly up to the point where it reports
            the error; TensorFlow alone loses up to 256 KiB of records before it).
        errors: One message per bad record.
    """

    def __init__(
        self,
        path: str,
        *,
        on_error: OnError = "raise",
        compression: Compression | Literal["auto"] = "auto",
        decode: bool = True,
    ) -> None:
        if on_error not in _ON_ERROR:
            raise OptionsError(f"on_error={on_error!r}; allowed: {', '.join(_ON_ERROR)}")
        if compression != "auto":
            _check_compression(compression)
        self.path = path
        self.compression: Compression = (
            detect_compression(path) if compression == "auto" else compression
        )
        self.on_error = on_error
        self.decode = decode
        self.count = 0
        self.bad = 0
        self.errors: list[str] = []
        self._index = 0
        self._salvaging = False
        self._records: Iterator[Any] | None = iter(
            tf.data.TFRecordDataset(path, compression_type=_TF_COMPRESSION[self.compression])
        )

    def __iter__(self) -> RecordReader:
        return self

    def _fail(self, message: str) -> None:
        if self.on_error == "raise":
            raise RecordError(message)
        self.bad += 1
        self.errors.append(message)
        if self.on_error == "warn":
            warnings.warn(message, stacklevel=3)

    def __next__(self) -> dict[str, Any]:
        while self._records is not None:
            index = self._index
            try:
                serialized = next(self._records).numpy()
            except StopIteration:
                self._records = None
                break
            except tf.errors.DataLossError as err:
                self._records = None
                if self._salvaging:
                    break  # the damage already counted
                detail = str(err.message).split(" [Op:")[0].split("}} ")[-1]
                self._fail(
                    f"{self.path}: record {index}: corrupt or truncated shard "
                    f"({self.compression} compression; {detail})"
                )
                if self.compression != "none":
                    self._records = self._salvage(index)
                continue
            self._index += 1
            try:
                record = decode_example(serialized, decode=self.decode)
            except RecordError as err:
                self._fail(f"{self.path}: record {index}: {err}")
                continue
            self.count += 1
            return record
        raise StopIteration

    def _salvage(self, index: int) -> Iterator[Any] | None:
        """Records ``index``... of a damaged compressed shard that are still intact.

        TensorFlow inflates ahead in blocks of up to 256 KiB and drops a whole block when
        zlib reports an error in it, so a damaged GZIP/ZLIB stream fails before its last
        intact records (for a small shard: before the first). :func:`_inflate_to_damage`
        inflates exactly up to the damage; the result goes to an uncompressed temporary
        file that TensorFlow reads (checking every record's CRC) from record ``index`` on.
        """
        self._salvaging = True
        fd, tmp = tempfile.mkstemp(suffix=".tfrecord", prefix="rxdata-salvage-")
        try:
            with os.fdopen(fd, "wb") as out:
                _inflate_to_damage(self.path, self.compression, out)
            records = iter(tf.data.TFRecordDataset(tmp))
            salvaged = []
            try:
                for position, record in enumerate(records):
                    if position >= index:
                        salvaged.append(record)
                        break  # the file is open now; the rest streams from it
            except tf.errors.DataLossError:
                return None
            if not salvaged:
                return None
            return itertools.chain(salvaged, records)
        finally:
            with contextlib.suppress(OSError):
                _io.remove(tmp)  # TensorFlow keeps its open handle (POSIX)


def _inflate_to_damage(path: str, compression: str, out: Any) -> int:
    """Write the inflated bytes of a GZIP/ZLIB file to ``out`` up to its first damage.

    Returns the number of bytes written.
    """
    written = 0
    with _io.open(path, "rb") as source:
        stream = _Stream(source, compression)
        while piece := stream.read(1 << 20):
            out.write(piece)
            written += len(piece)
    return written


def read_tfrecord(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    compression: Compression | Literal["auto"] = "auto",
    decode: bool = True,
) -> RecordReader:
    """Iterate over a TFRecord shard's sites as dicts of plain Python/numpy values.

    Reads rxdata shards and shards written by rxrx1-utils unchanged: compression is
    detected from the file's first bytes (:func:`detect_compression`) and the image
    encoding from each example; missing ``id_code`` is derived from
    experiment/plate/well. Each dict is described in :func:`decode_example`.

    Args:
        path: A local path or ``gs://`` URL.
        on_error: ``"raise"`` (default) a :class:`~rxdata.errors.RecordError` naming the
            file and record index; ``"skip"`` bad records and count them
            (``reader.bad``, ``reader.errors``); or ``"warn"``: skip with a warning.
        compression: ``"auto"`` (default) or one of ``"none"``, ``"gzip"``, ``"zlib"``.
        decode: Decode images to arrays (default); ``False`` keeps the stored bytes.

    Returns:
        A :class:`RecordReader` (an iterator of dicts with counters).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RecordError: The file is not a TFRecord file; with ``on_error="raise"``, also a
            corrupt/truncated record or an example that does not match the schema.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "bad.tfrecord")
        >>> _ = write_shard(path, [b"not an example"])
        >>> reader = read_tfrecord(path, on_error="skip")
        >>> list(reader), reader.bad
        ([], 1)
    """
    return RecordReader(os.fspath(path), on_error=on_error, compression=compression, decode=decode)


# ---------------------------------------------------------------------------------------
# Graph-side parsing (used by rxdata.pipeline inside tf.data)
# ---------------------------------------------------------------------------------------
def feature_spec(encoding: str = "raw", channels: int = DEFAULT_CHANNEL_COUNT) -> dict[str, Any]:
    """The ``tf.io.parse_example`` spec for one encoding, with defaults for optional keys.

    Optional string features default to ``""`` and optional integers to ``-1``
    (``sirna_id``/``sirna`` of unlabeled sites); :func:`parse_example` resolves them.

    Args:
        encoding: ``"raw"`` (``image`` is one bytes value) or ``"png"`` (``channels``
            values).
        channels: Stored channel count (png only).

    Example:
        >>> sorted(feature_spec())[:3]
        ['cell_type', 'channels', 'dataset']
    """
    if encoding not in ENCODINGS:
        raise OptionsError(f"encoding={encoding!r}; allowed: {', '.join(ENCODINGS)}")
    fixed = tf.io.FixedLenFeature
    image_shape = [] if encoding == "raw" else [channels]
    spec: dict[str, Any] = {IMAGE: fixed(image_shape, tf.string)}
    for key in (EXPERIMENT, WELL):
        spec[key] = fixed([], tf.string)
    for key in (PLATE, SITE):
        spec[key] = fixed([], tf.int64)
    for key in (ID_CODE, DATASET, CELL_TYPE, WELL_TYPE, SIRNA_LABEL):
        spec[key] = fixed([], tf.string, default_value="")
    for key in (SIRNA, SIRNA_ID, HEIGHT, WIDTH, CHANNELS_KEY):
        spec[key] = fixed([], tf.int64, default_value=-1)
    return spec


def parse_example(
    serialized: tf.Tensor,
    *,
    encoding: str = "raw",
    channels: int = DEFAULT_CHANNEL_COUNT,
    keys: Iterable[str] | None = None,
) -> dict[str, tf.Tensor]:
    """Parse serialized examples (a scalar or a batch vector) in the graph.

    Resolves the rxrx1-utils fallbacks: an empty ``id_code`` becomes
    ``"{experiment}_{plate}_{well}"``; ``sirna_id`` falls back to ``sirna``; both are
    ``-1`` on unlabeled sites. The image stays encoded: pass the result to
    :func:`decode_image`.

    Args:
        serialized: ``tf.string`` scalar or vector.
        encoding: The records' image encoding (one per data set).
        channels: Stored channel count (needed for png).
        keys: Parse only these features (``image`` included only if listed); default all.

    Returns:
        A dict of tensors keyed by feature name.

    Example:
        >>> import numpy as np
        >>> data = encode_example({"experiment": "HUVEC-05", "plate": 3, "well": "E10",
        ...                        "site": 2}, image=np.zeros((2, 2, 6), np.uint8))
        >>> parsed = parse_example(tf.constant([data, data]))
        >>> parsed["id_code"].numpy().tolist(), parsed["sirna_id"].numpy().tolist()
        ([b'HUVEC-05_3_E10', b'HUVEC-05_3_E10'], [-1, -1])
    """
    spec = feature_spec(encoding, channels)
    if keys is not None:
        wanted = set(keys)
        if ID_CODE in wanted:
            wanted |= {EXPERIMENT, PLATE, WELL}
        if SIRNA_ID in wanted:
            wanted.add(SIRNA)
        unknown = wanted - set(spec)
        if unknown:
            raise OptionsError(f"unknown feature(s) {sorted(unknown)}; known: {sorted(spec)}")
        spec = {k: v for k, v in spec.items() if k in wanted}
    parsed = dict(tf.io.parse_example(serialized, spec))
    if ID_CODE in parsed:
        derived = tf.strings.join(
            [parsed[EXPERIMENT], tf.strings.as_string(parsed[PLATE]), parsed[WELL]], "_"
        )
        parsed[ID_CODE] = tf.where(parsed[ID_CODE] == "", derived, parsed[ID_CODE])
    if SIRNA_ID in parsed:
        parsed[SIRNA_ID] = tf.where(parsed[SIRNA_ID] < 0, parsed[SIRNA], parsed[SIRNA_ID])
    return parsed


def decode_image(
    image: tf.Tensor,
    *,
    encoding: str,
    height: int,
    width: int,
    channels: int,
    select: Sequence[int] | None = None,
) -> tf.Tensor:
    """Decode parsed ``image`` features to uint8 pixels in the graph.

    Args:
        image: The ``image`` tensor from :func:`parse_example`: raw, a scalar or a
            vector of byte strings; png, shape ``[channels]`` or ``[batch, channels]``.
        encoding: ``"raw"`` or ``"png"``.
        height: Image height (static: every record must agree).
        width: Image width.
        channels: Stored channel count.
        select: 0-based stored-channel indices to keep, in order (default all). For png
            only these channels are decoded.

    Returns:
        uint8 ``(H, W, C')`` or ``(batch, H, W, C')`` with static shape. A raw record of
        the wrong byte length or a PNG of the wrong size fails with
        ``tf.errors.InvalidArgumentError``.

    Example:
        >>> import numpy as np
        >>> pixels = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
        >>> out = decode_image(tf.constant(pixels.tobytes()), encoding="raw", height=2,
        ...                    width=2, channels=3, select=[2, 0])
        >>> out.numpy()[..., 0].tolist()
        [[2, 5], [8, 11]]
    """
    picked = list(range(channels)) if select is None else [int(i) for i in select]
    if not picked or any(not 0 <= i < channels for i in picked):
        raise OptionsError(f"select={select!r}; need indices in 0..{channels - 1}")
    if encoding == "raw":
        batched = image.shape.rank == 1
        flat = tf.io.decode_raw(image, tf.uint8)
        shape = [-1, height, width, channels] if batched else [height, width, channels]
        pixels = tf.reshape(flat, shape)
        if picked != list(range(channels)):
            pixels = tf.gather(pixels, picked, axis=-1)
        return pixels
    if encoding != "png":
        raise OptionsError(f"encoding={encoding!r}; allowed: {', '.join(ENCODINGS)}")

    def one(pngs: tf.Tensor) -> tf.Tensor:
        planes = [tf.io.decode_png(pngs[i], channels=1, dtype=tf.uint8) for i in picked]
        out = tf.concat(planes, axis=-1)
        return tf.ensure_shape(out, [height, width, len(picked)])

    if image.shape.rank == 2:
        return tf.map_fn(
            one, image, fn_output_signature=tf.TensorSpec([height, width, len(picked)], tf.uint8)
        )
    return one(image)


def __getattr__(name: str) -> Any:
    """Deprecated names (PEP 562): ``CHANNELS`` was the feature key now ``CHANNELS_KEY``."""
    return moved(
        __name__, {"CHANNELS": ("rxdata.tfrecord.CHANNELS_KEY", lambda: CHANNELS_KEY)}, name
    )
