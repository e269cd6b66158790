"""Tests for rxdata.color: exact parity with the rxrx1-utils formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import rxdata
from rxdata.color import DEFAULT_CHANNELS, RGB_MAP, convert_tensor_to_rgb, rgb_tables
from rxdata.errors import OptionsError

# rxrx1-utils' documented colour map, restated here independently of the library.
REFERENCE_MAP = {
    1: {"rgb": np.array([19, 0, 249]), "range": [0, 51]},
    2: {"rgb": np.array([42, 255, 31]), "range": [0, 107]},
    3: {"rgb": np.array([255, 0, 25]), "range": [0, 64]},
    4: {"rgb": np.array([45, 255, 252]), "range": [0, 191]},
    5: {"rgb": np.array([250, 0, 253]), "range": [0, 89]},
    6: {"rgb": np.array([254, 255, 40]), "range": [0, 191]},
}


def reference_rgb(t, channels, vmax=255, rgb_map=REFERENCE_MAP):
    """The documented rxrx1-utils formula, written plainly: per channel, scale to the
    display range, clip at 1, multiply by the colour, truncate to int; sum; clip at 255."""
    h, w = t.shape[:2]
    total = np.zeros((h, w, 3), dtype=np.int64)
    for i, c in enumerate(channels):
        lo, hi = rgb_map[c]["range"]
        x = (t[:, :, i] / vmax) / ((hi - lo) / 255) + lo / 255
        x = np.where(x > 1.0, 1.0, x)
        contribution = np.outer(x, np.asarray(rgb_map[c]["rgb"])).reshape(h, w, 3)
        total += np.array(contribution, dtype=int)
    return np.where(total > 255, 255, total)


def test_default_map_is_rxrx1_utils():
    assert DEFAULT_CHANNELS == (1, 2, 3, 4, 5, 6)
    for c, entry in REFERENCE_MAP.items():
        assert tuple(RGB_MAP[c]["rgb"]) == tuple(entry["rgb"].tolist())
        assert tuple(RGB_MAP[c]["range"]) == tuple(entry["range"])


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    channels=st.lists(st.sampled_from(DEFAULT_CHANNELS), min_size=1, max_size=6, unique=True),
    vmax=st.sampled_from([255, 100, 1, 7.5, 1000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_parity_random_images(h, w, channels, vmax, seed):
    t = np.random.default_rng(seed).integers(0, 256, (h, w, len(channels)), dtype=np.uint8)
    got = convert_tensor_to_rgb(t, channels, vmax=vmax)
    assert got.dtype == np.uint8 and got.shape == (h, w, 3)
    np.testing.assert_array_equal(got, reference_rgb(t, channels, vmax))
    # the direct-formula path for other dtypes gives the same values
    np.testing.assert_array_equal(
        convert_tensor_to_rgb(t.astype(np.float64), channels, vmax=vmax), got
    )


def test_every_value_of_every_channel():
    t = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 6, axis=2)
    np.testing.assert_array_equal(convert_tensor_to_rgb(t), reference_rgb(t, DEFAULT_CHANNELS))
    np.testing.assert_array_equal(rgb_tables()[0, 51], [19, 0, 249])


def test_differs_from_matrix_product():
    """The per-channel truncation matters: a plain matrix product is not the reference."""
    t = np.random.default_rng(0).integers(0, 60, (64, 64, 6), dtype=np.uint8)
    colours = np.array([REFERENCE_MAP[c]["rgb"] for c in DEFAULT_CHANNELS], np.float64)
    scale = np.array([255 / REFERENCE_MAP[c]["range"][1] for c in DEFAULT_CHANNELS])
    x = np.minimum(t / 255 * scale, 1.0)
    matmul = np.minimum(x @ colours, 255).astype(np.int64)
    exact = convert_tensor_to_rgb(t)
    assert (matmul != exact).mean() > 0.5
    np.testing.assert_array_equal(exact, reference_rgb(t, DEFAULT_CHANNELS))


def test_batches_match_per_image():
    batch = np.random.default_rng(1).integers(0, 256, (3, 5, 6, 6), dtype=np.uint8)
    out = convert_tensor_to_rgb(batch)
    for i in range(3):
        np.testing.assert_array_equal(out[i], reference_rgb(batch[i], DEFAULT_CHANNELS))


@settings(max_examples=30, deadline=None)
@given(
    rgb=st.tuples(*[st.integers(0, 255)] * 3),
    lo=st.integers(0, 100),
    width=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_custom_maps(rgb, lo, width, seed):
    custom = {
        2: {"rgb": np.array(rgb), "range": [lo, lo + width]},
        7: {"rgb": np.array(rgb[::-1]), "range": [0, width]},
    }
    t = np.random.default_rng(seed).integers(0, 256, (6, 7, 2), dtype=np.uint8)
    np.testing.assert_array_equal(
        convert_tensor_to_rgb(t, (7, 2), rgb_map=custom), reference_rgb(t, (7, 2), 255, custom)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"channels": (1, 2)}, "has 6 channels", id="count"),
        pytest.param({"channels": (1, 2, 3, 4, 5, 9)}, "channel 9 has no entry", id="unknown"),
        pytest.param({"vmax": 0}, "vmax=0", id="vmax0"),
        pytest.param({"vmax": "x"}, "vmax='x' is not a number", id="vmax-str"),
        pytest.param(
            {"rgb_map": {**RGB_MAP, 3: {"rgb": (1, 2), "range": (0, 9)}}},
            "three numbers",
            id="rgb-len",
        ),
        pytest.param(
            {"rgb_map": {**RGB_MAP, 3: {"rgb": (1, 2, 300), "range": (0, 9)}}},
            "0..255",
            id="rgb-range",
        ),
        pytest.param(
            {"rgb_map": {**RGB_MAP, 4: {"rgb": (1, 2, 3), "range": (9, 9)}}},
            "lo < hi",
            id="empty-range",
        ),
        pytest.param({"rgb_map": {**RGB_MAP, 5: {"colour": 1}}}, "expected", id="keys"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(OptionsError, match=message):
        convert_tensor_to_rgb(np.zeros((2, 2, 6), np.uint8), **kwargs)


def test_bad_array():
    with pytest.raises(OptionsError, match=r"shape"):
        convert_tensor_to_rgb(np.zeros((2, 6), np.uint8))
    with pytest.raises(OptionsError, match=r"real-valued"):
        convert_tensor_to_rgb(np.zeros((2, 2, 6), dtype=complex))


@pytest.mark.real
def test_parity_on_real_images(real_images_dir):
    folder = real_images_dir / "train" / "HUVEC-01" / "Plate2"
    site = np.stack([np.asarray(Image.open(folder / f"B02_s1_w{c}.png")) for c in range(1, 7)], -1)
    np.testing.assert_array_equal(
        rxdata.convert_tensor_to_rgb(site), reference_rgb(site, range(1, 7))
    )
    sub = site[..., [2, 0]]
    np.testing.assert_array_equal(convert_tensor_to_rgb(sub, (3, 1)), reference_rgb(sub, (3, 1)))


def test_wide_lanes_and_multiple_blocks():
    """Maps whose colour sums exceed 10 bits use 16-bit lanes; images larger than one
    block (32,768 pixels) are processed block by block: both stay exact."""
    white = {c: {"rgb": np.array([255, 255, 255]), "range": [0, 40 + c]} for c in range(1, 7)}
    t = np.random.default_rng(5).integers(0, 256, (300, 301, 6), dtype=np.uint8)
    np.testing.assert_array_equal(
        convert_tensor_to_rgb(t, rgb_map=white), reference_rgb(t, DEFAULT_CHANNELS, 255, white)
    )
    np.testing.assert_array_equal(convert_tensor_to_rgb(t), reference_rgb(t, DEFAULT_CHANNELS))
