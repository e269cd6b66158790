"""Reading TFRecord shards in plain Python (no ``tf.data``): dicts of numpy values.

Contract:
    * :func:`read_tfrecord` yields one dict per site (the metadata table's column names,
      the image as ``(H, W, C)`` uint8) and needs no flags: it detects the record
      compression from the file's first bytes (:func:`rxdata.tfrecord.detect_compression`)
      and the image encoding from each example. It reads rxdata shards and shards written
      by rxrx1-utils unchanged (the schema is :mod:`rxdata.tfrecord`'s).
    * Bad records raise a :class:`~rxdata.errors.RecordError` naming the file and record,
      or are skipped and counted (``on_error``). A damaged GZIP/ZLIB shard gives back
      every record that ends before its first damaged byte (``_Stream`` inflates with
      Python's ``zlib`` exactly up to the damage, where TensorFlow alone loses up to
      256 KiB of records).
    * :func:`decode_example` decodes one serialized example; :func:`read_layout` reads
      just enough of a shard to return its first good record's :class:`RecordLayout`,
      without starting a TensorFlow iterator.

Example:
    >>> import numpy as np, tempfile, os
    >>> from rxdata import reader, tfrecord
    >>> site = {"experiment": "HEPG2-01", "plate": 1, "well": "B03", "site": 2,
    ...         "well_type": "treatment", "sirna": "513", "sirna_id": 513}
    >>> image = np.arange(4 * 4 * 6, dtype=np.uint8).reshape(4, 4, 6)
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.tfrecord")
    >>> _ = tfrecord.write_shard(path, [tfrecord.encode_example(site, image=image)],
    ...                          compression="gzip")
    >>> record = next(reader.read_tfrecord(path))
    >>> record["id_code"], record["sirna_id"], record["image"].shape
    ('HEPG2-01_1_B03', 513, (4, 4, 6))
    >>> str(reader.read_layout(path))
    'raw 4x4x6'
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rxdata import _io
from rxdata._protobuf import example_features
from rxdata.errors import ImageDecodeError, OptionsError, RecordError
from rxdata.tfrecord import (
    CHANNELS_KEY,
    DEFAULT_CHANNEL_COUNT,
    ENCODING,
    ENCODINGS,
    EXPERIMENT,
    HEIGHT,
    ID_CODE,
    IMAGE,
    INT_KEYS,
    PLATE,
    REQUIRED_SITE_KEYS,
    SIRNA,
    SIRNA_ID,
    SIRNA_LABEL,
    STRING_KEYS,
    TF_COMPRESSION,
    WELL,
    WIDTH,
    Compression,
    check_compression,
    detect_compression,
    masked_crc32c,
    png_size,
)

__all__ = [
    "OnError",
    "RecordLayout",
    "RecordReader",
    "common_layout",
    "decode_example",
    "list_shards",
    "read_layout",
    "read_records",
    "read_tfrecord",
]

#: What to do with a bad record: raise, skip and count it, or skip it with a warning.
OnError = Literal["raise", "skip", "warn"]
_ON_ERROR = ("raise", "skip", "warn")


def decode_example(serialized: bytes, *, decode: bool = True) -> dict[str, Any]:
    """Decode one serialized example (rxdata or rxrx1-utils layout) into plain values.

    Pure Python and numpy (Pillow for png records): no TensorFlow is imported.

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
        >>> from rxdata.tfrecord import encode_example
        >>> data = encode_example({"experiment": "RPE-03", "plate": 4, "well": "D05",
        ...                        "site": 1}, image=np.ones((2, 2, 1), np.uint8))
        >>> record = decode_example(data)
        >>> record["id_code"], record["sirna"], record["image"].sum()
        ('RPE-03_4_D05', None, np.uint64(4))
    """
    features = example_features(serialized)
    record = _metadata(features)
    encoding = _scalar(features, ENCODING) or "raw"
    if encoding not in ENCODINGS:
        raise RecordError(f"feature 'encoding' is {encoding!r}; known: {', '.join(ENCODINGS)}")
    image_values = features.get(IMAGE, [])
    if not image_values or not all(isinstance(v, bytes) for v in image_values):
        raise RecordError("feature 'image' is missing or not bytes")
    height, width, channels = _image_shape(features, encoding, image_values)
    record.update(height=height, width=width, channels=channels, encoding=encoding)
    if not decode:
        record[IMAGE] = image_values[0] if encoding == "raw" else image_values
    elif encoding == "raw":
        pixels = np.frombuffer(image_values[0], dtype=np.uint8)
        record[IMAGE] = pixels.reshape(height, width, channels)
    else:
        record[IMAGE] = _decode_pngs(image_values, height, width)
    return record


def _scalar(features: Mapping[str, list[Any]], key: str) -> Any:
    """The one value of feature ``key`` (text for string keys), or ``None`` if absent."""
    values = features.get(key, [])
    if len(values) > 1:
        raise RecordError(f"feature {key!r} has {len(values)} values, expected one")
    if not values:
        return None
    value = values[0]
    if key in STRING_KEYS or key == ENCODING:
        if not isinstance(value, bytes):
            raise RecordError(f"feature {key!r} must be bytes, got {type(value).__name__}")
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise RecordError(f"feature {key!r} is not UTF-8 text: {value[:40]!r}") from None
    if not isinstance(value, int):
        raise RecordError(f"feature {key!r} must be int64, got {type(value).__name__}")
    return value


def _metadata(features: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The metadata columns of a record, with the rxrx1-utils fallbacks resolved."""
    record: dict[str, Any] = {key: _scalar(features, key) for key in (*STRING_KEYS, *INT_KEYS)}
    for key in REQUIRED_SITE_KEYS:
        if record[key] is None:
            raise RecordError(f"required feature {key!r} is missing")
    if record[ID_CODE] is None:
        record[ID_CODE] = f"{record[EXPERIMENT]}_{record[PLATE]}_{record[WELL]}"
    label, class_id, int_label = record.pop(SIRNA_LABEL), record[SIRNA_ID], record[SIRNA]
    record[SIRNA_ID] = class_id if class_id is not None else int_label
    record[SIRNA] = label if label is not None else (None if int_label is None else str(int_label))
    return record


def _image_shape(
    features: Mapping[str, list[Any]], encoding: str, image_values: Sequence[bytes]
) -> tuple[int, int, int]:
    """``(height, width, channels)`` of a record's image, checked against its bytes."""
    height, width = _scalar(features, HEIGHT), _scalar(features, WIDTH)
    channels = _scalar(features, CHANNELS_KEY)
    if encoding == "png":
        if channels is None:
            channels = len(image_values)
        if len(image_values) != channels:
            raise RecordError(f"png 'image' has {len(image_values)} PNGs, channels={channels}")
        if height is None or width is None:
            height, width = png_size(image_values[0])
        return height, width, channels
    if len(image_values) != 1:
        raise RecordError(f"raw 'image' has {len(image_values)} values, expected one")
    nbytes = len(image_values[0])
    if height is None or width is None:  # rxrx1-utils: square sites, 6 channels
        counts = [channels] if channels is not None else _CHANNEL_GUESSES
        fits = [(_square_side(nbytes, c), c) for c in counts if _square_side(nbytes, c)]
        if not fits:
            raise RecordError(
                f"raw 'image' of {nbytes} bytes has no height/width and is not a square "
                f"image of {' or '.join(str(c) for c in counts)} channels"
            )
        side, channels = fits[0]
        height = height or side
        width = width or side
    if channels is None:
        channels = DEFAULT_CHANNEL_COUNT
    if height * width * channels != nbytes:
        raise RecordError(
            f"raw 'image' has {nbytes} bytes, expected {height}x{width}x{channels} = "
            f"{height * width * channels}"
        )
    return height, width, channels


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
    # rxdata.images.read_png: the converter's own check (inspect_png) before decoding, so a
    # PNG that Pillow would zero-fill and TensorFlow refuse is refused here too.
    from rxdata.images import read_png

    planes = []
    for i, png in enumerate(pngs):
        try:
            plane = read_png(png, path=f"channel {i + 1} PNG")
        except ImageDecodeError as err:
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
        >>> from rxdata.tfrecord import encode_example, write_shard
        >>> path = os.path.join(tempfile.mkdtemp(), "l.tfrecord")
        >>> site = {"experiment": "U2OS-01", "plate": 1, "well": "B02", "site": 1}
        >>> image = np.zeros((4, 6, 3), np.uint8)
        >>> _ = write_shard(path, [b"junk", encode_example(site, image=image)])
        >>> str(read_layout(path, on_error="skip"))
        'raw 4x6x3'
    """
    path_s, found, bad = _opened(path, on_error, compression, stacklevel=3)
    for index, data in _framed(path_s, found, bad):
        try:
            record = decode_example(data, decode=False)
        except RecordError as err:
            bad(index, str(err))
            continue
        return _layout_of(record)
    return None


def _opened(
    path: str | os.PathLike[str], on_error: str, compression: str, *, stacklevel: int
) -> tuple[str, str, Callable[[int, str], None]]:
    """A shard's path, its checked compression and the ``on_error`` policy for a record.

    ``stacklevel`` counts from ``bad`` (1) to the frame a warning should name.
    """
    if on_error not in _ON_ERROR:
        raise OptionsError(f"on_error={on_error!r}; allowed: {', '.join(_ON_ERROR)}")
    path_s = os.fspath(path)
    found = detect_compression(path_s) if compression == "auto" else compression
    check_compression(found)

    def bad(index: int, what: str) -> None:
        message = f"{path_s}: record {index}: {what}"
        if on_error == "raise":
            raise RecordError(message)
        if on_error == "warn":
            warnings.warn(message, stacklevel=stacklevel)

    return path_s, found, bad


def _framed(
    path: str,
    compression: str,
    bad: Callable[[int, str], None],
    digest: str | None = None,
) -> Iterator[tuple[int, bytes]]:
    """The framing loop of :func:`read_records`, reporting bad records to ``bad``."""
    algorithm = _io.digest_algorithm(digest) if digest is not None else None
    with _io.open(path, "rb") as raw:
        source = _io.HashingReader(raw, algorithm) if algorithm is not None else raw
        stream = _Stream(source, compression)
        index = 0
        while True:
            header = stream.read(12)
            if not header and stream.error is None:
                break
            if len(header) < 12:
                damaged = f"corrupt {compression} stream ({stream.error})"
                bad(index, damaged if stream.error else "truncated record header")
                return
            length = struct.unpack("<Q", header[:8])[0]
            if struct.unpack("<I", header[8:12])[0] != masked_crc32c(header[:8]):
                bad(index, "corrupt record length (CRC mismatch)")
                return
            data = stream.read(length + 4)
            if len(data) < length + 4:
                damaged = f"corrupt {compression} stream ({stream.error})"
                bad(index, damaged if stream.error else "truncated record")
                return
            yield index, data[:length]
            index += 1
        if isinstance(source, _io.HashingReader) and (found := source.drain()) != digest:
            bad(
                index,
                f"the shard's {algorithm} checksum is {found}, its manifest says {digest}: "
                "the file changed after the conversion (`rxdata verify` lists the damaged "
                "shards; convert them again)",
            )


def read_records(
    path: str | os.PathLike[str],
    *,
    on_error: OnError = "raise",
    compression: Compression | Literal["auto"] = "auto",
    digest: str | None = None,
) -> Iterator[tuple[int, bytes]]:
    """``(index, serialized example)`` of each record of a shard, in plain Python.

    TFRecord framing read without TensorFlow: each length header's masked CRC-32C is
    checked, the payload's is not (Python has no fast CRC-32C). Pass the shard's
    ``digest`` (a conversion's manifest has it) to hash the file as it is read: a
    mismatch is reported after the last record, so every byte is checked. A record that
    cannot be framed ends the file (the framing cannot be resynchronised). GZIP/ZLIB
    shards are inflated on the fly, up to their first damaged byte.

    Args:
        path: A local path or ``gs://`` URL.
        on_error: ``"raise"`` (default) a :class:`~rxdata.errors.RecordError` naming the
            file and record; ``"skip"`` (stop at bad framing, ignore a hash mismatch) or
            ``"warn"`` (the same, with a warning).
        compression: ``"auto"`` (detected) or the file's compression.
        digest: The checksum the whole file must have, ``ALGORITHM:HEX``
            (``"xxh3_128:..."``, or ``"sha256:..."`` from an earlier version's manifest:
            :func:`rxdata._io.recorded_digest` reads it from a manifest entry), or ``None``.

    Example:
        >>> import tempfile, os
        >>> from rxdata.tfrecord import write_shard
        >>> path = os.path.join(tempfile.mkdtemp(), "r.tfrecord")
        >>> _ = write_shard(path, [b"a", b"bc"], compression="gzip")
        >>> list(read_records(path))
        [(0, b'a'), (1, b'bc')]
    """
    path_s, found, bad = _opened(path, on_error, compression, stacklevel=4)
    yield from _framed(path_s, found, bad, digest)


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
            check_compression(compression)
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
        import tensorflow as tf  # deferred: only this CRC-checking reader needs it

        self._data_loss = tf.errors.DataLossError
        self._records: Iterator[Any] | None = iter(
            tf.data.TFRecordDataset(path, compression_type=TF_COMPRESSION[self.compression])
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
            except self._data_loss as err:
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
        import tensorflow as tf

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
    detected from the file's first bytes (:func:`rxdata.tfrecord.detect_compression`) and the image
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
        >>> from rxdata.tfrecord import write_shard
        >>> path = os.path.join(tempfile.mkdtemp(), "bad.tfrecord")
        >>> _ = write_shard(path, [b"not an example"])
        >>> reader = read_tfrecord(path, on_error="skip")
        >>> list(reader), reader.bad
        ([], 1)
    """
    return RecordReader(os.fspath(path), on_error=on_error, compression=compression, decode=decode)


# --------------------------------------------------------------------------- shard sets
def list_shards(
    file_pattern: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[str]:
    """The shard files of a pattern (or list of patterns), sorted and without duplicates.

    An existing file is read as itself, even when its name holds glob characters; a
    glob never matches the hidden temporary files (``.name.tmp-...``) of a shard being
    written, nor files it would reach through a symbolic link to a folder (those are left
    out with a warning naming them; name the link itself in the pattern to read them).

    Raises:
        FileNotFoundError: a pattern matches nothing, or only folders (the message names
            it, and a shard inside the folder).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "plate[1].tfrecord").write_bytes(b"")
        >>> [pathlib.Path(f).name for f in list_shards(d / "plate[1].tfrecord")]
        ['plate[1].tfrecord']
    """
    patterns = (
        [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern)
    )
    files: list[str] = []
    for pattern in patterns:
        pattern_s = os.fspath(pattern)
        if _io.exists(pattern_s) and not _io.isdir(pattern_s):
            # an existing file is read as itself, even when its name holds glob
            # characters ("plate[1].tfrecord" would otherwise match "plate1.tfrecord")
            files.append(pattern_s)
            continue
        matched = _io.glob(pattern_s)
        # a glob never matches a hidden temp shard (".name.tmp-...") of write_shard
        matched = [f for f in matched if not os.path.basename(f).startswith(".")]
        matched = _unlinked(pattern_s, matched)
        # (a ".tfrecord" name is taken for a file: no metadata request per shard on gs://)
        folders = [f for f in matched if not f.endswith(".tfrecord") and _io.isdir(f)]
        if folders and len(folders) == len(matched):
            # a conversion's output folder: reading it would fail with "Is a directory"
            inside = next(_io.walk_files(folders[0], ".tfrecord"), None)
            example = f", e.g. {inside!r}" if inside else ""
            raise FileNotFoundError(
                f"{pattern_s!r} is a folder (or matches only folders: {folders[0]!r}), not "
                f"TFRecord files: pass a pattern of its shards{example}"
            )
        matched = [f for f in matched if f not in folders]
        if not matched:
            raise FileNotFoundError(f"no TFRecord files match {pattern_s!r}")
        files.extend(matched)
    return sorted(set(files))


def _unlinked(pattern: str, matched: list[str]) -> list[str]:
    """``matched`` without the files a glob reached through a folder link (reported)."""
    behind = {f: _io.linked_folder(pattern, f) for f in matched}
    behind = {f: link for f, link in behind.items() if link is not None}
    if behind:
        first, link = next(iter(behind.items()))
        warnings.warn(
            f"{pattern!r}: left out {len(behind)} file(s) reached through a symbolic link to "
            f"a folder, e.g. {first!r} (through {link!r}): a glob does not follow such links "
            "(as git does not); name the link in the pattern to read what it holds",
            stacklevel=3,
        )
    return [f for f in matched if f not in behind]


def _confirmed_layout(path: str, on_error: str) -> RecordLayout | None:
    """The layout of a shard's first good record, every record CRC-checked by TensorFlow."""
    reader = read_tfrecord(path, decode=False, on_error=on_error)  # type: ignore[arg-type]
    record = next(reader, None)
    if record is None:
        return None
    return RecordLayout(
        encoding=record["encoding"],
        height=int(record["height"]),
        width=int(record["width"]),
        channels=int(record["channels"]),
    )


def common_layout(
    files: Sequence[str], on_error: str = "raise", remote: bool = False, compression: str = "auto"
) -> RecordLayout:
    """The one layout of every shard, from the first good record of each.

    Raises:
        RecordError: the shards hold more than one layout (naming one file of each), or
            only empty/bad shards.

    One record per shard, read in plain Python (:func:`rxdata.reader.read_layout`) by
    parallel threads (object-store latency dominates remotely). Shards of different
    layouts cannot share one pipeline (static shapes, one decoder): that is a wrong glob,
    not a bad record, so it raises whatever ``on_error``. Before raising, the first shard
    of each layout is re-read with TensorFlow, which checks the payload CRC, so that a
    corrupt first record is handled by ``on_error`` instead of reported as a layout.
    """

    def peek(path: str) -> RecordLayout | None:
        return read_layout(path, on_error=on_error, compression=compression)  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=min(len(files), 32 if remote else 8)) as pool:
        layouts = list(pool.map(peek, files))
    groups = _layout_groups(files, layouts)
    if len(groups) > 1:
        for path in groups.values():
            layouts[files.index(path)] = _confirmed_layout(path, on_error)
        groups = _layout_groups(files, layouts)
    if not groups:
        what = "empty" if on_error == "raise" else "empty or hold only bad records"
        raise RecordError(f"all {len(files)} TFRecord files are {what} (first: {files[0]})")
    if len(groups) > 1:
        examples = "; ".join(f"{layout}: {path}" for layout, path in groups.items())
        raise RecordError(
            f"the files hold {len(groups)} different record layouts (encoding "
            f"HxWxC), which one dataset cannot mix: {examples}. Narrow the file pattern "
            "to one conversion (or convert the shards to one layout)."
        )
    return next(iter(groups))


def _layout_groups(
    files: Sequence[str], layouts: Sequence[RecordLayout | None]
) -> dict[RecordLayout, str]:
    """Each layout found, with the first file that holds it."""
    first_of: dict[RecordLayout, str] = {}
    for path, layout in zip(files, layouts, strict=True):
        if layout is not None:
            first_of.setdefault(layout, path)
    return first_of
