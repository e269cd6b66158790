from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rxdata
from rxdata.errors import MetadataError, ParseError, RxDataError
from rxdata.labels import from_rerelease_names, rerelease_names, to_rerelease_names
from rxdata.metadata import (
    METADATA_COLUMNS,
    PIXEL_STATS_COLUMNS,
    read_metadata,
    read_pixel_stats,
    scan_images,
)
from rxdata.naming import (
    NEGATIVE_CONTROL_ID,
    NEGATIVE_CONTROL_WELL,
    NUM_CLASSES,
    POSITIVE_CONTROL_WELLS,
    ImageKey,
    SiteKey,
    WellKey,
    image_path,
    normalize_experiment,
    parse_experiment,
    parse_id_code,
    parse_image_path,
    parse_site_id,
)
from rxdata.roots import detect_layout

# ----------------------------------------------------------------------------- strategies
cell_types = st.sampled_from(["HEPG2", "HUVEC", "RPE", "U2OS"])
batches = st.integers(1, 99)
pads = st.booleans()
experiments = st.builds(
    lambda ct, b, pad: f"{ct}-{b:02d}" if pad else f"{ct}-{b}", cell_types, batches, pads
)
wells = st.builds(
    lambda r, c: f"{r}{c:02d}", st.sampled_from(list("ABCDEFGHIJKLMNOP")), st.integers(1, 24)
)
plates = st.integers(1, 4)
sites = st.integers(1, 2)
channels = st.integers(1, 6)
segments = st.from_regex(r"[A-Za-z0-9_.-]{1,10}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
prefixes = st.one_of(
    st.sampled_from(["", "/", "./", "gs://bucket/", "s3://b/images/x/", "gs://b/train/"]),
    st.builds(
        lambda root, parts: root + "".join(p + "/" for p in parts),
        st.sampled_from(["", "/", "gs://bucket/", "C:/"]),
        st.lists(segments, min_size=1, max_size=4),
    ),
)


# ----------------------------------------------------------------------------- parsers
@given(prefixes, st.sampled_from(["train", "test"]), experiments, plates, wells, sites, channels)
def test_kaggle_path_round_trip(prefix, dataset, experiment, plate, well, site, channel):
    rel = f"{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png"
    key = parse_image_path(prefix + rel)
    assert (key.dataset, key.experiment, key.plate, key.well, key.site, key.channel) == (
        dataset,
        experiment,
        plate,
        well,
        site,
        channel,
    )
    assert key.layout == "kaggle"
    assert key.relative_path == rel
    assert prefix + key.relative_path == prefix + rel
    assert image_path(dataset, experiment, plate, well, site, channel) == rel
    assert parse_image_path(key.relative_path) == key


@given(prefixes, experiments, plates, wells, sites, channels, st.booleans())
def test_full_and_bare_path_round_trip(prefix, experiment, plate, well, site, channel, full):
    tail = f"{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png"
    rel = f"images/{tail}" if full else tail
    # a bare path directly under a train/, test/ or images/ folder is that layout
    assume(full or not prefix.rstrip("/").endswith(("train", "test", "images")))
    key = parse_image_path(prefix + rel)
    assert key.dataset is None
    assert key.layout == ("full" if full else None)
    assert key.relative_path == rel
    assert str(key) == rel
    if full:
        assert image_path(None, experiment, plate, well, site, channel, layout="full") == rel
    assert key.path("kaggle", dataset="test") == f"test/{tail}"


@given(experiments, plates, wells, sites)
def test_id_code_and_site_id_round_trip(experiment, plate, well, site):
    id_code = f"{experiment}_{plate}_{well}"
    w = parse_id_code(id_code)
    assert w.id_code == id_code
    s = parse_site_id(f"{id_code}_{site}")
    assert s.site_id == f"{id_code}_{site}"
    assert s.well_key == w
    assert w.at_site(site) == s
    assert (s.cell_type, s.batch) == parse_experiment(experiment)
    assert s.row == well[0] and s.column == int(well[1:])


@given(cell_types, batches, plates, wells, sites)
def test_padding_does_not_change_identity(cell_type, batch, plate, well, site):
    short = SiteKey(f"{cell_type}-{batch}", plate, well, site)
    padded = SiteKey(f"{cell_type}-{batch:03d}", plate, well, site)
    assert short == padded and hash(short) == hash(padded)
    assert short.experiment == f"{cell_type}-{batch}"  # kept as given
    assert normalize_experiment(short.experiment) == f"{cell_type}-{batch:02d}"
    # both spellings are one key: a set of the two holds one element (was `assert len(...)`,
    # true for any non-empty set)
    assert (
        len({WellKey(short.experiment, plate, well), WellKey(padded.experiment, plate, well)}) == 1
    )


def test_keys_differ_when_meaning_differs():
    a = parse_image_path("train/HUVEC-1/Plate1/B02_s1_w1.png")
    assert a == parse_image_path("x/train/HUVEC-01/Plate1/B02_s1_w1.png")
    assert a != parse_image_path("test/HUVEC-1/Plate1/B02_s1_w1.png")
    assert a != parse_image_path("train/HUVEC-1/Plate1/B02_s1_w2.png")
    assert a.site_key != parse_site_id("HUVEC-1_1_B02_2")
    assert WellKey("HUVEC-1", 1, "B02") != SiteKey("HUVEC-1", 1, "B02", 1)


def test_image_key_is_frozen_and_derives_fields():
    key = parse_image_path("gs://bucket/rxrx1/train/HEPG2-07/Plate4/O23_s2_w6.png")
    assert (key.cell_type, key.batch, key.row, key.column) == ("HEPG2", 7, "O", 23)
    assert key.id_code == "HEPG2-07_4_O23" and key.site_id == "HEPG2-07_4_O23_2"
    with pytest.raises(AttributeError):
        key.plate = 2  # type: ignore[misc]


def test_nested_dataset_names_in_prefix_are_not_confused():
    key = parse_image_path("/data/train/images/U2OS-01/Plate1/B02_s2_w3.png")
    assert key.layout == "full" and key.dataset is None
    key = parse_image_path("C:\\data\\test\\U2OS-01\\Plate1\\B02_s2_w3.png")
    assert key.dataset == "test"


@pytest.mark.parametrize(
    "path",
    [
        "train/U2OS-01/Plate5/B02_s1_w1.png",  # plate outside 1-4
        "train/U2OS-01/Plate1/B02_s3_w1.png",  # site outside 1-2
        "train/U2OS-01/Plate1/B02_s1_w7.png",  # channel outside 1-6
        "train/U2OS-01/Plate1/B25_s1_w1.png",  # column outside 1-24
        "train/U2OS-01/Plate1/B2_s1_w1.png",  # column not 2 digits
        "train/U2OS-01/Plate1/B02_s1_w1.jpg",
        "train/U2OS01/Plate1/B02_s1_w1.png",
        "train/U2OS-01/B02_s1_w1.png",
        "",
    ],
    ids=["plate", "site", "channel", "column", "short-well", "jpg", "exp", "no-plate", "empty"],
)
def test_bad_paths_raise_parse_error(path):
    with pytest.raises(ParseError) as err:
        parse_image_path(path)
    assert repr(path) in str(err.value) or path in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RxDataError)


@pytest.mark.parametrize(
    "text", ["HEPG2-01_1", "HEPG2-01_5_B03", "HEPG2_1_B03", "HEPG2-01_1_Q03", "", "x_1_B03_1"]
)
def test_bad_id_codes(text):
    with pytest.raises(ParseError, match="id_code"):
        parse_id_code(text)


@pytest.mark.parametrize("text", ["HEPG2-01_1_B03", "HEPG2-01_1_B03_3", "HEPG2-01_1_B03_0"])
def test_bad_site_ids(text):
    with pytest.raises(ParseError):
        parse_site_id(text)


def test_key_constructors_validate():
    with pytest.raises(ParseError, match="plate"):
        SiteKey("HEPG2-01", 0, "B02", 1)
    with pytest.raises(ParseError, match="site"):
        SiteKey("HEPG2-01", 1, "B02", True)  # type: ignore[arg-type]
    with pytest.raises(ParseError, match="dataset"):
        ImageKey("val", "HEPG2-01", 1, "B02", 1, 1)
    with pytest.raises(ParseError, match="Kaggle layout needs dataset"):
        image_path(None, "HEPG2-01", 1, "B02", 1, 1)
    with pytest.raises(ParseError, match="layout"):
        image_path("train", "HEPG2-01", 1, "B02", 1, 1, layout="zarr")  # type: ignore[arg-type]


def test_public_names_are_exported():
    assert rxdata.parse_id_code is parse_id_code
    assert rxdata.naming.WellKey is WellKey
    assert not hasattr(rxdata, "WellKey") and not hasattr(rxdata.metadata, "WellKey")
    assert rxdata.read_metadata is read_metadata


def test_detect_layout(tmp_path):
    with pytest.raises(MetadataError, match="no RxRx1 layout"):
        detect_layout(tmp_path)
    (tmp_path / "train").mkdir()
    assert detect_layout(tmp_path) == "kaggle"
    (tmp_path / "images").mkdir()
    with pytest.raises(MetadataError, match="ambiguous data root"):
        detect_layout(tmp_path)  # both layouts side by side: refuse to guess
    (tmp_path / "train").rmdir()
    assert detect_layout(tmp_path) == "full"


# ----------------------------------------------------------------------------- real CSVs
@pytest.mark.real
def test_read_real_kaggle_metadata(real_metadata_dir):
    start = time.perf_counter()
    md = read_metadata(real_metadata_dir)
    elapsed = time.perf_counter() - start
    assert elapsed < 10  # ~0.7 s on an idle core; generous for a loaded CI machine
    assert list(md.columns) == list(METADATA_COLUMNS)
    assert {c: str(t) for c, t in md.dtypes.items()} == METADATA_COLUMNS
    assert len(md) == 125_510
    assert md["experiment"].nunique() == 51
    assert md["site_id"].is_unique
    assert md.index.equals(pd.RangeIndex(len(md)))
    per_dataset = md.groupby("dataset", observed=True)["experiment"].nunique().to_dict()
    assert per_dataset == {"train": 33, "test": 18}
    train_treat = md[(md.dataset == "train") & (md.well_type == "treatment")]
    assert train_treat.sirna_id.min() == 0 and train_treat.sirna_id.max() == 1107
    test_treat = md[(md.dataset == "test") & (md.well_type == "treatment")]
    assert test_treat.sirna_id.isna().all() and test_treat.sirna.isna().all()
    neg = md[md.well_type == "negative_control"]
    assert (neg.sirna_id == NEGATIVE_CONTROL_ID).all()
    # every one of the 204 plates has its untreated well in B02 (a few plates have more)
    assert neg[neg.well == NEGATIVE_CONTROL_WELL].groupby(["experiment", "plate"]).ngroups == 204
    pos = md[md.well_type == "positive_control"]
    assert pos.sirna_id.between(1108, 1137).all()
    assert set(POSITIVE_CONTROL_WELLS) <= set(pos.well)
    # sort order of the contract
    order = md.sort_values(["dataset", "experiment", "plate", "well", "site"], kind="stable")
    assert order.index.equals(md.index)
    assert md.loc[0, "site_id"] == "HEPG2-01_1_B02_1"
    assert md.memory_usage(deep=True).sum() < 60e6


@pytest.mark.real
def test_read_real_without_controls(real_metadata_dir):
    md = read_metadata(real_metadata_dir, include_controls=False)
    assert (md.well_type == "treatment").all()
    assert len(md) == 2 * (36_515 + 19_897)
    assert md.index.equals(pd.RangeIndex(len(md)))


#: The wells the Kaggle re-release adds to the competition's train.csv and test.csv.
ADDED_TRAIN_WELLS = ("HUVEC-06_1_B18", "RPE-04_3_E04")
ADDED_TEST_WELLS = ("HUVEC-18_3_D23", "RPE-09_2_J16")


def _well_row(id_code: str) -> dict[str, str]:
    experiment, plate, well = id_code.split("_")
    return {"id_code": id_code, "experiment": experiment, "plate": plate, "well": well}


@pytest.mark.real
def test_read_real_rerelease(real_metadata_dir, real_root, tmp_path):
    # A re-release-style folder built from the real competition CSVs and the real map:
    # each label becomes the re-release's name for it, and the 4 added wells are appended.
    mapping = pd.read_csv(real_root / "sirna_rerelease_map.csv", dtype=str)
    name_of = dict(zip(mapping.sirna_id, mapping.rerelease_sirna, strict=True))
    for name in ("train.csv", "test.csv", "train_controls.csv", "test_controls.csv"):
        df = pd.read_csv(real_metadata_dir / name, dtype=str)
        if "sirna" in df:
            df["sirna"] = df.sirna.map(name_of)
            assert df.sirna.notna().all()
        if name == "train.csv":
            added = [
                {**_well_row(w), "sirna": n}
                for w, n in zip(ADDED_TRAIN_WELLS, ("sirna_1", "sirna_2"), strict=True)
            ]
            df = pd.concat([df, pd.DataFrame(added)], ignore_index=True)
        if name == "test.csv":
            df = pd.concat([df, pd.DataFrame([_well_row(w) for w in ADDED_TEST_WELLS])])
        df.to_csv(tmp_path / name, index=False)
    rerelease = read_metadata(tmp_path)
    competition = read_metadata(real_metadata_dir)
    assert len(rerelease) == len(competition) + 8
    assert {c: str(t) for c, t in rerelease.dtypes.items()} == METADATA_COLUMNS
    # every site has exactly the competition's class id; the names are kept in sirna
    same = rerelease.set_index("site_id").loc[competition.site_id].reset_index()
    pd.testing.assert_series_equal(same.sirna_id, competition.sirna_id)
    pd.testing.assert_series_equal(same.well_type, competition.well_type)
    labelled = competition.sirna_id.notna().to_numpy()
    expected_names = competition.sirna_id[labelled].astype(int).astype(str).map(name_of)
    assert (same.sirna[labelled].to_numpy() == expected_names.to_numpy()).all()
    assert (same.sirna[labelled] != "sirna_" + same.sirna_id[labelled].astype(str)).mean() > 0.99
    # the positive control the issue names, and the untreated wells
    assert set(rerelease.sirna_id[rerelease.sirna == "sirna_852"]) == {1109}
    assert set(rerelease.sirna[rerelease.sirna_id == 1138]) == {"UNTREATED"}
    # the added wells are read like any other
    added = rerelease[rerelease.id_code.isin(ADDED_TRAIN_WELLS + ADDED_TEST_WELLS)]
    assert len(added) == 8 and set(added.site) == {1, 2}
    train = added[added.dataset == "train"].drop_duplicates("id_code")
    assert train.set_index("id_code").sirna_id.to_dict() == {
        w: int(mapping.sirna_id[mapping.rerelease_sirna == n].iloc[0])
        for w, n in zip(ADDED_TRAIN_WELLS, ("sirna_1", "sirna_2"), strict=True)
    }
    test = added[added.dataset == "test"]
    assert test.sirna_id.isna().all() and (test.well_type == "treatment").all()
    order = rerelease.sort_values(["dataset", "experiment", "plate", "well", "site"], kind="stable")
    assert order.index.equals(rerelease.index)


@pytest.mark.real
def test_packaged_rerelease_map_is_the_shared_one(real_root):
    shared = pd.read_csv(real_root / "sirna_rerelease_map.csv")
    names = rerelease_names()
    assert [names[i] for i in shared.sirna_id] == shared.rerelease_sirna.tolist()


def test_rerelease_names():
    names = rerelease_names()
    assert len(names) == NUM_CLASSES == len(set(names))
    assert names[0] == "sirna_332" and names[NEGATIVE_CONTROL_ID] == "UNTREATED"
    assert names[1109] == "sirna_852"  # a positive control in the competition's numbering
    # the re-release's numbering is not the competition's: few names are "sirna_{id}"
    assert sum(n == f"sirna_{i}" for i, n in enumerate(names)) < 10
    assert from_rerelease_names(to_rerelease_names(range(NUM_CLASSES))).tolist() == list(
        range(NUM_CLASSES)
    )


@given(st.lists(st.integers(0, NUM_CLASSES - 1), max_size=50))
def test_rerelease_ids_names_ids(ids):
    names = to_rerelease_names(ids)
    assert all(n == "UNTREATED" or n.startswith("sirna_") for n in names)
    assert from_rerelease_names(names).tolist() == ids


@given(st.lists(st.sampled_from(rerelease_names()), max_size=50))
def test_rerelease_names_ids_names(names):
    assert to_rerelease_names(from_rerelease_names(names)).tolist() == names


@given(
    st.one_of(
        st.integers(NUM_CLASSES, 10**6).map(lambda n: f"sirna_{n}"),
        st.text(max_size=12).filter(lambda t: t not in set(rerelease_names())),
        st.integers(0, 1138),
        st.none(),
    )
)
def test_from_rerelease_names_refuses_other_values(value):
    with pytest.raises(ParseError, match="expected re-release names"):
        from_rerelease_names(["sirna_332", value])


@pytest.mark.parametrize("value", [-1, 1139, 2.0, True, "5", None])
def test_to_rerelease_names_refuses_other_values(value):
    with pytest.raises(ParseError, match=r"expected integers in 0\.\.1138"):
        to_rerelease_names([0, value])


# ----------------------------------------------------------------------------- bad CSVs
def _kaggle(tmp_path: Path, train: str, controls: str | None = None) -> Path:
    (tmp_path / "train.csv").write_text("id_code,experiment,plate,well,sirna\n" + train)
    if controls is not None:
        (tmp_path / "train_controls.csv").write_text(
            "id_code,experiment,plate,well,sirna,well_type\n" + controls
        )
    return tmp_path


GOOD = "HEPG2-01_1_B03,HEPG2-01,1,B03,513\n"


@pytest.mark.parametrize(
    ("train", "controls", "message"),
    [
        (GOOD + "HEPG2-01_5_B04,HEPG2-01,5,B04,1\n", None, r"train.csv: bad plate line 3: '5'"),
        (GOOD + "HEPG2-01_1_B04,HEPG2-01,1,B04,1139\n", None, r"line 3: '1139'.*0\.\.1138"),
        (GOOD + "HEPG2-01_1_B04,HEPG2-01,1,B04,sirna_x\n", None, r"bad sirna line 3"),
        (GOOD + "HEPG2-01_1_B05,HEPG2-01,1,B04,7\n", None, r"bad id_code line 3"),
        (GOOD + "HEPG2-01_1_Z04,HEPG2-01,1,Z04,7\n", None, r"bad well line 3"),
        (GOOD + "HEPG201_1_B04,HEPG201,1,B04,7\n", None, r"bad experiment line 3"),
        (GOOD + GOOD, None, r"train.csv line 3: duplicate id_code 'HEPG2-01_1_B03'.*line 2"),
        (
            GOOD,
            "HEPG2-01_1_B03,HEPG2-01,1,B03,1138,negative_control\n",
            r"train_controls.csv line 2: duplicate id_code.*train.csv line 2",
        ),
        (
            GOOD,
            "HEPG2-01_1_B02,HEPG2-01,1,B02,1138,positive_control\n",
            r"bad well_type line 2",
        ),
        (GOOD, "HEPG2-01_1_B02,HEPG2-01,1,B02,1138,empty\n", r"bad well_type line 2: 'empty'"),
    ],
    ids=[
        "plate",
        "label-range",
        "label-text",
        "id-mismatch",
        "well",
        "experiment",
        "duplicate",
        "duplicate-across-files",
        "type-mismatch",
        "unknown-type",
    ],
)
def test_bad_kaggle_csvs(tmp_path, train, controls, message):
    with pytest.raises(MetadataError, match=message):
        read_metadata(_kaggle(tmp_path, train, controls), datasets=("train",))


def test_missing_columns_and_files(tmp_path):
    (tmp_path / "train.csv").write_text("id_code,experiment,well\nHEPG2-01_1_B03,HEPG2-01,B03\n")
    with pytest.raises(MetadataError, match=r"missing column\(s\) \['plate', 'sirna'\]"):
        read_metadata(tmp_path, datasets=("train",))
    with pytest.raises(MetadataError, match="no such metadata"):
        read_metadata(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MetadataError, match="no Kaggle CSVs"):
        read_metadata(empty)
    with pytest.raises(MetadataError, match="folder holding the Kaggle CSVs"):
        read_metadata(tmp_path / "train.csv")


def test_read_metadata_from_tiny_is_the_contract(tiny_kaggle, tiny_full):
    a = read_metadata(tiny_kaggle)
    b = read_metadata(tiny_full)
    assert {c: str(t) for c, t in a.dtypes.items()} == METADATA_COLUMNS
    cols = [c for c in METADATA_COLUMNS if c != "sirna"]
    test_treat = (b.dataset == "test") & (b.well_type == "treatment")
    pd.testing.assert_frame_equal(a.loc[~test_treat, cols], b.loc[~test_treat, cols])
    assert a.loc[test_treat, "sirna_id"].isna().all()
    assert b.loc[test_treat, "sirna_id"].notna().all()  # the full release labels test wells
    assert read_metadata(tiny_full / "metadata.csv").equals(b)


def test_full_release_errors(tiny_full, tmp_path):
    df = pd.read_csv(tiny_full / "metadata.csv", dtype=str)
    bad = df.copy()
    bad.loc[5, "site"] = "3"
    bad.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(MetadataError, match=r"bad site line 7: '3'"):
        read_metadata(tmp_path)
    bad = pd.concat([df, df.iloc[[4]]])
    bad.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(MetadataError, match="duplicate site_id"):
        read_metadata(tmp_path)
    bad = df.copy()
    bad.loc[2, "cell_type"] = "RPE"
    bad.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(MetadataError, match=r"bad cell_type line 4: 'RPE'"):
        read_metadata(tmp_path)
    bad = df.drop(columns=["well_type"])
    bad.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(MetadataError, match="missing column"):
        read_metadata(tmp_path)


TRAIN_HEADER = "id_code,experiment,plate,well,sirna\n"
TEST_CSV = "id_code,experiment,plate,well\nHEPG2-02_1_B03,HEPG2-02,1,B03\n"
CONTROLS_HEADER = "id_code,experiment,plate,well,sirna,well_type\n"


def _folder(tmp_path: Path, **files: str) -> Path:
    """Write Kaggle CSVs (``train="..."`` -> train.csv; ``train_controls=...``)."""
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
    return tmp_path


def test_a_kaggle_folder_needs_train_and_test(tmp_path):
    _folder(tmp_path, train=TRAIN_HEADER + GOOD)
    with pytest.raises(MetadataError, match=r"missing test.csv;.*pass datasets=\('train',\)"):
        read_metadata(tmp_path)
    assert set(read_metadata(tmp_path, datasets=("train",)).dataset) == {"train"}
    (tmp_path / "train.csv").unlink()
    _folder(tmp_path, test=TEST_CSV)
    with pytest.raises(MetadataError, match=r"missing train.csv;.*pass datasets=\('test',\)"):
        read_metadata(tmp_path)
    assert set(read_metadata(tmp_path, datasets="test").dataset) == {"test"}
    _folder(tmp_path, train=TRAIN_HEADER + GOOD)
    both = read_metadata(tmp_path)
    assert both.dataset.astype(str).tolist() == ["train"] * 2 + ["test"] * 2
    pd.testing.assert_frame_equal(
        read_metadata(tmp_path, datasets=["test", "train"]), both
    )  # order does not matter


@pytest.mark.parametrize("datasets", [(), ("val",), ("train", "train"), "all"])
def test_datasets_argument_is_checked(tmp_path, datasets):
    _folder(tmp_path, train=TRAIN_HEADER + GOOD, test=TEST_CSV)
    with pytest.raises(MetadataError, match=r"datasets=.*expected a non-empty subset"):
        read_metadata(tmp_path, datasets=datasets)


def test_datasets_argument_on_the_full_release(tiny_full):
    everything = read_metadata(tiny_full)
    train = read_metadata(tiny_full, datasets=("train",))
    expected = everything[everything.dataset == "train"].reset_index(drop=True)
    pd.testing.assert_frame_equal(train, expected, check_categorical=False)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"train": "id_code,experiment,plate,well,siRNA\n" + GOOD},
            r"train.csv: missing column\(s\) \['sirna'\]; found .*'siRNA'",
        ),
        (
            {
                "train": TRAIN_HEADER,
                "train_controls": "id_code,experiment,plate,well,label,well_type\n",
            },
            r"train_controls.csv: missing column\(s\) \['sirna'\]",
        ),
        (
            {"train": TRAIN_HEADER + GOOD + "HEPG2-01_1_B04,HEPG2-01,1,B04,\n"},
            r"train.csv: bad sirna line 3: \(empty\); expected a label on every row",
        ),
        (
            {
                "train": TRAIN_HEADER,
                "train_controls": CONTROLS_HEADER
                + "HEPG2-01_1_B02,HEPG2-01,1,B02,,negative_control\n",
            },
            r"train_controls.csv: bad sirna line 2: \(empty\)",
        ),
        (
            {
                "train": TRAIN_HEADER
                + "HUVEC-1_1_B03,HUVEC-1,1,B03,1\nHUVEC-01_1_B03,HUVEC-01,1,B03,2\n"
            },
            r"train.csv line 3: duplicate id_code 'HUVEC-01_1_B03' \(first seen in .*train.csv "
            r"line 2\) \(spelled 'HUVEC-1_1_B03' there",
        ),
        (
            {
                "train": TRAIN_HEADER + "HUVEC-01_1_B03,HUVEC-01,1,B03,1\n",
                "train_controls": CONTROLS_HEADER
                + "HUVEC-1_1_B03,HUVEC-1,1,B03,1138,negative_control\n",
            },
            r"train_controls.csv line 2: duplicate id_code 'HUVEC-1_1_B03'.*train.csv line 2",
        ),
        (
            # not one well twice, but one experiment split in two for splits and statistics
            {
                "train": TRAIN_HEADER
                + "HUVEC-1_1_B03,HUVEC-1,1,B03,1\n"
                + "HUVEC-01_1_B04,HUVEC-01,1,B04,2\n"
            },
            r"experiment HUVEC-01 is spelled two ways: 'HUVEC-1' \(.*train.csv line 2\), "
            r"'HUVEC-01' \(.*train.csv line 3\)",
        ),
        (
            {"train": TRAIN_HEADER + GOOD + "FOO-01_1_B03,FOO-01,1,B03,5\n"},
            r"train.csv: bad experiment line 3: 'FOO-01'; "
            r"expected .*'HEPG2', 'HUVEC', 'RPE', 'U2OS'",
        ),
        (
            {"train": TRAIN_HEADER + GOOD + "HEPG2-01_1_B04,HEPG2-01,1,B04,5,x\n"},
            r"train.csv line 3: 6 fields, expected 5",
        ),
        (
            # every row one field too many: pandas would silently take id_code as the index
            {"train": TRAIN_HEADER + "HEPG2-01_1_B03,HEPG2-01,1,B03,513,x\n" * 2},
            r"train.csv line 2: 6 fields, expected 5 .* \(2 such rows\)",
        ),
        (
            {"train": TRAIN_HEADER + GOOD + "HEPG2-01_1_B04,HEPG2-01,1,B04\n"},
            r"train.csv line 3: 4 fields, expected 5",
        ),
        (
            {"train": TRAIN_HEADER + GOOD + "HEPG2-01_1_B04,HEPG2-01,1,B04,sirna_4\n"},
            r"train.csv: mixes label styles: line 2 '513' is a competition class id, line 3 "
            r"'sirna_4' a re-release name",
        ),
        (
            {
                "train": TRAIN_HEADER + GOOD,
                "train_controls": CONTROLS_HEADER
                + "HEPG2-01_1_B02,HEPG2-01,1,B02,UNTREATED,negative_control\n",
            },
            r"train.csv has competition labels but .*train_controls.csv has rerelease labels",
        ),
        (
            {"train": TRAIN_HEADER + "HEPG2-01_1_B03,HEPG2-01,1,B03,sirna_1139\n"},
            r"bad sirna line 2: 'sirna_1139'; expected one of the re-release's 1,139 names",
        ),
        (
            {"train": TRAIN_HEADER + "HEPG2-01_1_B03,HEPG2-01,1,B03,EMPTY\n"},
            r"bad sirna line 2: 'EMPTY'; expected a class id 0..1138",
        ),
        (
            {"train": TRAIN_HEADER + "HEPG2-01_1_B03,HEPG2-01,1,B03,1e2\n"},
            r"bad sirna line 2: '1e2'",
        ),
        (
            {"train": TRAIN_HEADER + "HEPG2-01_1_B03,HEPG2-01,99999999999999999999,B03,1\n"},
            r"bad plate line 2: '99999999999999999999'",
        ),
    ],
    ids=[
        "label-column-renamed",
        "controls-without-labels",
        "empty-label",
        "empty-control-label",
        "well-spelled-twice",
        "well-spelled-twice-across-files",
        "experiment-spelled-twice",
        "unknown-cell-type",
        "extra-field",
        "extra-field-every-row",
        "missing-field",
        "mixed-styles-in-a-file",
        "mixed-releases-in-a-folder",
        "unknown-rerelease-name",
        "full-release-name-in-kaggle-csv",
        "exponent-label",
        "huge-plate",
    ],
)
def test_malformed_kaggle_tables(tmp_path, files, message):
    with pytest.raises(MetadataError, match=message):
        read_metadata(_folder(tmp_path, **files), datasets=("train",))


def test_rerelease_labels_are_mapped_not_stripped(tmp_path):
    _folder(
        tmp_path,
        train=TRAIN_HEADER + "HEPG2-01_1_B03,HEPG2-01,1,B03,sirna_332\n",
        train_controls=CONTROLS_HEADER
        + "HEPG2-01_1_B02,HEPG2-01,1,B02,UNTREATED,negative_control\n"
        + "HEPG2-01_1_C03,HEPG2-01,1,C03,sirna_852,positive_control\n",
        test=TEST_CSV,
    )
    md = read_metadata(tmp_path).drop_duplicates("id_code").set_index("id_code")
    assert md.sirna.to_dict() == {
        "HEPG2-01_1_B02": "UNTREATED",
        "HEPG2-01_1_B03": "sirna_332",
        "HEPG2-01_1_C03": "sirna_852",
        "HEPG2-02_1_B03": None,
    }
    assert md.sirna_id.astype("float").fillna(-1).to_dict() == {
        "HEPG2-01_1_B02": 1138,
        "HEPG2-01_1_B03": 0,
        "HEPG2-01_1_C03": 1109,
        "HEPG2-02_1_B03": -1,
    }
    # the old rule (strip the prefix) would make sirna_852 a treatment: a well_type mismatch
    assert md.well_type.astype(str).to_dict()["HEPG2-01_1_C03"] == "positive_control"


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("513.7", "'513.7'"),
        ("inf", "'inf'"),
        ("1e2", "'1e2'"),
        (" ", "' '"),
        ("-1", "'-1'"),
        ("99999999999999999999", "'99999999999999999999'"),
        ("1139", "'1139'"),
    ],
)
def test_full_release_sirna_id_must_be_a_class_id(tiny_full, tmp_path, value, line):
    df = pd.read_csv(tiny_full / "metadata.csv", dtype=str)
    df.loc[3, "sirna_id"] = value
    df.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(
        MetadataError,
        match=rf"metadata.csv: bad sirna_id line 5: {line}; expected an integer in 0..1138",
    ):
        read_metadata(tmp_path)


def test_full_release_empty_sirna_id_is_unlabelled(tiny_full, tmp_path):
    df = pd.read_csv(tiny_full / "metadata.csv", dtype=str)
    df.loc[3, "sirna_id"] = ""
    df.to_csv(tmp_path / "metadata.csv", index=False)
    md = read_metadata(tmp_path)
    assert md.set_index("site_id").sirna_id.isna().to_dict() == {
        s: s == df.site_id[3] for s in df.site_id
    }


def test_full_release_refuses_two_spellings_of_a_site_and_unknown_cell_types(tiny_full, tmp_path):
    df = pd.read_csv(tiny_full / "metadata.csv", dtype=str)
    row = df.iloc[[0]].copy()
    experiment = row.experiment.iloc[0]
    short = experiment.split("-")[0] + "-" + str(int(experiment.split("-")[1]))
    assert short != experiment
    row = row.assign(
        experiment=short,
        well_id=lambda r: r.well_id.str.replace(experiment, short),
        site_id=lambda r: r.site_id.str.replace(experiment, short),
    )
    pd.concat([df, row]).to_csv(tmp_path / "metadata.csv", index=False)
    n = len(df) + 2
    with pytest.raises(
        MetadataError, match=rf"line {n}: duplicate site_id '{short}_.*line 2\) \(spelled"
    ):
        read_metadata(tmp_path)
    bad = df.replace({"experiment": {experiment: "FOO-01"}})
    bad.to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(MetadataError, match=r"bad experiment line 2: 'FOO-01'"):
        read_metadata(tmp_path)


@settings(max_examples=30)
@given(n_fields=st.integers(1, 9), quoted=st.booleans())
def test_rows_with_other_field_counts_are_refused(tmp_path_factory, n_fields, quoted):
    fields = ["HEPG2-01_1_B04", "HEPG2-01", "1", "B04", "7", "x", "y", "z", "w"][:n_fields]
    if quoted and n_fields > 5:
        fields[-1] = '"a, quoted, field"'  # commas inside quotes do not split a field
    root = tmp_path_factory.mktemp("fields")
    (root / "train.csv").write_text(TRAIN_HEADER + GOOD + ",".join(fields) + "\n")
    if n_fields == 5:
        assert len(read_metadata(root, datasets=("train",))) == 4
    else:
        message = rf"train.csv line 3: {n_fields} fields, expected 5"
        with pytest.raises(MetadataError, match=message):
            read_metadata(root, datasets=("train",))


@pytest.mark.parametrize("where", ["metadata.csv", "pixel_stats.csv"])
def test_extra_fields_in_the_other_tables(tiny_full, tmp_path, where):
    if where == "metadata.csv":
        text = (tiny_full / "metadata.csv").read_text().splitlines()
        text[4] += ",extra"
        (tmp_path / where).write_text("\n".join(text) + "\n")
        call = lambda: read_metadata(tmp_path)  # noqa: E731
    else:
        row = "U2OS-01_1_B02,U2OS-01,1,B02,1,1,1,1,1,0,2"
        (tmp_path / where).write_text(HEADER + row + "\n" + row + ",9\n")
        call = lambda: read_pixel_stats(tmp_path / where)  # noqa: E731
    with pytest.raises(MetadataError, match=rf"{where} line (5|3): 12 fields, expected 11"):
        call()


# ----------------------------------------------------------------------------- pixel stats
HEADER = "id_code,experiment,plate,well,site,channel,mean,std,median,min,max\n"


def test_read_pixel_stats(tmp_path):
    path = tmp_path / "pixel_stats.csv"
    rows = [
        f"U2OS-01_1_B02,U2OS-01,1,B02,{s},{c},{c + 0.5},2.0,{c},0,{100 + c}\n"
        for s in (1, 2)
        for c in range(1, 7)
    ]
    path.write_text(HEADER + "".join(rows))
    stats = read_pixel_stats(path)
    assert len(stats) == 12
    assert stats.site_id.iloc[-1] == "U2OS-01_1_B02_2"
    assert stats["mean"].dtype == np.float64 and stats["channel"].dtype == np.int8


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("U2OS-01_1_B02,U2OS-01,1,B02,1,7,1,1,1,0,2\n", "bad channel"),
        ("U2OS-01_1_B02,U2OS-01,1,B02,3,1,1,1,1,0,2\n", "bad site"),
        ("U2OS-01_1_B02,U2OS-01,1,B02,1,1,9,1,1,0,2\n", "mean <= max"),
        ("U2OS-01_1_B02,U2OS-01,1,B02,1,1,x,1,1,0,2\n", "bad mean"),
        ("U2OS-01_2_B02,U2OS-01,1,B02,1,1,1,1,1,0,2\n", "bad id_code"),
    ],
)
def test_bad_pixel_stats(tmp_path, row, message):
    path = tmp_path / "pixel_stats.csv"
    path.write_text(HEADER + row)
    with pytest.raises(MetadataError, match=message):
        read_pixel_stats(path)


def test_duplicate_pixel_stats(tmp_path):
    path = tmp_path / "pixel_stats.csv"
    row = "U2OS-01_1_B02,U2OS-01,1,B02,1,1,1,1,1,0,2\n"
    path.write_text(HEADER + row + row)
    with pytest.raises(MetadataError, match="line 3: duplicate row"):
        read_pixel_stats(path)


# ----------------------------------------------------------------------------- scanning
@pytest.mark.real
def test_scan_real_images_reports_incomplete_sites(real_images_dir):
    result = scan_images(real_images_dir)
    assert result.layout == "kaggle"
    assert len(result) == 36  # 18 wells x 2 sites
    assert len(result.incomplete) == 18
    assert (result.incomplete.site == 2).all()
    assert set(result.incomplete.missing) == {(5, 6)}
    assert result.sites[result.sites.complete].channels.map(len).eq(6).all()


def test_scan_matches_metadata(tiny_kaggle, tiny_full):
    for root in (tiny_kaggle, tiny_full):
        result = scan_images(root)
        md = read_metadata(root)
        assert result.sites.complete.all() and result.unparsed == ()
        # the full release's paths do not say train/test, so its scan sorts by experiment
        sites = result.sites.sort_values("site_id", ignore_index=True)
        md = md.sort_values("site_id", ignore_index=True)
        shared = ["site_id", "id_code", "plate", "well", "site", "batch", "row", "column"]
        pd.testing.assert_frame_equal(sites[shared], md[shared])
        assert sites.experiment.astype(str).equals(md.experiment.astype(str))
        assert sites.cell_type.astype(str).equals(md.cell_type.astype(str))
    assert scan_images(tiny_kaggle).sites.dataset.astype(str).tolist() == (
        read_metadata(tiny_kaggle).dataset.astype(str).tolist()
    )


def test_scan_lists_unparsed_files_and_range_errors(tiny_kaggle, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(tiny_kaggle / "test", root / "test")
    (root / "test" / "notes.png").write_bytes(b"")
    result = scan_images(root)
    assert result.unparsed == (str(root / "test" / "notes.png"),)
    assert set(result.sites.dataset) == {"test"}
    (root / "test" / "HEPG2-02" / "Plate1" / "B02_s1_w9.png").write_bytes(b"")
    with pytest.raises(ParseError, match=r"B02_s1_w9.png: channel 9 is outside 1..6"):
        scan_images(root)


# ----------------------------------------------------------------------------- CSV round trips
well_rows = st.lists(
    st.tuples(experiments, plates, wells, st.integers(0, 1138)),
    min_size=1,
    max_size=25,
    unique_by=lambda r: (parse_experiment(r[0]), r[1], r[2]),
)


@settings(max_examples=20)  # each example writes and reads files
@given(well_rows, st.sampled_from(["integer", "string"]))
def test_kaggle_csv_round_trip(tmp_path_factory, rows, style):
    root = tmp_path_factory.mktemp("csv")
    frame = pd.DataFrame(rows, columns=["experiment", "plate", "well", "label"])
    # one spelling per experiment: a table mixing HUVEC-1 and HUVEC-01 is refused
    spelling: dict[str, str] = {}
    first = [spelling.setdefault(normalize_experiment(x), x) for x in frame.experiment]
    frame["experiment"] = first
    frame["id_code"] = frame.experiment + "_" + frame.plate.astype(str) + "_" + frame.well
    if style == "integer":
        frame["sirna"] = frame.label.astype(str)
    else:
        frame["sirna"] = to_rerelease_names(frame.label.tolist())
    treat = frame[frame.label < 1108]
    ctrl = frame[frame.label >= 1108].assign(
        well_type=np.where(
            frame.label[frame.label >= 1108] == 1138, "negative_control", "positive_control"
        )
    )
    cols = ["id_code", "experiment", "plate", "well", "sirna"]
    treat[cols].to_csv(root / "train.csv", index=False)
    ctrl[[*cols, "well_type"]].to_csv(root / "train_controls.csv", index=False)
    md = read_metadata(root, datasets=("train",))
    assert len(md) == 2 * len(frame)
    assert {c: str(t) for c, t in md.dtypes.items()} == METADATA_COLUMNS
    by_id = frame.set_index("id_code")
    assert set(md.id_code) == set(by_id.index)
    assert (md.sirna_id.to_numpy() == by_id.label.loc[md.id_code].to_numpy()).all()
    assert (md.sirna.to_numpy() == by_id.sirna.loc[md.id_code].to_numpy()).all()
    assert md.site_id.is_unique and set(md.site) == {1, 2}
    # experiments sort by (cell type, batch, spelling), then plate, well, site
    columns = (md.cell_type, md.batch, md.experiment.astype(str), md.plate, md.well, md.site)
    keys = list(zip(*columns, strict=True))
    assert keys == sorted(keys)
    assert len(read_metadata(root, include_controls=False, datasets="train")) == 2 * len(treat)


@settings(max_examples=20)
@given(well_rows, st.data())
def test_pixel_stats_round_trip(tmp_path_factory, rows, data):
    records = []
    for experiment, plate, well, _ in rows:
        for site in (1, 2):
            for channel in range(1, 7):
                lo, hi = sorted(data.draw(st.lists(st.integers(0, 255), min_size=2, max_size=2)))
                mid = data.draw(st.floats(lo, hi))
                records.append(
                    (
                        f"{experiment}_{plate}_{well}",
                        experiment,
                        plate,
                        well,
                        site,
                        channel,
                        mid,
                        1.5,
                        mid,
                        lo,
                        hi,
                    )
                )
    frame = pd.DataFrame(records, columns=list(PIXEL_STATS_COLUMNS))
    path = tmp_path_factory.mktemp("stats") / "pixel_stats.csv"
    frame.to_csv(path, index=False)
    stats = read_pixel_stats(path)
    assert len(stats) == len(frame)
    np.testing.assert_allclose(stats["mean"], frame["mean"], rtol=1e-12)
    assert stats.site_id.tolist() == (frame.id_code + "_" + frame.site.astype(str)).tolist()
