"""Reading RxRx1 channel PNGs and assembling them into sites.

Contract:

* A channel image is an 8-bit grayscale PNG. :func:`inspect_png` validates one from its
  bytes *without decoding pixels* (signature, every chunk's CRC, ``IHDR`` first, ``IEND``
  last, 8-bit grayscale, optional expected size); :func:`read_png` decodes one to a
  ``(H, W) uint8`` array.
* A site is the stack of its channel images: :func:`load_site` returns ``(H, W, C) uint8``
  with the channels in the order asked; the size is read from the files (every channel
  must agree) and never assumed to be 512.
* Errors name the file: a missing channel raises :class:`~rxdata.errors.ImageNotFoundError`,
  a corrupt, non-8-bit-grayscale or wrongly sized one :class:`~rxdata.errors.ImageDecodeError`.
* Paths may be local or remote (``gs://...``, through ``tf.io.gfile``, imported only then).

Decoding inflates each image once: the check's inflate (ISA-L) keeps the rows, and
Pillow unfilters them (``decoder="rxdata"``, faster than any decoder measured on the real
RxRx1 PNGs, see ``docs/performance.md``); ``"pillow"`` and ``"opencv"`` (when installed)
decode the file again after the check. All give identical arrays.

Data root: ``base_path`` defaults to the environment variable ``RXDATA_ROOT``, else the
current directory. Which layout it holds (Kaggle ``{root}/{dataset}/{experiment}/...`` or
the full release ``{root}/images/{experiment}/...``, also when ``base_path`` is that
``images/`` folder itself) and how an experiment is spelled on disk (``HUVEC-1`` or
``HUVEC-01``) are decided by :func:`rxdata.roots.find_root`, the one rule.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
from isal import isal_zlib

from rxdata import _io
from rxdata.color import DEFAULT_CHANNELS, RGB_MAP, RgbMap, convert_tensor_to_rgb
from rxdata.errors import ImageDecodeError, ImageNotFoundError, OptionsError
from rxdata.naming import CHANNELS, Layout, image_path
from rxdata.roots import find_root

__all__ = [
    "ROOT_ENV",
    "PngInfo",
    "channel_path",
    "default_root",
    "inspect_png",
    "load_site",
    "load_site_as_rgb",
    "locate",
    "read_png",
    "resolve_layout",
]

ROOT_ENV = "RXDATA_ROOT"
"""Environment variable read for the default data root (else the current directory)."""

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


@dataclass(frozen=True)
class PngInfo:
    """What a PNG header says about its image.

    Attributes:
        width: Image width in pixels.
        height: Image height in pixels.
        bit_depth: Bits per sample (RxRx1 images: 8).
        color_type: PNG colour type (0 = grayscale, the only one RxRx1 uses).
        interlaced: Adam7 interlacing (RxRx1 images are not interlaced).
    """

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """The ``(height, width)`` of the decoded array."""
        return (self.height, self.width)


def _fail(source: str, what: str) -> ImageDecodeError:
    return ImageDecodeError(f"{source}: {what}")


def _parse_ihdr(data: bytes, source: str) -> PngInfo:
    """Check the signature and the ``IHDR`` chunk (the first 33 bytes) of a PNG."""
    if len(data) < 8 or data[:8] != _SIGNATURE:
        raise _fail(
            source, f"not a PNG file (first bytes {bytes(data[:8])!r}, expected the PNG signature)"
        )
    if len(data) < 33:
        raise _fail(source, f"truncated PNG: {len(data)} bytes, a PNG needs at least 33")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise _fail(
            source, f"first chunk is {ctype!r} of length {length}, expected IHDR of length 13"
        )
    width, height, bit_depth, color_type, _comp, _filt, _interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    if width == 0 or height == 0:
        raise _fail(source, f"image size {width}x{height} is empty")
    if bit_depth not in _BIT_DEPTHS.get(color_type, ()):
        raise _fail(
            source,
            f"IHDR has bit depth {bit_depth} with colour type {color_type}, which PNG does "
            "not allow",
        )
    if (_comp, _filt) != (0, 0) or _interlace not in (0, 1):
        raise _fail(
            source,
            f"IHDR has compression {_comp}, filter {_filt}, interlace {_interlace}; "
            "PNG defines only compression 0, filter 0 and interlace 0 or 1",
        )
    return PngInfo(
        width=width,
        height=height,
        bit_depth=bit_depth,
        color_type=color_type,
        interlaced=bool(_interlace),
    )


# Allowed bit depths per colour type (PNG spec, table 11.1); samples per pixel.
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes: (first row, first column, row step, column step).
_ADAM7: tuple[tuple[int, int, int, int], ...] = (
    (0, 0, 8, 8),
    (0, 4, 8, 8),
    (4, 0, 8, 4),
    (0, 2, 4, 4),
    (2, 0, 4, 2),
    (0, 1, 2, 2),
    (1, 0, 2, 1),
)


def _row_bytes(info: PngInfo, width: int) -> int:
    """Bytes of one scanline of ``width`` pixels, its filter-type byte included."""
    return 1 + (width * _SAMPLES[info.color_type] * info.bit_depth + 7) // 8


def _image_data_size(info: PngInfo) -> int:
    """Bytes the decompressed ``IDAT`` stream must hold: each row's filter byte and samples."""

    def rows(height: int, width: int) -> int:
        return 0 if width == 0 else height * _row_bytes(info, width)

    if not info.interlaced:
        return rows(info.height, info.width)
    return sum(
        rows(-(-(info.height - r0) // dr), -(-(info.width - c0) // dc)) for r0, c0, dr, dc in _ADAM7
    )


def _row_segments(info: PngInfo) -> tuple[tuple[int, int, int, int], ...]:
    """Where rows lie in the decompressed ``IDAT`` stream: ``(start, row bytes, end, pass)``.

    One segment for a plain image, one per non-empty Adam7 pass for an interlaced one:
    each row starts with its filter type, checked in both (libpng, so TensorFlow, refuses
    a type over 4 in any pass).
    """
    if not info.interlaced:
        return ((0, _row_bytes(info, info.width), _image_data_size(info), 0),)
    segments, start = [], 0
    for number, (r0, c0, dr, dc) in enumerate(_ADAM7, 1):
        height, width = -(-(info.height - r0) // dr), -(-(info.width - c0) // dc)
        if width and height:
            stride = _row_bytes(info, width)
            segments.append((start, stride, start + height * stride, number))
            start += height * stride
    return tuple(segments)


# Inflate in slices of this many output bytes: memory stays bounded whatever the header
# or a zlib bomb claims, and the slice stays in the CPU cache (as fast as one whole-image
# inflate on the real RxRx1 PNGs).
_INFLATE_SLICE = (1 << 16) - 1  # also the most one stored deflate block holds
# The inflate is ISA-L's (python-isal, a dependency): the same zlib format and checks
# (header, Adler-32, stream end) as zlib's, 2.6x faster on the real RxRx1 PNGs (1.9 against
# 4.9 ms of CPU per site of six 512x512 images, docs/performance.md), which makes it most of
# what converting a PNG site costs.
_decompressobj = isal_zlib.decompressobj
# isal's stubs declare its error class as an instance (`error: Exception`): cast it back.
_InflateError: tuple[type[Exception], ...] = (zlib.error, cast(type[Exception], isal_zlib.error))
_adler32 = isal_zlib.adler32
# A zlib stream of stored deflate blocks (RFC 1950/1951): the header (deflate, 32 KiB
# window, no dictionary, fastest level; a multiple of 31), blocks of at most 65535 bytes
# (byte 0: not final, type "stored"; then the length and its complement), and an empty
# final block before the Adler-32 of the data.
_STORED_HEADER = b"\x78\x01"
_STORED_END = struct.pack("<BHH", 1, 0, 0xFFFF)


def _check_zlib_header(header: bytes, source: str) -> None:
    """Refuse a zlib header that zlib (so libpng, so TensorFlow) refuses and ISA-L accepts.

    ISA-L checks the method and the header checksum but not the window size: a header
    claiming a window over 32 KiB (RFC 1950 allows none) inflates there and fails in zlib.
    """
    if header[0] >> 4 > 7 and header[0] & 0x0F == 8:
        raise _fail(
            source,
            f"corrupt compressed image data in IDAT (the zlib header claims a "
            f"{1 << ((header[0] >> 4) + 8)}-byte window; zlib allows at most 32768)",
        )


class _ImageData:
    """Inflates ``IDAT`` chunks as they come, counting bytes and checking row filters.

    Memory stays bounded whatever the header claims: the image is held only with
    ``keep`` (for :func:`read_png`, whose caller bounds its size), as stored blocks.
    """

    def __init__(self, info: PngInfo, *, keep: bool = False) -> None:
        self.expected = _image_data_size(info)
        # Each scanline starts with its filter type (0..4), in every Adam7 pass too.
        self.segments = _row_segments(info)
        self.size = 0
        self._inflate = _decompressobj()
        self._header = b""  # the zlib stream's first two bytes, until checked
        # keep: the inflated bytes, already framed as stored deflate blocks (see stored())
        self._blocks: list[bytes] | None = [_STORED_HEADER] if keep else None
        self._adler = 1

    def feed(self, data: memoryview, source: str) -> None:
        if self._inflate.eof:
            if len(data):
                raise _fail(source, "IDAT data continues after the end of the zlib stream")
            return
        if len(self._header) < 2:
            self._header += bytes(data[: 2 - len(self._header)])
            if len(self._header) == 2:
                _check_zlib_header(self._header, source)
        try:
            while True:
                out = self._inflate.decompress(data, _INFLATE_SLICE)
                if out:
                    self._check_filters(out, source)  # before self.size counts them
                    if self._blocks is not None:
                        self._blocks += (struct.pack("<BHH", 0, len(out), len(out) ^ 0xFFFF), out)
                        self._adler = _adler32(out, self._adler)
                self.size += len(out)
                if self.size > self.expected:
                    raise _fail(
                        source,
                        f"IDAT holds more image data than the header's size needs "
                        f"({self.expected} bytes): corrupt file",
                    )
                data = memoryview(self._inflate.unconsumed_tail)
                if not data and len(out) < _INFLATE_SLICE:
                    break
        except _InflateError as err:
            raise _fail(source, f"corrupt compressed image data in IDAT ({err})") from None
        if self._inflate.eof and self._inflate.unused_data:
            raise _fail(
                source,
                f"{len(self._inflate.unused_data)} bytes after the end of the zlib stream "
                "in IDAT: corrupt file",
            )

    def _check_filters(self, out: bytes, source: str) -> None:
        """Refuse a row of ``out`` (the bytes after ``self.size``) whose filter type is over 4."""
        lo, hi = self.size, self.size + len(out)
        for start, stride, end, number in self.segments:
            first = max(start, lo)
            first += -(first - start) % stride  # the first row start at or after lo
            if first >= min(end, hi):
                continue
            filters = np.frombuffer(out, np.uint8)[first - lo : min(end, hi) - lo : stride]
            if int(filters.max()) > 4:
                row = (first - start) // stride + int(np.argmax(filters > 4))
                where = f"Adam7 pass {number}, " if number else ""
                raise _fail(
                    source,
                    f"{where}row {row} has filter type {int(filters.max())} (PNG defines "
                    "0..4): corrupt image data",
                )

    def stored(self) -> bytes:
        """The kept image data as a zlib stream of stored (uncompressed) deflate blocks.

        A decoder given it unfilters the rows without inflating them a second time: its
        inflate only copies. Call after :meth:`check_complete`, on an ``_ImageData`` made
        with ``keep=True``.
        """
        assert self._blocks is not None, "made without keep=True"
        return b"".join((*self._blocks, _STORED_END, struct.pack(">I", self._adler)))

    def check_complete(self, source: str) -> None:
        if self.size < self.expected or not self._inflate.eof:
            rows = "" if self.size >= self.expected else f" ({self.size} of {self.expected})"
            raise _fail(
                source,
                f"truncated image data: IDAT holds fewer bytes than the header's size "
                f"needs{rows} or its zlib stream does not end; decoders would fill the "
                "missing rows with zeros or refuse the file",
            )


def _check_format(info: PngInfo, source: str, expected_shape: tuple[int, int] | None) -> None:
    if info.bit_depth != 8 or info.color_type != 0:
        kind = _COLOR_TYPES.get(info.color_type, f"colour type {info.color_type}")
        raise _fail(source, f"{info.bit_depth}-bit {kind} image, expected 8-bit grayscale")
    if expected_shape is not None and info.shape != tuple(expected_shape):
        raise _fail(
            source,
            f"image is {info.height}x{info.width} (HxW), expected "
            f"{expected_shape[0]}x{expected_shape[1]}",
        )


def inspect_png(
    data: bytes, source: str = "<bytes>", *, expected_shape: tuple[int, int] | None = None
) -> PngInfo:
    """Validate an 8-bit grayscale PNG without decoding its pixels.

    The one notion of a valid channel image: a file that passes is decoded in full by
    TensorFlow's ``tf.io.decode_png``, Pillow and OpenCV alike. Checks the signature, that
    ``IHDR`` comes first with values PNG allows, every chunk's length and CRC-32, that
    chunk types are four ASCII letters with no unknown critical chunk and no second
    ``IHDR``, that the fixed-length ancillary chunks have their length, that there is at
    least one ``IDAT`` chunk and they are consecutive, that ``IEND`` closes the file with
    nothing after it, that every row's filter type is 0..4 (in each Adam7 pass of an
    interlaced image too), that the ``IDAT`` data inflates to
    exactly the bytes the header's size needs in one complete zlib stream (a file with
    valid CRCs but too few rows is refused, where Pillow and OpenCV would fill the missing
    rows with zeros and TensorFlow would refuse it at training time), that the image is
    8-bit grayscale and, if given, its ``(height, width)``. Costs a CRC pass and an
    inflate (no unfiltering, and memory bounded whatever the header claims): about a
    third of a full decode.

    Args:
        data: The whole file's bytes.
        source: Name of the file, used in error messages.
        expected_shape: ``(height, width)`` the image must have, or ``None``.

    Returns:
        The header fields.

    Raises:
        ImageDecodeError: Naming ``source`` and what was wrong.

    Example:
        >>> import io, numpy as np
        >>> from PIL import Image
        >>> buf = io.BytesIO()
        >>> Image.fromarray(np.zeros((4, 6), np.uint8)).save(buf, format="PNG")
        >>> inspect_png(buf.getvalue(), "demo.png")
        PngInfo(width=6, height=4, bit_depth=8, color_type=0, interlaced=False)
    """
    return _check(data, source, expected_shape)[0]


# The critical chunks (type's first letter upper case) libpng knows: any other one, a second
# IHDR, a chunk type that is not four ASCII letters, or IDAT chunks that are not consecutive
# make libpng (so TensorFlow) refuse the file, and Pillow refuses the last two.
_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")
# Ancillary chunks of a fixed length (PNG spec, section 11.3): Pillow refuses a short gAMA,
# pHYs or sRGB where libpng ignores it, so a file with any of them of another length is
# refused: what passes, every decoder reads.
_FIXED_LENGTHS = {b"gAMA": 4, b"pHYs": 9, b"sRGB": 1, b"cHRM": 32, b"tIME": 7}


def _check_chunk(
    ctype: bytes, length: int, pos: int, previous: bytes, n_idat: int, source: str
) -> None:
    """Refuse a chunk that libpng or Pillow refuses where it stands (after the first IHDR)."""
    if not ctype.isalpha() or not ctype.isascii():
        raise _fail(source, f"chunk type {ctype!r} at byte {pos} is not four ASCII letters")
    if _FIXED_LENGTHS.get(ctype, length) != length:
        raise _fail(
            source,
            f"chunk {ctype!r} at byte {pos} has {length} data bytes; PNG defines "
            f"{_FIXED_LENGTHS[ctype]}: corrupt file (Pillow refuses it)",
        )
    if ctype == b"IHDR" and pos != 8:
        raise _fail(source, f"a second IHDR chunk at byte {pos}: corrupt file")
    if ctype[:1].isupper() and ctype not in _CRITICAL:
        raise _fail(
            source,
            f"unknown critical chunk {ctype!r} at byte {pos} (PNG decoders must refuse it)",
        )
    if ctype == b"IDAT" and n_idat and previous != b"IDAT":
        raise _fail(
            source,
            f"IDAT chunk at byte {pos} after a {previous!r} chunk: PNG requires the IDAT "
            "chunks to be consecutive",
        )


def _check(
    data: bytes, source: str, expected_shape: tuple[int, int] | None, *, keep: bool = False
) -> tuple[PngInfo, _ImageData]:
    """:func:`inspect_png`, also returning the image data (inflated and kept if ``keep``)."""
    view = memoryview(data)
    info = _parse_ihdr(bytes(view[:33]), source)
    image_data = _ImageData(info, keep=keep)
    pos, n_idat, size, previous = 8, 0, len(view), b""
    while True:
        if pos + 12 > size:
            raise _fail(
                source,
                f"truncated PNG: chunk header at byte {pos} runs past the end "
                f"of the file ({size} bytes); no IEND chunk",
            )
        length, ctype = struct.unpack(">I4s", view[pos : pos + 8])
        end = pos + 12 + length
        if end > size:
            raise _fail(
                source,
                f"truncated PNG: chunk {ctype!r} at byte {pos} needs {length} "
                f"data bytes, the file ends at {size}",
            )
        stored = struct.unpack(">I", view[end - 4 : end])[0]
        actual = zlib.crc32(view[pos + 4 : end - 4])
        if stored != actual:
            raise _fail(
                source,
                f"CRC mismatch in chunk {ctype!r} at byte {pos} "
                f"(stored {stored:#010x}, computed {actual:#010x}): corrupt file",
            )
        _check_chunk(ctype, length, pos, previous, n_idat, source)
        if ctype == b"IDAT":
            n_idat += 1
            image_data.feed(view[pos + 8 : end - 4], source)
        previous, pos = ctype, end
        if ctype == b"IEND":
            break
    if n_idat == 0:
        raise _fail(source, "no IDAT chunk: the PNG has no image data")
    if pos != size:
        raise _fail(source, f"{size - pos} unexpected bytes after the IEND chunk")
    image_data.check_complete(source)
    _check_format(info, source, expected_shape)
    return info, image_data


# --- decoders: bytes -> (H, W) uint8, or raise any exception on corrupt input ------------


def _unfilter(info: PngInfo, image_data: _ImageData) -> npt.NDArray[np.uint8]:
    """Pixels from image data the check inflated and kept: Pillow unfilters the rows.

    Pillow's PNG decoder (zlib inflate, then unfiltering) is handed the stored copy of
    the inflated rows, so each image is inflated once, by ISA-L in the check, and the
    rows count is the check's: what it refuses is never decoded.
    """
    from PIL import Image

    im = Image.frombytes("L", (info.width, info.height), image_data.stored(), "zip", "L")
    return np.asarray(im)


def _decode_pillow(data: bytes) -> npt.NDArray[np.uint8]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode != "L":
            raise ValueError(f"decoded to Pillow mode {im.mode!r}, expected 'L'")
        return np.asarray(im)


def _decode_opencv(data: bytes) -> npt.NDArray[np.uint8]:
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:  # OpenCV reports corrupt input only as None: ask Pillow why
        _decode_pillow(data)
        raise ValueError("OpenCV could not decode the PNG data")
    return np.asarray(arr, dtype=np.uint8)


def _available_decoders() -> dict[str, Callable[[bytes], npt.NDArray[np.uint8]]]:
    # "rxdata" decodes in read_png (the check's inflate, then _unfilter); here it stands
    # for the images that path does not take (interlaced or huge): Pillow decodes them.
    decoders: dict[str, Callable[[bytes], npt.NDArray[np.uint8]]] = {"rxdata": _decode_pillow}
    try:
        import cv2  # noqa: F401

        decoders["opencv"] = _decode_opencv
    except ImportError:  # optional extra: fall back to Pillow
        pass
    decoders["pillow"] = _decode_pillow
    return decoders


_DECODERS = _available_decoders()
DECODER: str = "rxdata"
"""Name of the decoder :func:`read_png` uses by default: ``rxdata`` inflates each image
once, in the check, and has Pillow unfilter the rows (faster than OpenCV or Pillow after
the check; ``docs/performance.md``)."""
# The one-pass path keeps the inflated rows; larger images go through Pillow, whose
# decompression-bomb limit then applies.
_ONE_PASS_PIXELS = 1 << 26


def _read_file(path: str | os.PathLike[str]) -> bytes:
    """A channel file's bytes; a missing file is an :class:`ImageNotFoundError`."""
    try:
        return _io.read_bytes(path)
    except FileNotFoundError:
        raise ImageNotFoundError(f"channel image not found: {os.fspath(path)}") from None
    except IsADirectoryError:
        raise ImageNotFoundError(f"channel image path is a directory: {os.fspath(path)}") from None


def _source_name(source: ImageSource, path: str | os.PathLike[str] | None) -> str:
    if path is not None:
        return os.fspath(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return os.fspath(source)


def read_png(
    source: ImageSource,
    *,
    expected_shape: tuple[int, int] | None = None,
    path: str | os.PathLike[str] | None = None,
    decoder: str | None = None,
) -> npt.NDArray[np.uint8]:
    """Decode one 8-bit grayscale channel PNG.

    Args:
        source: A local path, a remote URL (``gs://...``) or the file's bytes.
        expected_shape: ``(height, width)`` the image must have, or ``None`` to accept any.
        path: Name used in error messages when ``source`` is bytes.
        decoder: ``"rxdata"`` (the default, :data:`DECODER`), ``"pillow"`` or
            ``"opencv"`` (when installed); every one gives the same array.

    Returns:
        A ``(H, W) uint8`` array.

    Raises:
        ImageNotFoundError: ``source`` is a path that does not exist.
        ImageDecodeError: Corrupt, not 8-bit grayscale, or not of ``expected_shape``.

    Example:
        >>> import io, numpy as np
        >>> from PIL import Image
        >>> buf = io.BytesIO()
        >>> Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(buf, "PNG")
        >>> read_png(buf.getvalue())[2].tolist()
        [8, 9, 10, 11]
    """
    name = _source_name(source, path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = _read_file(source)
    info = _parse_ihdr(data[:33], name)
    _check_format(info, name, expected_shape)  # before inflating: a wrong size fails fast
    name_of_decoder = DECODER if decoder is None else decoder
    try:
        decode = _DECODERS[name_of_decoder]
    except KeyError:
        raise OptionsError(
            f"decoder={name_of_decoder!r} is not available; installed: {sorted(_DECODERS)}"
        ) from None
    one_pass = (
        name_of_decoder == "rxdata"
        and not info.interlaced
        and info.width * info.height <= _ONE_PASS_PIXELS
    )
    # inspect_png's checks first: what decoders would zero-fill is refused here
    _, image_data = _check(data, name, expected_shape, keep=one_pass)
    try:
        arr = _unfilter(info, image_data) if one_pass else decode(data)
    except Exception as err:  # decoders raise assorted types; report them uniformly
        raise _fail(name, f"corrupt PNG data ({type(err).__name__}: {err})") from err
    if arr.shape != info.shape or arr.dtype != np.uint8:
        raise _fail(name, f"decoded to {arr.dtype} {arr.shape}, header says uint8 {info.shape}")
    return arr


# --- sites ---------------------------------------------------------------------------------


def default_root() -> str:
    """The data root used when ``base_path`` is not given: ``$RXDATA_ROOT`` or ``"."``.

    Example:
        >>> isinstance(default_root(), str)
        True
    """
    return os.environ.get(ROOT_ENV) or "."


def resolve_layout(
    base_path: str | os.PathLike[str], dataset: str | None = None, layout: str | None = None
) -> Layout:
    """The layout of a data root, by the one rule of :func:`rxdata.roots.find_root`.

    An explicit ``layout`` wins (after validation). ``dataset`` is accepted for backward
    compatibility and no longer changes the answer: the folders decide.

    Raises:
        MetadataError: no (or an ambiguous) layout under ``base_path``.
        OptionsError: ``layout`` is not ``'kaggle'``, ``'full'`` or ``None``.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/images")
        >>> resolve_layout(root, None), resolve_layout(root, "train", layout="kaggle")
        ('full', 'kaggle')
    """
    del dataset  # the folders under base_path decide, whatever the dataset
    return find_root(base_path, layout=layout).layout


def locate(
    base_path: str | os.PathLike[str],
    dataset: str | None,
    experiment: str,
    layout: str | None = None,
) -> tuple[Layout, str | None]:
    """Resolve ``(layout, dataset)`` for an experiment under a data root.

    Uses :func:`rxdata.roots.find_root` and :meth:`rxdata.roots.DataRoot.locate`:
    ``dataset=None`` in the Kaggle layout finds the experiment under ``train/`` or
    ``test/``, in either spelling (``HEPG2-8`` finds ``HEPG2-08``).

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/test/HEPG2-08")
        >>> locate(root, None, "HEPG2-8")
        ('kaggle', 'test')
    """
    data = find_root(base_path, layout=layout)
    return data.layout, data.locate(dataset, experiment)[0]


def channel_path(
    base_path: str | os.PathLike[str],
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    channel: int,
    layout: str | None = None,
) -> str:
    """Path of one channel image under a data root (:meth:`rxdata.roots.DataRoot.path`).

    The root is classified by :func:`rxdata.roots.find_root` (``layout`` overrides the
    detection) and the experiment folder is found as spelled on disk.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(f"{root}/train/RPE-05")
        >>> channel_path(root, "train", "RPE-5", 3, "D19", 2, 1) == (
        ...     f"{root}/train/RPE-05/Plate3/D19_s2_w1.png")
        True
    """
    data = find_root(base_path, layout=layout)
    return data.path(dataset, experiment, plate, well, site, channel)


def _check_channels(channels: Sequence[int]) -> tuple[int, ...]:
    chans = tuple(channels)
    if not chans:
        raise OptionsError("channels is empty; give at least one channel number (1..6)")
    for c in chans:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c not in CHANNELS:
            raise OptionsError(
                f"channel {c!r} in channels={chans!r} is not an RxRx1 channel {CHANNELS}"
            )
    return tuple(int(c) for c in chans)


def load_site(
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    base_path: str | os.PathLike[str] | None = None,
    *,
    layout: str | None = None,
    expected_shape: tuple[int, int] | None = None,
) -> npt.NDArray[np.uint8]:
    """Load a site's channel images as one ``(H, W, len(channels)) uint8`` array.

    Arguments follow rxrx1-utils' ``rxrx.io.load_site``, so
    ``rxdata.load_site('train', 'RPE-05', 3, 'D19', 2)`` works as before (with the data
    root in ``$RXDATA_ROOT``, the current directory, or ``base_path``).

    Args:
        dataset: ``"train"`` or ``"test"`` (Kaggle layout); ``None`` for the full release,
            or to find the experiment under ``train/`` or ``test/`` (:func:`locate`).
        experiment: Experiment name, e.g. ``"RPE-05"``.
        plate: Plate number 1..4.
        well: Well address, e.g. ``"D19"``.
        site: Site number 1 or 2.
        channels: Channel numbers to stack, in this order.
        base_path: Data root (local folder or ``gs://`` URL); default :func:`default_root`.
        layout: ``"kaggle"``, ``"full"`` or ``None`` to detect
            (:func:`rxdata.roots.find_root`).
        expected_shape: ``(height, width)`` every channel must have; ``None`` takes the
            first channel's size and requires the others to agree.

    Returns:
        The site, channels last.

    Raises:
        ImageNotFoundError: A channel file is missing (names the path).
        ImageDecodeError: A channel is corrupt, not 8-bit grayscale or of another size.
        MetadataError: ``base_path`` holds no recognisable layout (or both).
        OptionsError: Bad ``channels`` or ``layout``; or ``dataset=None`` in the Kaggle
            layout and the experiment is under neither ``train/`` nor ``test/``.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(f"{root}/train/RPE-05/Plate3")
        >>> for c in (1, 2):
        ...     Image.fromarray(np.full((2, 3), c, np.uint8)).save(
        ...         f"{root}/train/RPE-05/Plate3/D19_s2_w{c}.png")
        >>> x = load_site("train", "RPE-05", 3, "D19", 2, channels=(2, 1), base_path=root)
        >>> x.shape, x[0, 0].tolist()
        ((2, 3, 2), [2, 1])
    """
    chans = _check_channels(channels)
    root = default_root() if base_path is None else base_path
    data = find_root(root, layout=layout)
    dataset, experiment = data.locate(dataset, experiment)
    out: npt.NDArray[np.uint8] | None = None
    shape = None if expected_shape is None else (int(expected_shape[0]), int(expected_shape[1]))
    paths = [
        data.join(image_path(dataset, experiment, plate, well, site, c, data.layout)) for c in chans
    ]
    sources: list[str | bytes] = list(paths)
    if _io.is_remote(root) and len(paths) > 1:
        # Remote reads are latency-bound: fetch the channels concurrently, decode in order.
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            sources = list(pool.map(_read_file, paths))
    for i, (p, src) in enumerate(zip(paths, sources, strict=True)):
        img = read_png(src, expected_shape=shape, path=p)
        if out is None:
            shape = (img.shape[0], img.shape[1])
            out = np.empty((*shape, len(chans)), dtype=np.uint8)
        out[:, :, i] = img
    assert out is not None  # chans is non-empty
    return out


def load_site_as_rgb(
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    base_path: str | os.PathLike[str] | None = None,
    *,
    layout: str | None = None,
    vmax: float = 255,
    rgb_map: RgbMap = RGB_MAP,
) -> npt.NDArray[np.uint8]:
    """Load a site and colour it with :func:`~rxdata.color.convert_tensor_to_rgb`.

    Same arguments as :func:`load_site`, plus ``vmax`` and ``rgb_map`` for the colouring.

    Returns:
        An ``(H, W, 3) uint8`` RGB image.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(f"{root}/images/U2OS-01/Plate1")
        >>> Image.fromarray(np.full((2, 2), 51, np.uint8)).save(
        ...     f"{root}/images/U2OS-01/Plate1/B02_s1_w1.png")
        >>> load_site_as_rgb(None, "U2OS-01", 1, "B02", 1, channels=(1,), base_path=root)[0, 0]
        array([ 19,   0, 249], dtype=uint8)
    """
    x = load_site(dataset, experiment, plate, well, site, channels, base_path, layout=layout)
    return convert_tensor_to_rgb(x, channels, vmax=vmax, rgb_map=rgb_map)
