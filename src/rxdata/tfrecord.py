"""The rxdata TFRecord format: schema, single-example encoding, atomic shards, TF parsing.

Contract:
    * One ``tf.train.Example`` per **site**. The feature layout is the table of key-name
      constants below; it is a superset of the layout `recursionpharma/rxrx1-utils` wrote,
      so records written by rxrx1-utils are read unchanged, and rxdata's ``raw`` records
      carry every feature rxrx1-utils' ``parse_example`` asked for.
    * :func:`encode_example` turns one row of the metadata table (see CONTRIBUTING.md)
      plus the site's pixels into serialized bytes; :func:`write_shard` writes serialized
      examples to one shard file under a temporary name and renames it into place only
      when complete, so no half-written shard is ever visible.
    * :func:`detect_compression` tells a shard's compression from its first bytes.
    * :func:`parse_example` and :func:`decode_image` are the graph-side readers used by
      :mod:`rxdata.pipeline` inside ``tf.data``. Reading shards in plain Python
      (``read_tfrecord``, ``decode_example``, ``read_layout``) lives in
      :mod:`rxdata.reader`.

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
    >>> info.count, tfrecord.detect_compression(path)
    (1, 'none')
    >>> import rxdata
    >>> record = next(rxdata.read_tfrecord(path))
    >>> record["id_code"], record["sirna_id"], record["image"].shape
    ('HEPG2-01_1_B03', 513, (4, 4, 6))
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import google_crc32c
import numpy as np

from rxdata import _io, naming
from rxdata._protobuf import serialize_example
from rxdata.errors import OptionsError, RecordError

if TYPE_CHECKING:
    import tensorflow as tf

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
    "INT_KEYS",
    "PLATE",
    "REQUIRED_SITE_KEYS",
    "SIRNA",
    "SIRNA_ID",
    "SIRNA_LABEL",
    "SITE",
    "STRING_KEYS",
    "TF_COMPRESSION",
    "WELL",
    "WELL_TYPE",
    "WIDTH",
    "ShardInfo",
    "check_compression",
    "decode_image",
    "detect_compression",
    "encode_example",
    "feature_spec",
    "masked_crc32c",
    "parse_example",
    "png_size",
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
CHANNELS_KEY = "channels"  # the feature key (the channel tuple is naming.CHANNELS)
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
#: TensorFlow's ``compression_type`` string for each of :data:`COMPRESSIONS`.
TF_COMPRESSION: dict[str, str] = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Metadata keys stored as text (one bytes value each); ``encoding`` is text too.
STRING_KEYS: tuple[str, ...] = (
    ID_CODE,
    DATASET,
    EXPERIMENT,
    CELL_TYPE,
    WELL,
    WELL_TYPE,
    SIRNA_LABEL,
)
#: Metadata keys stored as one int64 each (``height``/``width``/``channels`` too).
INT_KEYS: tuple[str, ...] = (PLATE, SITE, SIRNA, SIRNA_ID)
#: Keys every site has: what :func:`encode_example` needs and every record carries.
REQUIRED_SITE_KEYS: tuple[str, ...] = (EXPERIMENT, PLATE, WELL, SITE)


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


# A feature as (list field of tf.train.Feature, values), what serialize_example takes.
_Feature = tuple[str, list[Any]]


def _bytes_feature(values: Sequence[bytes | memoryview]) -> _Feature:
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
    parts = [str(site.get(k, "?")) for k in REQUIRED_SITE_KEYS]
    return repr("_".join(parts))


def png_size(png: bytes) -> tuple[int, int]:
    """Read ``(height, width)`` from a PNG's IHDR chunk, without decoding it.

    Raises:
        RecordError: ``png`` is not a PNG byte string.

    Example:
        >>> import io, numpy as np
        >>> from PIL import Image
        >>> buf = io.BytesIO()
        >>> Image.fromarray(np.zeros((3, 5), np.uint8)).save(buf, format="PNG")
        >>> png_size(buf.getvalue())
        (3, 5)
    """
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
    for key in REQUIRED_SITE_KEYS:
        if key not in site or _is_missing(site[key]):
            raise RecordError(
                f"site {_describe(site)}: required column {key!r} is missing; "
                f"need {', '.join(REQUIRED_SITE_KEYS)}"
            )
    if image is not None:
        feature = _raw_features(site, image, height, width)
    else:
        assert pngs is not None  # for the type checker; checked above
        feature = _png_features(site, list(pngs), height, width)
    feature.update(_site_features(site))
    # Serialized by hand, as protobuf's deterministic serialization does (protobuf's
    # default map order varies between processes): a site's bytes are a pure function of
    # its content, so a resumed, parallel or Beam conversion writes byte-identical shards
    # to an uninterrupted one. No TensorFlow, and each image byte is copied once.
    return serialize_example(feature)


def _raw_features(
    site: Mapping[str, Any], image: np.ndarray, height: int | None, width: int | None
) -> dict[str, _Feature]:
    """The image features of encoding ``raw``: the pixels' bytes and their shape."""
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
    return {
        IMAGE: _bytes_feature([np.ascontiguousarray(image).reshape(-1).data]),
        ENCODING: _bytes_feature([b"raw"]),
        HEIGHT: _int_feature(h),
        WIDTH: _int_feature(w),
        CHANNELS_KEY: _int_feature(c),
    }


def _png_features(
    site: Mapping[str, Any], pngs: list[bytes], height: int | None, width: int | None
) -> dict[str, _Feature]:
    """The image features of encoding ``png``: one PNG per channel, sizes from headers."""
    if not pngs:
        raise RecordError(f"site {_describe(site)}: pngs is empty; need one PNG per channel")
    sizes = []
    for i, png in enumerate(pngs):
        try:
            sizes.append(png_size(png))
        except RecordError as err:
            raise RecordError(f"site {_describe(site)}: channel {i + 1}: {err}") from None
    if len(set(sizes)) != 1:
        raise RecordError(f"site {_describe(site)}: channel PNG sizes differ: {sizes}")
    h, w = sizes[0]
    if (height is not None and height != h) or (width is not None and width != w):
        raise RecordError(
            f"site {_describe(site)}: PNGs are {h}x{w} but height={height}, width={width}"
        )
    return {
        IMAGE: _bytes_feature(pngs),
        ENCODING: _bytes_feature([b"png"]),
        HEIGHT: _int_feature(h),
        WIDTH: _int_feature(w),
        CHANNELS_KEY: _int_feature(len(pngs)),
    }


def _site_features(site: Mapping[str, Any]) -> dict[str, _Feature]:
    """The site's metadata features; ``id_code``, ``cell_type`` and labels derived if absent."""
    experiment = str(site[EXPERIMENT])
    plate = _as_int(site, PLATE)
    well = str(site[WELL])
    feature: dict[str, _Feature] = {
        EXPERIMENT: _bytes_feature([experiment.encode()]),
        PLATE: _int_feature(plate),
        WELL: _bytes_feature([well.encode()]),
        SITE: _int_feature(_as_int(site, SITE)),
    }
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
    return feature


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardInfo:
    """What :func:`write_shard` wrote.

    Attributes:
        path: The final shard path.
        count: Number of examples in the shard.
        digest: The checksum of the final file's bytes (after compression),
            ``ALGORITHM:HEX`` (:data:`rxdata._io.DIGEST_ALGORITHM`, XXH3-128).
        size: File size in bytes.
    """

    path: str
    count: int
    digest: str
    size: int


def check_compression(compression: str) -> str:
    """Return ``compression`` if it is one of :data:`COMPRESSIONS`.

    Raises:
        OptionsError: Any other value; the message lists the allowed ones.

    Example:
        >>> check_compression("gzip")
        'gzip'
    """
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
        A :class:`ShardInfo` with the count, checksum and size of the final file.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
        >>> write_shard(path, [b"", b"abc"], compression="gzip").count
        2
    """
    check_compression(compression)
    path_s = os.fspath(path)
    directory = _io.dirname(path_s)
    if directory:
        _io.makedirs(directory)
    if compression == "none" and _FAST_CRC32C and not _io.is_remote(path_s):
        return _write_framed(path_s, examples)
    import tensorflow as tf  # deferred: the schema and reading need no TensorFlow

    tmp = _io.temporary_name(path_s)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp, options=TF_COMPRESSION[compression]) as writer:
            for record in examples:
                writer.write(record)
                count += 1
        digest, size = _io.digest_and_size(tmp)  # TFRecordWriter cannot hash as it writes
        _io.rename(tmp, path_s)
    except BaseException:
        with contextlib.suppress(OSError, tf.errors.OpError):
            if _io.exists(tmp):
                _io.remove(tmp)
        raise
    return ShardInfo(path=path_s, count=count, digest=digest, size=size)


# google-crc32c falls back to pure Python where its C extension cannot load: seconds per
# shard. Then TensorFlow's writer (and a second read for the hash) is the faster way.
_FAST_CRC32C = google_crc32c.implementation == "c"


def _write_framed(path: str, examples: Iterable[bytes]) -> ShardInfo:
    """:func:`write_shard` for an uncompressed local shard, hashed as it is written.

    Writes TensorFlow's framing itself (per record: the length as a little-endian uint64,
    the masked CRC-32C of those 8 bytes, the record, the masked CRC-32C of the record;
    byte-identical to ``TFRecordWriter``'s output, tested) through
    :func:`rxdata._io.atomic_writer`, which hashes the bytes on their way to the file:
    the checksum needs no second read. 0.63 against 0.84 ms of CPU per real PNG site (with
    SHA-256, the checksum then).
    """
    count = 0
    with _io.atomic_writer(path) as writer:
        for record in examples:
            length = struct.pack("<Q", len(record))
            writer.write(length + struct.pack("<I", _mask(google_crc32c.value(length))))
            writer.write(record)
            writer.write(struct.pack("<I", _mask(google_crc32c.value(record))))
            count += 1
    return ShardInfo(path=path, count=count, digest=writer.digest(), size=writer.size)


def _mask(crc: int) -> int:
    """TFRecord's masking of a CRC-32C: rotated right by 15 bits, plus a constant."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


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


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord framing stores after each length and payload.

    Pure Python (slow): meant for the 8-byte length headers, not for payloads.

    Example:
        >>> import os, struct, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
        >>> _ = write_shard(path, [b"abc"])
        >>> with open(path, "rb") as f:
        ...     head = f.read(12)  # the 8-byte length, then its masked CRC
        >>> struct.unpack("<I", head[8:12])[0] == masked_crc32c(head[:8])
        True
    """
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return _mask(crc)


def _read_head(path: str, n: int) -> bytes:
    try:
        with _io.open(path, "rb") as f:
            return bytes(f.read(n))
    except FileNotFoundError:
        raise FileNotFoundError(f"TFRecord shard not found: {path}") from None
    except IsADirectoryError:
        raise IsADirectoryError(
            f"{path} is a folder, not a TFRecord shard: pass one of its .tfrecord files"
        ) from None


def _compression_of_head(head: bytes) -> Compression | None:
    if not head:
        return "none"  # an empty file is a valid, empty, uncompressed TFRecord file
    if len(head) >= 12 and struct.unpack("<I", head[8:12])[0] == masked_crc32c(head[:8]):
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
    import tensorflow as tf  # deferred: the schema and reading need no TensorFlow

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
        >>> import numpy as np, tensorflow as tf
        >>> data = encode_example({"experiment": "HUVEC-05", "plate": 3, "well": "E10",
        ...                        "site": 2}, image=np.zeros((2, 2, 6), np.uint8))
        >>> parsed = parse_example(tf.constant([data, data]))
        >>> parsed["id_code"].numpy().tolist(), parsed["sirna_id"].numpy().tolist()
        ([b'HUVEC-05_3_E10', b'HUVEC-05_3_E10'], [-1, -1])
    """
    import tensorflow as tf  # deferred: the schema and reading need no TensorFlow

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
        >>> import numpy as np, tensorflow as tf
        >>> pixels = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
        >>> out = decode_image(tf.constant(pixels.tobytes()), encoding="raw", height=2,
        ...                    width=2, channels=3, select=[2, 0])
        >>> out.numpy()[..., 0].tolist()
        [[2, 5], [8, 11]]
    """
    import tensorflow as tf  # deferred: the schema and reading need no TensorFlow

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
