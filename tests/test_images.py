"""Tests for rxdata.images: PNG validation, decoding and site loading."""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import rxdata
from rxdata import images
from rxdata.errors import ImageDecodeError, ImageNotFoundError, OptionsError


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_site(root: Path, top: str, shape=(5, 7), channels=(1, 2, 3, 4, 5, 6), seed=0):
    rng = np.random.default_rng(seed)
    folder = root / top / "RPE-05" / "Plate3"
    folder.mkdir(parents=True, exist_ok=True)
    planes = {}
    for c in channels:
        planes[c] = rng.integers(0, 256, shape, dtype=np.uint8)
        (folder / f"D19_s2_w{c}.png").write_bytes(png_bytes(planes[c]))
    return planes


def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


# --- inspect_png ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_inspect_png_reads_header_of_any_valid_image(arr):
    info = images.inspect_png(png_bytes(arr), "x.png")
    assert (info.height, info.width, info.bit_depth, info.color_type) == (*arr.shape, 8, 0)
    assert info.shape == arr.shape


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_inspect_png_rejects_any_single_byte_corruption(data):
    good = png_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8))
    pos = data.draw(st.integers(0, len(good) - 1))
    flip = data.draw(st.integers(1, 255))
    bad = bytearray(good)
    bad[pos] ^= flip
    with pytest.raises(ImageDecodeError, match=r"bad.png"):
        images.inspect_png(bytes(bad), "bad.png")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda b: b"GIF89a" + b[6:], "not a PNG", id="signature"),
        pytest.param(lambda b: b[:20], "truncated", id="truncated-header"),
        pytest.param(lambda b: b[:-12], "no IEND", id="no-iend"),
        pytest.param(lambda b: b[:-30], "truncated", id="truncated-idat"),
        pytest.param(lambda b: b + b"junk", "after the IEND", id="trailing"),
    ],
)
def test_inspect_png_structural_errors(mutate, message):
    good = png_bytes(np.zeros((16, 16), np.uint8))
    with pytest.raises(ImageDecodeError, match=message) as err:
        images.inspect_png(mutate(good), "site/B02_s1_w1.png")
    assert "site/B02_s1_w1.png" in str(err.value)


def test_inspect_png_requires_idat():
    good = png_bytes(np.zeros((4, 4), np.uint8))
    no_idat = good[:33] + chunk(b"IEND", b"")
    with pytest.raises(ImageDecodeError, match=r"no IDAT"):
        images.inspect_png(no_idat, "x.png")


@pytest.mark.parametrize(
    ("arr", "what"),
    [
        pytest.param(np.zeros((4, 4, 3), np.uint8), "8-bit RGB", id="rgb"),
        pytest.param(np.zeros((4, 4), np.uint16), "16-bit grayscale", id="16bit"),
        pytest.param(np.zeros((4, 4), bool), "1-bit grayscale", id="1bit"),
    ],
)
def test_non_8bit_grayscale_rejected(arr, what):
    data = png_bytes(arr)
    for call in (lambda: images.inspect_png(data, "x.png"), lambda: images.read_png(data)):
        with pytest.raises(ImageDecodeError, match=f"{what} image, expected 8-bit grayscale"):
            call()


def test_expected_shape_checked():
    data = png_bytes(np.zeros((4, 6), np.uint8))
    assert images.inspect_png(data, expected_shape=(4, 6)).width == 6
    with pytest.raises(ImageDecodeError, match=r"4x6 \(HxW\), expected 512x512"):
        images.inspect_png(data, "a.png", expected_shape=(512, 512))
    with pytest.raises(ImageDecodeError, match=r"a.png: image is 4x6"):
        images.read_png(data, path="a.png", expected_shape=(512, 512))


def gray_png(
    width: int, height: int, raw: bytes, *, interlace: int = 0, tail: bytes = b""
) -> bytes:
    """An 8-bit grayscale PNG around the given scanline bytes, every CRC valid."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw) + tail)
        + chunk(b"IEND", b"")
    )


def scanlines(width: int, rows: int) -> bytes:
    return b"".join(b"\x00" + bytes((r * 7 + c) % 256 for c in range(width)) for r in range(rows))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(gray_png(32, 32, scanlines(32, 10)), r"\(330 of 1056\)", id="10-of-32-rows"),
        pytest.param(
            gray_png(32, 32, scanlines(32, 31)), "truncated image data", id="one-row-short"
        ),
        pytest.param(gray_png(32, 32, scanlines(32, 40)), "more image data", id="too-many-rows"),
        pytest.param(
            gray_png(32, 32, scanlines(32, 32), tail=b"junk"),
            "after the end of the zlib",
            id="garbage-after-stream",
        ),
        pytest.param(gray_png(32, 32, b"", tail=b""), "truncated image data", id="empty-stream"),
    ],
)
def test_image_data_of_the_wrong_length_is_refused_everywhere(data, message):
    """Valid CRCs, wrong amount of pixel data: refused by inspect_png and read_png alike."""
    for call in (
        lambda: images.inspect_png(data, "x/B02_s1_w1.png"),
        lambda: images.read_png(data, path="x/B02_s1_w1.png"),
    ):
        with pytest.raises(ImageDecodeError, match=message) as err:
            call()
        assert "x/B02_s1_w1.png" in str(err.value)


def test_short_image_data_is_what_tensorflow_refuses_and_pillow_zero_fills():
    """Why the check exists: the decoders disagree on a PNG with too few rows."""
    tf = pytest.importorskip("tensorflow")
    short = gray_png(32, 32, scanlines(32, 10))
    with Image.open(io.BytesIO(short)) as img:  # Pillow: no error, rows 10..31 are zeros
        assert not np.asarray(img)[10:].any()
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_png(short)
    good = gray_png(32, 32, scanlines(32, 32))
    np.testing.assert_array_equal(tf.io.decode_png(good).numpy()[..., 0], images.read_png(good))


def test_zlib_stream_cut_inside_idat_is_refused():
    whole = zlib.compress(scanlines(32, 33))
    ihdr = struct.pack(">IIBBBBB", 32, 33, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", whole[:-9])
    data += chunk(b"IEND", b"")
    with pytest.raises(ImageDecodeError, match=r"truncated image data|corrupt compressed"):
        images.inspect_png(data, "x.png")


def _restream(stream: bytes, *, head: bytes | None = None, flip_last: bool = False) -> bytes:
    """``stream`` with another zlib header (FCHECK fixed) or its Adler-32 broken."""
    if head is not None:
        cmf = head[0]
        flg = (head[1] & 0xE0) | (31 - (cmf * 256 + (head[1] & 0xE0)) % 31) % 31
        stream = bytes([cmf, flg]) + stream[2:]
    if flip_last:
        stream = stream[:-1] + bytes([stream[-1] ^ 1])
    return stream


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        pytest.param(
            _restream(zlib.compress(scanlines(8, 8)), head=b"\x88\x00"),
            "65536-byte window",
            id="window-over-32k",
        ),
        pytest.param(
            _restream(zlib.compress(scanlines(8, 8)), head=b"\x79\x00"),
            "corrupt compressed",
            id="method-9",
        ),
        pytest.param(
            _restream(zlib.compress(scanlines(8, 8)), flip_last=True),
            "corrupt compressed",
            id="adler32",
        ),
        pytest.param(
            bytes([0x78, 0x9C ^ 1]) + zlib.compress(scanlines(8, 8))[2:],
            "corrupt compressed",
            id="header-checksum",
        ),
        pytest.param(
            _restream(zlib.compress(scanlines(8, 8)), head=b"\x78\x20"),
            "corrupt compressed",
            id="preset-dictionary",
        ),
    ],
)
@pytest.mark.parametrize("split", [False, True], ids=["one-idat", "header-split"])
def test_zlib_streams_that_zlib_refuses_are_refused(stream, message, split):
    """The inflate is ISA-L's; what zlib (libpng, TensorFlow) refuses is refused too."""
    tf = pytest.importorskip("tensorflow")
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    idat = (
        chunk(b"IDAT", stream[:1]) + chunk(b"IDAT", stream[1:]) if split else chunk(b"IDAT", stream)
    )
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")
    with pytest.raises(zlib.error):
        zlib.decompress(stream)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_png(data)
    with pytest.raises(ImageDecodeError, match=message):
        images.inspect_png(data, "x.png")


def test_the_inflate_is_isa_l_and_agrees_with_zlib():
    """A valid stream split anywhere between IDAT chunks passes, as with zlib."""
    assert images._decompressobj.__module__ == "isal.isal_zlib"
    raw = scanlines(40, 40)
    stream = zlib.compress(raw, 9)
    ihdr = struct.pack(">IIBBBBB", 40, 40, 8, 0, 0, 0, 0)
    for cut in (1, 2, 3, len(stream) // 2, len(stream) - 1):
        idat = chunk(b"IDAT", stream[:cut]) + chunk(b"IDAT", stream[cut:])
        data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")
        assert images.inspect_png(data, "x.png", expected_shape=(40, 40)).width == 40


def test_interlaced_image_data_size_follows_adam7():
    # 8x8 8-bit grayscale, Adam7: passes of 1x1, 1x1, 1x2, 2x2, 2x4, 4x4, 4x8 pixels,
    # each row with its filter byte: 2 + 2 + 3 + 6 + 10 + 20 + 36 = 79 bytes.
    tf = pytest.importorskip("tensorflow")
    good = gray_png(8, 8, bytes(79), interlace=1)
    assert images.inspect_png(good).interlaced
    assert tf.io.decode_png(good).shape == (8, 8, 1)
    with pytest.raises(ImageDecodeError, match="truncated image data"):
        images.inspect_png(gray_png(8, 8, bytes(78), interlace=1))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param((8, 0, 1, 0, 0), "compression 1", id="compression"),
        pytest.param((8, 0, 0, 0, 2), "interlace 2", id="interlace"),
        pytest.param((3, 0, 0, 0, 0), "bit depth 3", id="bit-depth"),
    ],
)
def test_header_values_png_does_not_allow(fields, message):
    depth, ctype, comp, filt, interlace = fields
    ihdr = struct.pack(">IIBBBBB", 4, 4, depth, ctype, comp, filt, interlace)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(20)))
    with pytest.raises(ImageDecodeError, match=message):
        images.inspect_png(data + chunk(b"IEND", b""), "x.png")


def test_a_zlib_bomb_behind_a_huge_header_is_refused():
    # 60000x60000 claims 3.6 GB; the stream inflates to 64 MB of zeros, then ends early.
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
    bomb = zlib.compress(bytes(64 << 20), 9)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bomb) + chunk(b"IEND", b"")
    with pytest.raises(ImageDecodeError, match="truncated image data"):
        images.inspect_png(data, "bomb.png")


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 20), st.integers(1, 20), st.data())
def test_any_missing_rows_are_refused(width, height, data):
    rows = data.draw(st.integers(0, height - 1))
    with pytest.raises(ImageDecodeError, match="truncated image data"):
        images.inspect_png(gray_png(width, height, scanlines(width, rows)), "x.png")
    assert images.inspect_png(gray_png(width, height, scanlines(width, height))).shape == (
        height,
        width,
    )


# --- read_png ------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_read_png_round_trip_every_decoder(arr):
    data = png_bytes(arr)
    for name in images._DECODERS:
        np.testing.assert_array_equal(images.read_png(data, decoder=name), arr)


@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_rxdata_decoder_unfilters_every_filter_over_many_blocks(filter_type):
    # 301 rows of 300 pixels: the check's inflate keeps 91,000 bytes in two stored blocks
    rng = np.random.default_rng(filter_type)
    arr = rng.integers(0, 256, (301, 300), dtype=np.uint8)
    arr[:150] //= 9  # compressible rows beside noise
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # Pillow's adaptive filters (mostly Paeth)
    for data in (buf.getvalue(), filtered_png(arr, filter_type)):
        np.testing.assert_array_equal(images.read_png(data, decoder="rxdata"), arr)
        np.testing.assert_array_equal(images.read_png(data, decoder="pillow"), arr)


def filtered_png(arr: np.ndarray, filter_type: int) -> bytes:
    """``arr`` as a PNG whose every row uses ``filter_type`` (PNG spec, section 9)."""
    a = arr.astype(np.int32)
    rows = []
    for r in range(a.shape[0]):
        x = a[r]
        left = np.concatenate([[0], x[:-1]])
        up = a[r - 1] if r else np.zeros_like(x)
        up_left = np.concatenate([[0], up[:-1]])
        if filter_type == 0:
            f = x
        elif filter_type == 1:
            f = x - left
        elif filter_type == 2:
            f = x - up
        elif filter_type == 3:
            f = x - (left + up) // 2
        else:
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
            f = x - pred
        rows.append(bytes([filter_type]) + (f % 256).astype(np.uint8).tobytes())
    return gray_png(arr.shape[1], arr.shape[0], b"".join(rows))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    st.integers(0, 4),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_rxdata_decoder_over_any_idat_split(arr, filter_type, cuts):
    # the zlib stream cut into IDAT chunks anywhere, empty chunks included
    one = filtered_png(arr, filter_type)
    start = one.index(b"IDAT") + 4
    length = struct.unpack(">I", one[start - 8 : start - 4])[0]
    stream = one[start : start + length]
    bounds = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    idats = b"".join(chunk(b"IDAT", stream[a:b]) for a, b in itertools.pairwise(bounds))
    data = one[: start - 8] + idats + one[start + length + 4 :]
    for decoder in images._DECODERS:
        np.testing.assert_array_equal(images.read_png(data, decoder=decoder), arr)


def test_rxdata_decoder_refuses_what_the_check_refuses():
    # the one-pass decoder uses the check's inflate: 10 of 32 rows is refused, not zero-filled
    short = gray_png(32, 32, scanlines(32, 10))
    for decoder in images._DECODERS:
        with pytest.raises(ImageDecodeError, match=r"s.png: truncated image data"):
            images.read_png(short, path="s.png", decoder=decoder)


def test_rxdata_decoder_hands_interlaced_images_to_pillow(monkeypatch):
    # Adam7 rows are not one grid: Pillow decodes them from the file (after the check);
    # other images never reach a file decoder (no second inflate)
    calls = []

    def from_file(data):
        calls.append(len(data))
        return images._decode_pillow(data)

    monkeypatch.setitem(images._DECODERS, "rxdata", from_file)
    plain = png_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8))
    np.testing.assert_array_equal(images.read_png(plain), np.arange(64).reshape(8, 8))
    assert calls == []
    data = gray_png(8, 8, bytes(79), interlace=1)
    np.testing.assert_array_equal(images.read_png(data), np.zeros((8, 8), np.uint8))
    assert calls == [len(data)]


def test_read_png_from_path_and_errors(tmp_path):
    arr = np.arange(20, dtype=np.uint8).reshape(4, 5)
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(arr))
    np.testing.assert_array_equal(images.read_png(p), arr)
    np.testing.assert_array_equal(images.read_png(str(p)), arr)
    with pytest.raises(ImageNotFoundError, match=r"missing.png"):
        images.read_png(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):  # also the built-in
        images.read_png(tmp_path / "missing.png")
    with pytest.raises(OptionsError, match=r"decoder='nope'"):
        images.read_png(p, decoder="nope")


@pytest.mark.parametrize("decoder", sorted(images._DECODERS))
def test_read_png_corrupt_pixel_data_names_file(decoder):
    rng = np.random.default_rng(1)
    good = png_bytes(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    # Corrupt the compressed stream but fix the CRC, so only decoding can notice.
    start = good.index(b"IDAT") + 4
    length = struct.unpack(">I", good[start - 8 : start - 4])[0]
    payload = bytearray(good[start : start + length])
    payload[10:40] = bytes(30)
    bad = good[: start - 8] + chunk(b"IDAT", bytes(payload)) + good[start + length + 4 :]
    with pytest.raises(ImageDecodeError, match=r"w3.png: corrupt"):
        images.read_png(bad, path="w3.png", decoder=decoder)


@pytest.mark.real
def test_decoders_agree_on_real_images(real_root):
    files = sorted((real_root / "images").rglob("*.png"))[:24]
    assert files
    for f in files:
        data = f.read_bytes()
        info = images.inspect_png(data, str(f))
        ref = np.asarray(Image.open(f))
        for name in images._DECODERS:
            out = images.read_png(data, decoder=name)
            assert out.shape == info.shape
            np.testing.assert_array_equal(out, ref)


# --- load_site -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["kaggle", "full"])
def test_load_site_both_layouts_and_channel_order(tmp_path, layout):
    top = "train" if layout == "kaggle" else "images"
    planes = write_site(tmp_path, top)
    dataset = "train" if layout == "kaggle" else None
    x = rxdata.load_site(dataset, "RPE-05", 3, "D19", 2, base_path=tmp_path)
    assert x.shape == (5, 7, 6) and x.dtype == np.uint8
    for i in range(6):
        np.testing.assert_array_equal(x[..., i], planes[i + 1])
    y = rxdata.load_site(dataset, "RPE-05", 3, "D19", 2, channels=[5, 1], base_path=tmp_path)
    np.testing.assert_array_equal(y, np.stack([planes[5], planes[1]], axis=-1))
    # explicit layout and detection agree
    z = rxdata.load_site("train", "RPE-05", 3, "D19", 2, base_path=tmp_path, layout=layout)
    np.testing.assert_array_equal(z, x)


def test_load_site_default_root_from_env(tmp_path, monkeypatch):
    planes = write_site(tmp_path, "train", channels=(1, 2))
    monkeypatch.setenv("RXDATA_ROOT", str(tmp_path))
    x = rxdata.load_site("train", "RPE-05", 3, "D19", 2, (1, 2))
    np.testing.assert_array_equal(x[..., 1], planes[2])
    monkeypatch.delenv("RXDATA_ROOT")
    monkeypatch.chdir(tmp_path)
    assert rxdata.load_site("train", "RPE-05", 3, "D19", 2, (2,)).shape == (5, 7, 1)


def test_load_site_missing_channel_names_path(tmp_path):
    write_site(tmp_path, "train", channels=(1, 2, 3))
    with pytest.raises(ImageNotFoundError) as err:
        rxdata.load_site("train", "RPE-05", 3, "D19", 2, base_path=tmp_path)
    assert str(tmp_path / "train/RPE-05/Plate3/D19_s2_w4.png") in str(err.value)


def test_load_site_size_mismatch_between_channels(tmp_path):
    write_site(tmp_path, "train", channels=(1, 2))
    folder = tmp_path / "train/RPE-05/Plate3"
    (folder / "D19_s2_w2.png").write_bytes(png_bytes(np.zeros((5, 8), np.uint8)))
    with pytest.raises(ImageDecodeError, match=r"D19_s2_w2.png: image is 5x8 .*expected 5x7"):
        rxdata.load_site("train", "RPE-05", 3, "D19", 2, (1, 2), base_path=tmp_path)
    with pytest.raises(ImageDecodeError, match=r"D19_s2_w1.png: image is 5x7"):
        rxdata.load_site(
            "train", "RPE-05", 3, "D19", 2, (1, 2), base_path=tmp_path, expected_shape=(5, 8)
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"channels": ()}, "channels is empty", id="empty"),
        pytest.param({"channels": (0,)}, "channel 0", id="zero"),
        pytest.param({"channels": ("1",)}, "channel '1'", id="str"),
        pytest.param({"layout": "zip"}, "layout='zip'", id="layout"),
    ],
)
def test_load_site_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(OptionsError, match=message):
        rxdata.load_site("train", "RPE-05", 3, "D19", 2, base_path=tmp_path, **kwargs)


def test_load_site_as_rgb_matches_convert(tmp_path):
    write_site(tmp_path, "images")
    x = rxdata.load_site(None, "RPE-05", 3, "D19", 2, base_path=tmp_path)
    rgb = rxdata.load_site_as_rgb(None, "RPE-05", 3, "D19", 2, base_path=tmp_path)
    np.testing.assert_array_equal(rgb, rxdata.convert_tensor_to_rgb(x))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8


@pytest.mark.real
def test_load_real_site_rxrx1_utils_call(real_root):
    import rxdata as rio

    x = rio.load_site("train", "RPE-01", 1, "B02", 1, base_path=real_root / "images")
    assert x.shape == (512, 512, 6) and x.dtype == np.uint8
    ref = np.asarray(Image.open(real_root / "images/train/RPE-01/Plate1/B02_s1_w4.png"))
    np.testing.assert_array_equal(x[..., 3], ref)
    # site 2 of the real data has only channels 1-4: a real incomplete site
    assert (
        rio.load_site("test", "HEPG2-08", 2, "B02", 2, (1, 2, 3, 4), real_root / "images").shape[-1]
        == 4
    )
    with pytest.raises(ImageNotFoundError, match=r"B02_s2_w5.png"):
        rio.load_site("test", "HEPG2-08", 2, "B02", 2, base_path=real_root / "images")


def test_load_site_finds_dataset_of_experiment(tmp_path):
    planes = write_site(tmp_path, "test", channels=(3,))
    x = rxdata.load_site(None, "RPE-05", 3, "D19", 2, (3,), base_path=tmp_path)
    np.testing.assert_array_equal(x[..., 0], planes[3])
    with pytest.raises(OptionsError, match="under neither"):
        rxdata.load_site(None, "RPE-77", 3, "D19", 2, (3,), base_path=tmp_path, layout="kaggle")


def test_load_site_remote_filesystem():
    """Remote URLs go through tf.io.gfile (here its in-memory ram:// file system), with the
    channels fetched concurrently; errors still name the URL."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    root = f"ram://rxdata-test-{rng.integers(1 << 30)}"
    planes = {}
    for c in (1, 2, 3):
        planes[c] = rng.integers(0, 256, (4, 6), dtype=np.uint8)
        path = f"{root}/images/HEPG2-01/Plate2/B02_s1_w{c}.png"
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(png_bytes(planes[c]))
    x = rxdata.load_site(None, "HEPG2-01", 2, "B02", 1, channels=(3, 1, 2), base_path=root)
    np.testing.assert_array_equal(x, np.stack([planes[3], planes[1], planes[2]], axis=-1))
    with pytest.raises(ImageNotFoundError, match=rf"{root}/images/HEPG2-01/Plate2/B02_s1_w4"):
        rxdata.load_site(None, "HEPG2-01", 2, "B02", 1, channels=(1, 4), base_path=root)


def test_a_row_with_an_unknown_filter_type_is_refused():
    raw = bytearray(scanlines(16, 16))
    raw[5 * 17] = 9  # row 5's filter type
    with pytest.raises(ImageDecodeError, match="row 5 has filter type 9"):
        images.inspect_png(gray_png(16, 16, bytes(raw)), "x.png")


def _chunked_png(*middle: bytes) -> bytes:
    """An 8x8 grayscale PNG: signature, IHDR, then ``middle`` chunks, then IEND."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(middle) + chunk(b"IEND", b"")


_ZDATA = zlib.compress(scanlines(8, 8))
_IHDR = chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            _chunked_png(
                chunk(b"IDAT", _ZDATA[:5]), chunk(b"tEXt", b"a\0b"), chunk(b"IDAT", _ZDATA[5:])
            ),
            r"IDAT chunk at byte \d+ after a b'tEXt' chunk",
            id="idat-not-consecutive",
        ),
        pytest.param(
            _chunked_png(chunk(b"a1c!", b"x"), chunk(b"IDAT", _ZDATA)),
            r"chunk type b'a1c!' at byte 33 is not four ASCII letters",
            id="chunk-type-not-letters",
        ),
        pytest.param(
            _chunked_png(_IHDR, chunk(b"IDAT", _ZDATA)),
            "a second IHDR chunk at byte 33",
            id="second-ihdr",
        ),
        pytest.param(
            _chunked_png(chunk(b"ABCD", b"x"), chunk(b"IDAT", _ZDATA)),
            "unknown critical chunk b'ABCD' at byte 33",
            id="unknown-critical-chunk",
        ),
    ],
)
def test_chunk_layouts_tensorflow_refuses_are_refused(data, message):
    """Valid CRCs and image data, but chunks libpng (TensorFlow) refuses: refused too.

    Found by the adversarial pass on the one-inflate decoder: it decoded the first two
    where Pillow refuses them, and inspect_png passed all four to TensorFlow's failure at
    training time.
    """
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_png(data, channels=1)
    for call in (
        lambda: images.inspect_png(data, "x/B02_s1_w1.png"),
        *(
            lambda d=d: images.read_png(data, path="x/B02_s1_w1.png", decoder=d)
            for d in images._DECODERS
        ),
    ):
        with pytest.raises(ImageDecodeError, match=message) as err:
            call()
        assert "x/B02_s1_w1.png" in str(err.value)


def test_chunk_layouts_every_decoder_accepts_stay_accepted():
    """Ancillary chunks anywhere, PLTE in a grayscale image and empty IDATs: all decode."""
    pixels = np.frombuffer(scanlines(8, 8), np.uint8).reshape(8, 9)[:, 1:]
    for data in (
        _chunked_png(chunk(b"PLTE", bytes(3)), chunk(b"IDAT", _ZDATA)),
        _chunked_png(chunk(b"IDAT", b""), chunk(b"IDAT", _ZDATA), chunk(b"IDAT", b"")),
        _chunked_png(chunk(b"IDAT", _ZDATA), chunk(b"tEXt", b"a\0b"), chunk(b"zzZz", b"")),
    ):
        for decoder in images._DECODERS:
            np.testing.assert_array_equal(images.read_png(data, decoder=decoder), pixels)


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24))),
    st.integers(0, 9),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    st.integers(-8, 8),
)
def test_every_decoder_agrees_on_a_damaged_zlib_stream_with_valid_crcs(arr, level, edits, grow):
    """Bytes of the IDAT stream changed, cut or extended, every CRC recomputed: the
    default one-inflate decoder gives exactly Pillow's pixels or refuses with Pillow
    (adversarial pass on the one-inflate decoder: 3,000 such files, no disagreement)."""
    stream = bytearray(zlib.compress(np.pad(arr, ((0, 0), (1, 0))).tobytes(), level))
    for pos, value in edits:
        stream[pos % len(stream)] = value
    stream = stream[: len(stream) + grow] if grow < 0 else stream + bytes(range(grow))
    ihdr = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bytes(stream))
    data += chunk(b"IEND", b"")
    results = []
    for decoder in images._DECODERS:
        try:
            results.append(images.read_png(data, decoder=decoder).tobytes())
        except ImageDecodeError:
            results.append(None)
    assert len(set(results)) == 1


def _adam7_scanlines(arr: np.ndarray) -> list[tuple[int, bytes]]:
    """``(pass number, scanline)`` of ``arr`` interlaced (Adam7), every row filter type 0."""
    return [
        (number, b"\x00" + row.tobytes())
        for number, (r0, c0, dr, dc) in enumerate(images._ADAM7, 1)
        if arr[r0::dr, c0::dc].size
        for row in arr[r0::dr, c0::dc]
    ]


@pytest.mark.parametrize(("shape", "target"), [((8, 8), 1), ((5, 3), 4), ((9, 17), 7)])
def test_an_interlaced_row_with_an_unknown_filter_type_is_refused(shape, target):
    """Found by the adversarial pass: inspect_png checked filter types in plain images
    only, so a png-encoded conversion stored an interlaced image with a filter type of 7
    (tf.io.decode_png refuses it at training time)."""
    arr = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    lines = _adam7_scanlines(arr)
    good = gray_png(shape[1], shape[0], b"".join(line for _, line in lines), interlace=1)
    np.testing.assert_array_equal(images.read_png(good), arr)
    index = max(i for i, (number, _) in enumerate(lines) if number == target)
    row = sum(1 for number, _ in lines[:index] if number == target)
    bad = b"".join(b"\x07" + line[1:] if i == index else line for i, (_, line) in enumerate(lines))
    data = gray_png(shape[1], shape[0], bad, interlace=1)
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_png(data, channels=1)
    message = f"Adam7 pass {target}, row {row} has filter type 7"
    for call in (
        lambda: images.inspect_png(data, "x.png"),
        *(lambda d=d: images.read_png(data, decoder=d) for d in images._DECODERS),
    ):
        with pytest.raises(ImageDecodeError, match=message):
            call()


@pytest.mark.parametrize("ancillary", [b"gAMA", b"pHYs", b"sRGB"])
def test_every_decoder_agrees_on_a_malformed_ancillary_chunk(ancillary):
    # Pillow refuses a short gAMA, pHYs or sRGB where libpng (TensorFlow) ignores it: the
    # check refuses the file, so no decoder (and no training run) sees it
    data = _chunked_png(
        chunk(ancillary, bytes(0 if ancillary == b"sRGB" else 3)), chunk(b"IDAT", _ZDATA)
    )
    message = rf"x.png: chunk {ancillary!r} at byte 33 has \d data bytes; PNG defines"
    with pytest.raises(ImageDecodeError, match=message):
        images.inspect_png(data, "x.png")
    for decoder in images._DECODERS:
        with pytest.raises(ImageDecodeError, match=message):
            images.read_png(data, path="x.png", decoder=decoder)
    good = _chunked_png(chunk(b"gAMA", bytes(4)), chunk(b"IDAT", _ZDATA))
    images.inspect_png(good)
