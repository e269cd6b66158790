"""Tests for rxdata.naming: the one owner of keys, experiment spellings and paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxdata import naming
from rxdata.errors import ParseError
from rxdata.naming import (
    ImageKey,
    SiteKey,
    WellKey,
    experiment_spellings,
    image_path,
    normalize_experiment,
    parse_experiment,
    parse_id_code,
    parse_image_path,
    parse_site_id,
)

cell_types = st.sampled_from(["HEPG2", "HUVEC", "RPE", "U2OS"])
batches = st.integers(1, 99)
wells = st.builds(
    lambda r, c: f"{r}{c:02d}", st.sampled_from(list("ABCDEFGHIJKLMNOP")), st.integers(1, 24)
)
plates = st.integers(1, 4)
sites = st.integers(1, 2)
channels = st.integers(1, 6)
datasets = st.sampled_from(["train", "test"])


def spell(cell_type: str, batch: int, padded: bool) -> str:
    return f"{cell_type}-{batch:02d}" if padded else f"{cell_type}-{batch}"


# ------------------------------------------------------------------ round-trip properties
@given(datasets, cell_types, batches, st.booleans(), plates, wells, sites, channels)
def test_kaggle_path_key_path_round_trip(ds, cell_type, batch, padded, plate, well, site, ch):
    exp = spell(cell_type, batch, padded)
    path = image_path(ds, exp, plate, well, site, ch)
    key = parse_image_path(path)
    assert key.layout == "kaggle" and key.dataset == ds and key.experiment == exp
    assert key.relative_path == path == key.path("kaggle")
    assert parse_image_path(f"gs://bucket/x/{path}") == key


@given(cell_types, batches, st.booleans(), plates, wells, sites, channels)
def test_full_path_key_path_round_trip(cell_type, batch, padded, plate, well, site, ch):
    exp = spell(cell_type, batch, padded)
    path = image_path(None, exp, plate, well, site, ch, layout="full")
    key = parse_image_path(path)
    assert key.layout == "full" and key.dataset is None
    assert key.relative_path == path == key.path("full")
    # and across layouts: the same image in the Kaggle layout parses to the same site
    assert parse_image_path(key.path("kaggle", dataset="test")).site_key == key.site_key


@given(datasets, cell_types, batches, st.booleans(), plates, wells, sites)
def test_site_image_paths_are_image_path_for_each_channel(
    ds, cell_type, batch, padded, plate, well, site
):
    exp = spell(cell_type, batch, padded)
    for layout, dataset in (("kaggle", ds), ("full", None)):
        want = tuple(
            image_path(dataset, exp, plate, well, site, ch, layout) for ch in naming.CHANNELS
        )
        assert naming.site_image_paths(dataset, exp, plate, well, site, layout) == want
    with pytest.raises(ParseError):
        naming.site_image_paths(ds, exp, plate, well, 9)


@given(cell_types, batches, st.booleans(), plates, wells, sites)
def test_id_code_and_site_id_round_trip(cell_type, batch, padded, plate, well, site):
    exp = spell(cell_type, batch, padded)
    id_code = f"{exp}_{plate}_{well}"
    w = parse_id_code(id_code)
    assert w.id_code == id_code and parse_id_code(w.id_code) == w
    s = parse_site_id(f"{id_code}_{site}")
    assert s.site_id == f"{id_code}_{site}" and parse_site_id(s.site_id) == s
    assert s.well_key == w and w.at_site(site) == s


@given(cell_types, batches, plates, wells, sites, channels)
def test_both_spellings_are_one_key(cell_type, batch, plate, well, site, ch):
    short, padded = f"{cell_type}-{batch}", f"{cell_type}-{batch:02d}"
    assert normalize_experiment(short) == normalize_experiment(padded) == padded
    assert parse_experiment(short) == parse_experiment(padded) == (cell_type, batch)
    assert len({SiteKey(short, plate, well, site), SiteKey(padded, plate, well, site)}) == 1
    assert len({WellKey(short, plate, well), parse_id_code(f"{padded}_{plate}_{well}")}) == 1
    a = ImageKey("train", short, plate, well, site, ch)
    assert a == ImageKey("train", padded, plate, well, site, ch)
    assert (
        set(experiment_spellings(short))
        == set(experiment_spellings(padded))
        == {
            short,
            padded,
        }
    )


@pytest.mark.parametrize(
    "text",
    ["HUVEC", "huvec-1", "HUVEC-", "HUVEC_01", "-1", "HUVEC-1a", "HUVEC-12345", ""],
)
def test_bad_experiment_spellings_raise(text):
    with pytest.raises(ParseError, match="expected"):
        normalize_experiment(text)
    with pytest.raises(ParseError):
        experiment_spellings(text)


def test_image_path_rejects_unknown_layout_and_missing_dataset():
    with pytest.raises(ParseError, match="layout 'zip'"):
        image_path("train", "HUVEC-01", 1, "B02", 1, 1, layout="zip")  # type: ignore[arg-type]
    with pytest.raises(ParseError, match="needs dataset"):
        image_path(None, "HUVEC-01", 1, "B02", 1, 1, layout="kaggle")


def test_naming_never_touches_the_disk():
    """Names are pure: the disk-touching half (roots) lives in rxdata.roots."""
    import ast

    tree = ast.parse(Path(naming.__file__).read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "_io" not in imported and "rxdata._io" not in modules
    assert not {"find_root", "DataRoot", "detect_layout"} & set(dir(naming))
