"""Tests for rxdata.normalization: ChannelStats, normalize, Normalizer modes and persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxdata
from rxdata.errors import OptionsError, StatsError
from rxdata.normalization import GLOBAL_PIXEL_STATS, ChannelStats, Normalizer, standardize_image

finite = st.floats(-1e6, 1e6, allow_nan=False)
positive = st.floats(1e-3, 1e6, allow_nan=False)


def pixel_stats_table(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two experiments x 2 plates x 3 wells (B02 negative, C03 positive, D04 treatment)
    x 2 sites x 3 channels, with the metadata needed for control selection."""
    rows, meta = [], []
    types = {"B02": "negative_control", "C03": "positive_control", "D04": "treatment"}
    for exp in ("HEPG2-01", "U2OS-02"):
        for plate in (1, 2):
            for well, wtype in types.items():
                id_code = f"{exp}_{plate}_{well}"
                for site in (1, 2):
                    meta.append({"id_code": id_code, "well_type": wtype, "site": site})
                    for ch in (1, 2, 3):
                        rows.append(
                            {
                                "id_code": id_code,
                                "experiment": exp,
                                "plate": plate,
                                "well": well,
                                "site": site,
                                "channel": ch,
                                "mean": rng.uniform(1, 50),
                                "std": rng.uniform(0.5, 10),
                                "median": 0.0,
                                "min": 0,
                                "max": 255,
                            }
                        )
    return pd.DataFrame(rows), pd.DataFrame(meta)


def pooled(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Reference pooling of equal-size images, per channel, by brute force formulas."""
    out_m, out_s = [], []
    for _, part in frame.groupby("channel"):
        m = part["mean"].mean()
        v = (part["std"] ** 2 + part["mean"] ** 2).mean() - m**2
        out_m.append(m)
        out_s.append(np.sqrt(v))
    return np.array(out_m), np.array(out_s)


# --- ChannelStats --------------------------------------------------------------------------


def test_global_pixel_stats_published_values():
    assert rxdata.normalization.GLOBAL_PIXEL_STATS.channels == (1, 2, 3, 4, 5, 6)
    np.testing.assert_array_equal(
        GLOBAL_PIXEL_STATS.mean,
        [6.74696984, 14.74640167, 10.51260864, 10.45369445, 5.49959796, 9.81545561],
    )
    np.testing.assert_array_equal(
        GLOBAL_PIXEL_STATS.std,
        [7.95876312, 12.17305868, 5.86172946, 7.83451711, 4.701167, 5.43130431],
    )
    assert not GLOBAL_PIXEL_STATS.mean.flags.writeable


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(finite, positive), min_size=1, max_size=8), st.data())
def test_channel_stats_select_and_dict_round_trip(pairs, data):
    stats = ChannelStats(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert ChannelStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    chans = data.draw(st.lists(st.sampled_from(stats.channels), min_size=1, unique=True))
    sub = stats.select(chans)
    assert sub.channels == tuple(chans)
    for c, m in zip(chans, sub.mean, strict=True):
        assert m == stats.mean[c - 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"mean": [1.0], "std": [0.0]}, "must be > 0", id="zero-std"),
        pytest.param({"mean": [1.0, 2.0], "std": [1.0]}, "same number", id="lengths"),
        pytest.param({"mean": [np.nan], "std": [1.0]}, "non-finite", id="nan"),
        pytest.param({"mean": [1.0], "std": [1.0], "channels": (0,)}, "channel 0", id="ch0"),
        pytest.param(
            {"mean": [1.0] * 2, "std": [1.0] * 2, "channels": (1, 1)}, "distinct", id="dup"
        ),
    ],
)
def test_channel_stats_validation(kwargs, message):
    with pytest.raises(StatsError, match=message):
        ChannelStats(**kwargs)


def test_select_unknown_channel():
    with pytest.raises(StatsError, match=r"channel 7 is not in these statistics"):
        GLOBAL_PIXEL_STATS.select([1, 7])


# --- normalize -----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_normalize_inverts(n, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (5, 4, n), dtype=np.uint8)
    stats = GLOBAL_PIXEL_STATS.select(list(range(1, n + 1)))
    x = rxdata.normalize(image, stats)
    assert x.dtype == np.float32
    back = x * stats.std.astype(np.float32) + stats.mean.astype(np.float32)
    np.testing.assert_allclose(back, image, atol=1e-4)


def test_normalize_channel_mismatch():
    with pytest.raises(StatsError, match=r"has 2 channels .* statistics have 6"):
        rxdata.normalize(np.zeros((2, 2, 2), np.uint8), GLOBAL_PIXEL_STATS)


def test_standardize_image_zero_mean_unit_std_and_blank():
    rng = np.random.default_rng(0)
    x = standardize_image(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8))
    np.testing.assert_allclose(x.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(1, 2)), 1, atol=1e-5)
    blank = standardize_image(np.full((4, 4, 1), 9, np.uint8))
    assert np.all(blank == 0)


# --- Normalizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["experiment", "plate"])
def test_from_pixel_stats_groups_are_exact_pools(mode):
    ps, _ = pixel_stats_table(np.random.default_rng(3))
    n = Normalizer.from_pixel_stats(ps, mode=mode)
    for (exp, plate), part in ps.groupby(["experiment", "plate"]):
        ref_part = ps[ps["experiment"] == exp] if mode == "experiment" else part
        m, s = pooled(ref_part)
        got = n.stats_for(exp, plate)
        np.testing.assert_allclose(got.mean, m, rtol=1e-12)
        np.testing.assert_allclose(got.std, s, rtol=1e-10)
    m, s = pooled(ps)
    np.testing.assert_allclose(n.global_stats.mean, m, rtol=1e-12)
    np.testing.assert_allclose(n.global_stats.std, s, rtol=1e-10)


@pytest.mark.parametrize(("controls", "wells"), [("negative", ["B02"]), ("all", ["B02", "C03"])])
def test_controls_mode_uses_only_control_wells(controls, wells):
    ps, meta = pixel_stats_table(np.random.default_rng(4))
    n = Normalizer.from_pixel_stats(ps, meta, mode="controls", controls=controls)
    assert n.controls == controls
    part = ps[(ps["experiment"] == "U2OS-02") & (ps["plate"] == 2) & ps["well"].isin(wells)]
    m, s = pooled(part)
    got = n.stats_for("U2OS-02", 2)
    np.testing.assert_allclose(got.mean, m, rtol=1e-12)
    np.testing.assert_allclose(got.std, s, rtol=1e-10)


def test_controls_mode_needs_well_types():
    ps, _ = pixel_stats_table(np.random.default_rng(5))
    with pytest.raises(StatsError, match=r"needs the wells' well_type"):
        Normalizer.from_pixel_stats(ps, mode="controls")


def test_fallback_policies():
    ps, _ = pixel_stats_table(np.random.default_rng(6))
    lenient = Normalizer.from_pixel_stats(ps, mode="plate")
    assert lenient.stats_for("RPE-09", 1) == lenient.global_stats
    strict = Normalizer.from_pixel_stats(ps, mode="plate", fallback="raise")
    with pytest.raises(StatsError, match=r"no plate statistics for 'RPE-09/1'"):
        strict.stats_for("RPE-09", 1)


def test_normalizer_normalize_per_mode():
    ps, _ = pixel_stats_table(np.random.default_rng(7))
    image = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    n = Normalizer.from_pixel_stats(ps, mode="plate")
    np.testing.assert_array_equal(
        n.normalize(image, "HEPG2-01", 2), rxdata.normalize(image, n.stats_for("HEPG2-01", 2))
    )
    np.testing.assert_array_equal(
        n.normalize(image[..., 1:], "HEPG2-01", 2, channels=[2, 3]),
        rxdata.normalize(image[..., 1:], n.stats_for("HEPG2-01", 2).select([2, 3])),
    )
    with pytest.raises(StatsError, match=r"needs the site's experiment and plate"):
        n.normalize(image)
    np.testing.assert_array_equal(Normalizer.per_image().normalize(image), standardize_image(image))
    g = Normalizer.global_()
    np.testing.assert_array_equal(
        g.normalize(np.zeros((1, 1, 6), np.uint8)),
        rxdata.normalize(np.zeros((1, 1, 6), np.uint8), GLOBAL_PIXEL_STATS),
    )


def test_table_and_group_keys():
    ps, _ = pixel_stats_table(np.random.default_rng(8))
    n = Normalizer.from_pixel_stats(ps, mode="plate")
    keys, means, stds = n.table(channels=[3, 1])
    assert keys == ["HEPG2-01/1", "HEPG2-01/2", "U2OS-02/1", "U2OS-02/2"]
    assert means.shape == stds.shape == (4, 2)
    exp, plate = keys[2].split("/")
    assert n.group_key(exp, int(plate)) == keys[2]
    np.testing.assert_array_equal(means[2], n.stats_for(exp, int(plate)).select([3, 1]).mean)
    e = Normalizer.from_pixel_stats(ps, mode="experiment")
    assert e.table()[0] == ["HEPG2-01", "U2OS-02"]
    assert Normalizer.global_().table()[1].shape == (0, 6)


@pytest.mark.parametrize("mode", ["global", "experiment", "plate", "controls", "image"])
def test_save_load_round_trip_exact(tmp_path, mode):
    ps, meta = pixel_stats_table(np.random.default_rng(9))
    n = Normalizer.from_pixel_stats(ps, meta, mode=mode, fallback="raise")
    path = tmp_path / "norm.json"
    n.save(path)
    back = Normalizer.load(path)
    assert back == n
    for key in n.groups:
        np.testing.assert_array_equal(back.groups[key].mean, n.groups[key].mean)


def test_load_errors_name_file(tmp_path):
    with pytest.raises(StatsError, match=r"not found"):
        Normalizer.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(StatsError, match=r"bad.json: not an rxdata normalizer"):
        Normalizer.load(bad)
    bad.write_text("{not json")
    with pytest.raises(StatsError, match=r"bad.json: not a JSON normalizer"):
        Normalizer.load(bad)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        pytest.param(("zscore",), {}, OptionsError, "mode='zscore'", id="mode"),
        pytest.param(("global",), {"fallback": "zero"}, OptionsError, "fallback='zero'", id="fb"),
        pytest.param(("plate",), {}, OptionsError, "needs per-group statistics", id="empty"),
        pytest.param(
            ("plate", {"HEPG2-01": GLOBAL_PIXEL_STATS}),
            {},
            StatsError,
            "experiment/plate",
            id="key",
        ),
        pytest.param(
            ("plate", {"A-1/1": GLOBAL_PIXEL_STATS.select([1])}),
            {},
            StatsError,
            "same channels",
            id="channels",
        ),
    ],
)
def test_normalizer_validation(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        Normalizer(*args, **kwargs)


def test_fit_from_data_root(tiny_kaggle):
    meta = rxdata.read_metadata(tiny_kaggle)
    n = Normalizer.fit(tiny_kaggle, meta, mode="controls", workers=0, progress=False)
    assert len(n.groups) == meta.groupby(["experiment", "plate"], observed=True).ngroups
    # the statistics of a plate's negative-control well, recomputed from its pixels
    rows = meta[(meta["experiment"] == "HUVEC-01") & (meta["plate"] == 3)]
    rows = rows[rows["well_type"] == "negative_control"]
    pixels = np.stack(
        [
            rxdata.load_site(
                r.dataset, r.experiment, r.plate, r.well, r.site, base_path=tiny_kaggle
            )
            for r in rows.itertuples()
        ]
    )
    got = n.stats_for("HUVEC-01", 3)
    np.testing.assert_allclose(got.mean, pixels.reshape(-1, 6).mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(got.std, pixels.reshape(-1, 6).std(axis=0), rtol=1e-10)


def test_normalizer_groups_are_read_only():
    ps, _ = pixel_stats_table(np.random.default_rng(10))
    n = Normalizer.from_pixel_stats(ps, mode="plate")
    with pytest.raises(TypeError):
        n.groups["HEPG2-01/1"] = GLOBAL_PIXEL_STATS  # type: ignore[index]
