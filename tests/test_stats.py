"""Tests for rxdata.stats: per-image figures, mergeable moments, aggregation."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import rxdata
from rxdata.errors import OptionsError, StatsError
from rxdata.metadata import PIXEL_STATS_COLUMNS
from rxdata.stats import Moments, aggregate_stats, image_stats

images_2d = arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20)))


@settings(max_examples=60, deadline=None)
@given(images_2d)
def test_image_stats_equal_numpy(img):
    mean, std, median, lo, hi = image_stats(img)
    assert mean == pytest.approx(img.mean(), rel=1e-12, abs=1e-12)
    assert std == pytest.approx(img.std(), rel=1e-9, abs=1e-9)
    assert median == np.median(img)
    assert (lo, hi) == (img.min(), img.max())


def test_image_stats_rejects_non_uint8():
    with pytest.raises(StatsError, match=r"uint8"):
        image_stats(np.zeros((2, 2), np.float32))


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(0, 30), st.just(3)), elements=st.floats(-1e3, 1e3)),
    arrays(np.float64, st.tuples(st.integers(0, 30), st.just(3)), elements=st.floats(-1e3, 1e3)),
)
def test_merge_equals_union(a, b):
    merged = Moments.of(a).merge(Moments.of(b))
    union = Moments.of(np.concatenate([a, b]))
    np.testing.assert_array_equal(merged.count, union.count)
    np.testing.assert_allclose(merged.mean, union.mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(merged.m2, union.m2, rtol=1e-7, atol=1e-6)
    if len(a) + len(b):
        np.testing.assert_allclose(merged.std, np.concatenate([a, b]).std(axis=0), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 50), st.just(2))))
def test_histogram_moments_equal_direct(x):
    hist = np.stack([np.bincount(x[:, c], minlength=256) for c in range(2)])
    h, d = Moments.from_histogram(hist), Moments.of(x)
    np.testing.assert_array_equal(h.count, d.count)
    np.testing.assert_allclose(h.mean, d.mean, rtol=1e-12)
    np.testing.assert_allclose(h.m2, d.m2, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_aggregate_of_partial_aggregates_equals_aggregate_of_union(data):
    """Pool per-image rows by plate, in two halves and then merged, or all at once; both
    equal the moments of the union of the pixels."""
    n_images = data.draw(st.integers(2, 12))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n_images, 16, 2), dtype=np.uint8)
    plates = rng.integers(1, 3, n_images)
    rows = []
    for i in range(n_images):
        for c in (1, 2):
            mean, std, *_ = image_stats(pixels[i, :, c - 1])
            rows.append(
                {
                    "experiment": "E-1",
                    "plate": int(plates[i]),
                    "well": f"B{i:02d}",
                    "channel": c,
                    "mean": mean,
                    "std": std,
                }
            )
    table = pd.DataFrame(rows)
    whole = aggregate_stats(table, "plate", pixels_per_site=16)
    cut = data.draw(st.integers(1, len(table) - 1))
    parts = [aggregate_stats(p, "plate", pixels_per_site=16) for p in (table[:cut], table[cut:])]
    merged = aggregate_stats(pd.concat(parts), "plate")  # uses the parts' count column
    np.testing.assert_allclose(merged["mean"], whole["mean"], rtol=1e-10)
    np.testing.assert_allclose(merged["std"], whole["std"], rtol=1e-8, atol=1e-8)
    for plate in np.unique(plates):
        ref = Moments.of(pixels[plates == plate].reshape(-1, 2))
        got = whole[whole["plate"] == plate].sort_values("channel")
        np.testing.assert_allclose(got["mean"], ref.mean, rtol=1e-10)
        np.testing.assert_allclose(got["std"], ref.std, rtol=1e-8, atol=1e-8)
        np.testing.assert_array_equal(got["count"], ref.count)


def test_aggregate_levels_controls_and_cell_type():
    meta = pd.DataFrame(
        {
            "id_code": ["HUVEC-01_1_B02", "HUVEC-01_1_C03", "RPE-02_1_B02"],
            "well_type": ["negative_control", "treatment", "negative_control"],
        }
    )
    ps = pd.DataFrame(
        {
            "id_code": list(meta["id_code"]),
            "experiment": ["HUVEC-01", "HUVEC-01", "RPE-02"],
            "plate": [1, 1, 1],
            "well": ["B02", "C03", "B02"],
            "channel": [1, 1, 1],
            "mean": [2.0, 4.0, 8.0],
            "std": [1.0, 1.0, 1.0],
        }
    )
    by_cell = aggregate_stats(ps, "cell_type")
    assert by_cell["cell_type"].tolist() == ["HUVEC", "RPE"]
    assert by_cell["mean"].tolist() == [3.0, 8.0]
    neg = aggregate_stats(ps, "plate", metadata=meta, controls="negative")
    assert neg["mean"].tolist() == [2.0, 8.0] and neg["n_images"].tolist() == [1, 1]
    g = aggregate_stats(ps)
    assert list(g.columns) == ["channel", "n_images", "count", "mean", "std", "m2"]
    assert g["n_images"].tolist() == [3]
    with pytest.raises(StatsError, match=r"needs the wells' well_type"):
        aggregate_stats(ps, "plate", controls="all")
    with pytest.raises(StatsError, match=r"by='row'"):
        aggregate_stats(ps, "row")
    with pytest.raises(StatsError, match=r"not in the metadata"):
        aggregate_stats(ps, "plate", metadata=meta.iloc[:1], controls="all")


# --- compute_pixel_stats -------------------------------------------------------------------


def test_compute_pixel_stats_tiny_with_metadata(tiny_kaggle, tmp_path):
    meta = rxdata.read_metadata(tiny_kaggle)
    meta = meta[meta["experiment"].isin(["HEPG2-01", "HEPG2-02"])].reset_index(drop=True)
    out_csv = tmp_path / "pixel_stats.csv"
    ps = rxdata.compute_pixel_stats(tiny_kaggle, meta, out_csv=out_csv, workers=0, progress=False)
    assert tuple(ps.columns) == PIXEL_STATS_COLUMNS
    assert len(ps) == len(meta) * 6
    row = meta.iloc[5]
    site = rxdata.load_site(
        row["dataset"],
        row["experiment"],
        row["plate"],
        row["well"],
        row["site"],
        base_path=tiny_kaggle,
    )
    got = ps[(ps["id_code"] == row["id_code"]) & (ps["site"] == row["site"])]
    np.testing.assert_allclose(got["mean"], site.reshape(-1, 6).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["std"], site.reshape(-1, 6).std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(got["median"], np.median(site.reshape(-1, 6), axis=0))
    np.testing.assert_array_equal(got["max"], site.reshape(-1, 6).max(axis=0))
    back = rxdata.metadata.read_pixel_stats(out_csv)  # the CSV is valid Kaggle pixel_stats
    np.testing.assert_allclose(back["mean"], ps["mean"], rtol=1e-15)


@pytest.mark.slow
def test_compute_pixel_stats_parallel_equals_serial(tiny_full):
    serial = rxdata.compute_pixel_stats(tiny_full, workers=0, progress=False)
    parallel = rxdata.compute_pixel_stats(tiny_full, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert len(serial) == 336 * 6


def test_compute_pixel_stats_bad_files(tiny_kaggle, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(tiny_kaggle / "train" / "RPE-01" / "Plate1", root / "train/RPE-01/Plate1")
    victim = sorted((root / "train/RPE-01/Plate1").glob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:60])
    n_files = len(list(root.rglob("*.png")))
    with pytest.raises(StatsError, match=victim.name):
        rxdata.compute_pixel_stats(root, workers=0, progress=False)
    skipped = rxdata.compute_pixel_stats(root, workers=0, progress=False, on_error="skip")
    assert len(skipped) == n_files - 1
    with pytest.warns(RuntimeWarning, match=victim.name):
        rxdata.compute_pixel_stats(root, workers=0, progress=False, on_error="warn")
    with pytest.raises(OptionsError, match=r"on_error"):
        rxdata.compute_pixel_stats(root, on_error="ignore")


@pytest.mark.real
def test_compute_pixel_stats_real_images(real_images_dir):
    ps = rxdata.compute_pixel_stats(real_images_dir, workers=0, progress=False)
    assert len(ps) == 180  # site 1: 6 channels, site 2: channels 1-4 only
    row = ps[(ps["id_code"] == "U2OS-01_3_B02") & (ps["site"] == 1) & (ps["channel"] == 2)]
    img = np.asarray(Image.open(real_images_dir / "train/U2OS-01/Plate3/B02_s1_w2.png"))
    assert row["mean"].item() == pytest.approx(img.mean(), rel=1e-12)
    assert row["std"].item() == pytest.approx(img.std(), rel=1e-10)
    assert row["median"].item() == np.median(img)
    assert (row["min"].item(), row["max"].item()) == (img.min(), img.max())
    assert set(ps.loc[ps["site"] == 2, "channel"]) == {1, 2, 3, 4}


@pytest.mark.slow
def test_compute_pixel_stats_parallel_error_names_file(tiny_kaggle, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(tiny_kaggle / "train", root / "train")
    victim = sorted((root / "train").rglob("*.png"))[100]
    victim.write_bytes(b"not a png")
    with pytest.raises(StatsError, match=victim.name):
        rxdata.compute_pixel_stats(root, workers=2, progress=False)
