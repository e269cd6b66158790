"""Tests for rxdata.conversion: plan, end-to-end conversion, resume, bad input, verify."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import Site, find_site, png_bytes, read_png, shard_bytes
from rxdata.conversion import (
    MANIFEST_NAME,
    REPORT_NAME,
    ConvertOptions,
    ShardRecord,
    SkippedSite,
    convert,
    plan_shards,
    verify,
)
from rxdata.errors import ConvertError, MetadataError, OptionsError, OutputExistsError
from rxdata.metadata import read_metadata
from rxdata.naming import image_path
from rxdata.records import read_manifest


@pytest.fixture
def kaggle_root(small_kaggle: Path) -> Path:
    """The small synthetic data set (conftest.SMALL_OPTIONS), read-only."""
    return small_kaggle


@pytest.fixture
def full_root(small_full: Path) -> Path:
    return small_full


@pytest.fixture
def own_root(small_copy: Path) -> Path:
    """A private copy to damage."""
    return small_copy


def chunks(n: int, per: int) -> list[int]:
    """The sizes of ``n`` sites cut into shards of ``per``: the random plan of one dataset."""
    return [min(per, n - i) for i in range(0, n, per)]


def n_test_sites(root: Path) -> int:
    return int((read_metadata(root)["dataset"] == "test").sum())


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("strategy", "by_plate"),
        ("sites_per_shard", 0),
        ("sites_per_shard", True),
        ("seed", -1),
        ("encoding", "jpeg"),
        ("compression", "lz4"),
        ("datasets", ()),
        ("datasets", ("train", "train")),
        ("datasets", ("val",)),
        ("workers", 0),
        ("on_error", "warn"),
        ("runner", "spark"),
        ("beam_options", ["runner"]),
        ("image_shape", (512,)),
        ("overwrite", "yes"),
    ],
)
def test_options_reject_bad_values(field: str, value: object) -> None:
    with pytest.raises(OptionsError, match=field):
        ConvertOptions(**{field: value})


def test_options_normalise() -> None:
    o = ConvertOptions(datasets=("test", "train"), beam_options=["--runner=X", "project=p"])
    assert o.datasets == ("train", "test")
    assert o.beam_options == (("project", "p"), ("runner", "X"))
    assert ConvertOptions(workers=3).n_workers == 3
    assert ConvertOptions().n_workers >= 1


def test_unknown_override_is_rejected(kaggle_root: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="sites_per_tfrecord"):
        convert(kaggle_root, tmp_path / "out", sites_per_tfrecord=3)


# --- the plan -----------------------------------------------------------------------------


def synthetic_table(n_train: int, n_test: int) -> pd.DataFrame:
    rows = []
    for ds, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            exp = f"{'HEPG2' if ds == 'train' else 'U2OS'}-0{1 + i % 3}"
            plate, well, site = 1 + i % 4, f"B{1 + (i // 8) % 20:02d}", 1 + i % 2
            wt = "treatment" if i % 5 else "negative_control"
            rows.append((f"{exp}_{plate}_{well}_{site}_{ds}{i}", ds, exp, plate, well, site, wt))
    cols = ["site_id", "dataset", "experiment", "plate", "well", "site", "well_type"]
    return pd.DataFrame(rows, columns=cols)


@settings(max_examples=40, deadline=None)
@given(
    n_train=st.integers(0, 40),
    n_test=st.integers(0, 20),
    per=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    strategy=st.sampled_from(["random", "by_exp_plate_site", "by_experiment"]),
    controls=st.booleans(),
)
def test_plan_partitions_the_selected_sites(n_train, n_test, per, seed, strategy, controls):
    md = synthetic_table(n_train, n_test)
    opts = ConvertOptions(
        strategy=strategy, sites_per_shard=per, seed=seed, include_controls=controls
    )
    plan = plan_shards(md, opts)
    ids = [s for shard in plan for s in shard.site_ids]
    selected = md if controls else md[md.well_type == "treatment"]
    assert sorted(ids) == sorted(selected.site_id)  # every site exactly once
    assert len({s.path for s in plan}) == len(plan)
    assert all(shard.site_ids for shard in plan)
    by_id = md.set_index("site_id")
    for shard in plan:
        assert set(by_id.loc[list(shard.site_ids), "dataset"]) == {shard.dataset}
        if strategy == "random":
            assert len(shard.site_ids) <= per
    # a pure function: the same input, shuffled rows and all, gives the same plan
    assert plan_shards(md.sample(frac=1.0, random_state=1), opts) == plan


def test_plan_names_and_seed() -> None:
    md = synthetic_table(10, 4)
    random42 = plan_shards(md, ConvertOptions(sites_per_shard=4))
    assert [s.path for s in random42] == [
        "random-42/train/001.tfrecord",
        "random-42/train/002.tfrecord",
        "random-42/train/003.tfrecord",
        "random-42/test/001.tfrecord",
    ]
    assert plan_shards(md, ConvertOptions(sites_per_shard=4, seed=7)) != random42
    by_eps = plan_shards(md, ConvertOptions(strategy="by_exp_plate_site"))
    assert by_eps[0].path == "by_exp_plate_site-42/HEPG2-01_p1_s1.tfrecord"
    by_exp = plan_shards(md, ConvertOptions(strategy="by_experiment"))
    assert [s.path for s in by_exp][:1] == ["by_experiment-42/train/HEPG2-01.tfrecord"]
    # the test split is shuffled the same whether or not train is converted (rxrx1-utils)
    only_test = plan_shards(md, ConvertOptions(sites_per_shard=4, datasets=("test",)))
    assert only_test == random42[-1:]


def test_plan_refuses_shared_shard_names() -> None:
    md = synthetic_table(4, 0)
    both = pd.concat([md, md.assign(dataset="test", site_id=md.site_id + "x")])
    with pytest.raises(MetadataError, match="both train and test"):
        plan_shards(both, ConvertOptions(strategy="by_exp_plate_site"))
    assert len(plan_shards(both, ConvertOptions(strategy="by_experiment"))) == 6


# --- end to end ---------------------------------------------------------------------------


def read_back(out: Path) -> dict[str, dict]:
    from rxdata.reader import read_tfrecord

    records = {}
    for p in sorted(out.rglob("*.tfrecord")):
        for r in read_tfrecord(p):
            records[f"{r['id_code']}_{r['site']}"] = r
    return records


@pytest.mark.parametrize("layout", ["kaggle", "full"])
@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_end_to_end_pixel_exact(layout, encoding, kaggle_root, full_root, tmp_path) -> None:
    root = kaggle_root if layout == "kaggle" else full_root
    md = read_metadata(root)
    n_train, n_test = int((md.dataset == "train").sum()), int((md.dataset == "test").sum())
    assert n_train > 5 and n_test > 0 and n_train + n_test == len(md)
    out = tmp_path / "out"
    result = convert(root, out, encoding=encoding, sites_per_shard=5, workers=1)
    assert result.ok and result.report_path is None
    assert result.n_sites == len(md)
    counts = chunks(n_train, 5) + chunks(n_test, 5)  # train shards first, then test
    assert [s.count for s in result.shards] == counts
    records = read_back(out)
    assert len(records) == len(md)
    shape = read_png(Site.of(root, next(md.itertuples()), layout).png(1)).shape
    assert shape[0] != shape[1]  # not square: a swapped height and width fails below
    for row in md.itertuples():
        rec = records[row.site_id]
        site = Site.of(root, row, layout)
        assert rec["image"].shape == (*shape, 6)
        for ch in range(1, 7):  # Pillow's reading of the source PNG, shape included
            assert np.array_equal(rec["image"][:, :, ch - 1], read_png(site.png(ch)))
        assert rec["dataset"] == row.dataset and rec["well_type"] == row.well_type
        assert rec["encoding"] == encoding
        sirna = None if pd.isna(row.sirna_id) else int(row.sirna_id)
        assert rec["sirna_id"] == sirna
    report = verify(out, decode=True, metadata=md)
    assert report.ok, report.summary()
    assert report.n_sites == len(md) and report.n_shards == len(counts)
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["options"]["encoding"] == encoding
    assert manifest["options"]["image_shape"] == list(shape)
    assert [e["count"] for e in manifest["shards"]] == counts
    assert not (out / "_progress").exists() or not any((out / "_progress").iterdir())


def test_png_encoding_copies_the_source_bytes(kaggle_root, tmp_path) -> None:
    from rxdata.reader import read_tfrecord

    out = tmp_path / "out"
    convert(kaggle_root, out, datasets=("test",), workers=1, progress=False)
    (shard,) = sorted(out.rglob("*.tfrecord"))
    for rec in read_tfrecord(shard, decode=False):
        for ch, blob in enumerate(rec["image"], 1):
            exp, plate, well = rec["experiment"], rec["plate"], rec["well"]
            src = kaggle_root / image_path("test", exp, plate, well, rec["site"], ch)
            assert blob == src.read_bytes()


def test_metadata_subset_and_filters(kaggle_root, tmp_path) -> None:
    md = read_metadata(kaggle_root)
    one = md[md["experiment"] == "U2OS-01"]
    treated = sorted(one[one["well_type"] == "treatment"].site_id)
    assert treated and len(treated) < len(one)  # the filter has controls to drop
    result = convert(
        kaggle_root,
        tmp_path / "a",
        metadata=one,
        scan=False,  # the other experiments' images are no error then
        include_controls=False,
        workers=1,
        strategy="by_experiment",
    )
    assert [s.path for s in result.shards] == ["by_experiment-42/train/U2OS-01.tfrecord"]
    assert sorted(result.shards[0].site_ids) == treated
    with pytest.raises(ConvertError, match="has no metadata row"):  # convert does scan
        convert(kaggle_root, tmp_path / "b", metadata=one, workers=1)


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_compression(kaggle_root, tmp_path, compression) -> None:
    from rxdata.tfrecord import detect_compression

    out = tmp_path / "out"
    convert(kaggle_root, out, compression=compression, datasets=("test",), workers=1)
    (shard,) = sorted(out.rglob("*.tfrecord"))
    assert detect_compression(shard) == compression
    assert verify(out, decode=True).ok


def test_metadata_found_beside_images(own_root, tmp_path) -> None:
    root = own_root
    n_sites = len(read_metadata(root))
    (root / "metadata").mkdir()
    for f in root.glob("*.csv"):
        f.rename(root / "metadata" / f.name)
    (tmp_path / "data" / "images").mkdir()
    for ds in ("train", "test"):
        (root / ds).rename(root / "images" / ds)
    # the real data set's arrangement: images/{train,test}, CSVs in ../metadata
    result = convert(root / "images", tmp_path / "out", workers=1)
    assert result.n_sites == n_sites


# --- resume and overwrite -----------------------------------------------------------------


def test_rerun_is_a_checked_noop(kaggle_root, tmp_path) -> None:
    out = tmp_path / "out"
    first = convert(kaggle_root, out, sites_per_shard=3, workers=1)
    before = shard_bytes(out)
    manifest = (out / MANIFEST_NAME).read_bytes()
    again = convert(kaggle_root, out, sites_per_shard=3, workers=1)
    assert again.n_reused == len(first.shards)
    assert shard_bytes(out) == before
    assert (out / MANIFEST_NAME).read_bytes() == manifest


def test_resume_after_failure_is_byte_identical(own_root, tmp_path, monkeypatch) -> None:
    import rxdata.conversion.shard as conv

    reference = tmp_path / "reference"
    convert(own_root, reference, sites_per_shard=3, workers=1)

    out = tmp_path / "out"
    real = conv.load_site
    calls = {"n": 0}

    def crash_on_seventh_site(ctx, row, paths=None):
        calls["n"] += 1
        if calls["n"] == 7:  # in the middle of the third shard
            raise KeyboardInterrupt
        return real(ctx, row, paths)

    monkeypatch.setattr(conv, "load_site", crash_on_seventh_site)
    with pytest.raises(KeyboardInterrupt):
        convert(own_root, out, sites_per_shard=3, workers=1)
    assert len(shard_bytes(out)) == 2  # two complete shards, no partial third
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    assert not read_manifest(out)["complete"]
    assert not verify(out).ok
    # a shard damaged while the run was down is detected and rewritten
    damaged = sorted(out.rglob("*.tfrecord"))[0]
    damaged.write_bytes(damaged.read_bytes()[:-3] + b"xyz")
    monkeypatch.setattr(conv, "load_site", real)
    resumed = convert(own_root, out, sites_per_shard=3, workers=1)
    assert resumed.n_reused == 1
    assert shard_bytes(out) == shard_bytes(reference)
    assert (out / MANIFEST_NAME).read_bytes() == (reference / MANIFEST_NAME).read_bytes()
    assert verify(out, decode=True).ok


def test_refuses_other_options_unless_overwrite(kaggle_root, tmp_path) -> None:
    out = tmp_path / "out"
    convert(kaggle_root, out, workers=1, sites_per_shard=4)
    with pytest.raises(OutputExistsError, match="different options"):
        convert(kaggle_root, out, workers=1, sites_per_shard=5)
    # options that do not change the bytes are fine
    convert(kaggle_root, out, workers=1, sites_per_shard=4, validate=False, progress=False)
    result = convert(kaggle_root, out, workers=1, sites_per_shard=5, overwrite=True)
    assert sorted(shard_bytes(out)) == sorted(s.path for s in result.shards)
    assert read_manifest(out)["options"]["sites_per_shard"] == 5


def test_refuses_other_metadata(kaggle_root, tmp_path) -> None:
    out = tmp_path / "out"
    md = read_metadata(kaggle_root)
    convert(kaggle_root, out, metadata=md, workers=1)
    with pytest.raises(OutputExistsError, match="metadata"):
        convert(kaggle_root, out, metadata=md.iloc[:-2], workers=1, on_error="skip")


def test_refuses_foreign_shards_without_manifest(kaggle_root, tmp_path) -> None:
    out = tmp_path / "out"
    (out / "random-42" / "test").mkdir(parents=True)
    (out / "random-42" / "test" / "001.tfrecord").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="no manifest"):
        convert(kaggle_root, out, workers=1)


# --- bad input ----------------------------------------------------------------------------


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[60] ^= 0xFF  # inside IDAT: the CRC no longer matches
    path.write_bytes(bytes(data))


def wrong_size(path: Path) -> None:
    """One row taller than it was: ``{h + 1}x{w}`` (see :func:`taller`)."""
    height, width = read_png(path).shape
    path.write_bytes(png_bytes(np.zeros((height + 1, width), np.uint8)))


def taller(site: Site) -> str:
    """How an error names the size :func:`wrong_size` gives (read before the damage)."""
    height, width = read_png(site.png(1)).shape
    return f"{height + 1}x{width}"


def sixteen_bit(path: Path) -> None:
    path.write_bytes(png_bytes(np.zeros(read_png(path).shape, np.uint16) + 300))


def rgb(path: Path) -> None:
    path.write_bytes(png_bytes(np.zeros((*read_png(path).shape, 3), np.uint8)))


BAD = {
    "missing_channel": (lambda s: s.png(5).unlink(), "lacks channel", 5),
    "corrupt_png": (lambda s: corrupt(s.png(3)), "CRC mismatch", 3),
    "truncated_png": (
        lambda s: s.png(2).write_bytes(s.png(2).read_bytes()[:50]),
        "truncated",
        2,
    ),
    "not_a_png": (lambda s: s.png(4).write_bytes(b"GIF89a" + bytes(100)), "not a PNG", 4),
    "wrong_size": (lambda s: wrong_size(s.png(6)), "{taller}", 6),
    "16_bit": (lambda s: sixteen_bit(s.png(1)), "16-bit", 1),
    "rgb": (lambda s: rgb(s.png(1)), "RGB", 1),
    "no_images": (lambda s: [s.png(c).unlink() for c in range(1, 7)], "has no images", 1),
}


def damage_a_site(case: str, root: Path) -> tuple[Site, str, int, tuple[int, int]]:
    """Damage a train treatment site as ``BAD[case]`` says; the site, the message expected,
    the channel named and the data set's image shape (read before the damage)."""
    damage, message, channel = BAD[case]
    site = find_site(root)
    shape = read_png(site.png(1)).shape
    message = message.format(taller=taller(site))
    damage(site)
    return site, message, channel, shape


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_naming_the_file(case, own_root, tmp_path) -> None:
    site, message, channel, shape = damage_a_site(case, own_root)
    out = tmp_path / "out"
    with pytest.raises(ConvertError) as err:
        convert(own_root, out, workers=1, sites_per_shard=100, image_shape=shape)
    text = str(err.value)
    assert site.site_id in text and message in text
    assert f"{site.stem}_w{channel}.png" in text
    # the train shard holding the bad site was not written, not even partly
    assert not list(out.rglob("train/*")), list(out.rglob("*"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_skipped_and_reported(case, own_root, tmp_path) -> None:
    md = read_metadata(own_root)
    site, message, channel, shape = damage_a_site(case, own_root)
    out = tmp_path / "out"
    result = convert(own_root, out, workers=1, on_error="skip", image_shape=shape)
    assert result.n_sites == len(md) - 1 and not result.ok
    assert site.site_id not in read_back(out)
    report = pd.read_csv(result.report_path, dtype=str)
    assert list(report.site_id) == [site.site_id]
    assert message in report.reason[0]
    manifest = read_manifest(out)
    if case == "no_images":  # found before planning: in no shard (issue 23)
        assert report.shard.isna()[0] and manifest["n_sites"] == len(md) - 1
        assert report.path[0].endswith(f"Plate{site.plate}")
        assert f"{site.stem}_w*.png" in report.reason[0]
    else:
        assert report.path[0].endswith(f"{site.stem}_w{channel}.png")
        assert report.shard[0].startswith("random-42/train/")
        assert manifest["n_skipped"] == 1 and manifest["n_sites"] == len(md) - 1
    assert verify(out, metadata=md).ok  # skipped and reported is not a mismatch


def test_images_without_metadata(own_root, tmp_path) -> None:
    md = read_metadata(own_root)
    well = find_site(own_root, well_type="positive_control")  # both its sites lose their rows
    gone = md["id_code"] == f"{well.experiment}_{well.plate}_{well.well}"
    partial = md[~gone]
    assert gone.sum() == 2
    missing = rf"{well.experiment}/Plate{well.plate}/{well.well}_s1_w1.png has no metadata"
    with pytest.raises(ConvertError, match=missing):
        convert(own_root, tmp_path / "a", metadata=partial, workers=1)
    assert not (tmp_path / "a" / MANIFEST_NAME).exists()
    result = convert(own_root, tmp_path / "b", metadata=partial, workers=1, on_error="skip")
    assert result.n_sites == len(partial)
    report = pd.read_csv(tmp_path / "b" / REPORT_NAME, dtype=str)
    assert sorted(report.site_id) == sorted(md[gone].site_id)
    assert set(report.reason.str.split(":").str[0]) == {"image without metadata"}
    # without scanning, nothing is reported
    assert convert(own_root, tmp_path / "c", metadata=partial, workers=1, scan=False).ok


def test_verify_reports_mismatches(kaggle_root, tmp_path) -> None:
    out = tmp_path / "out"
    convert(kaggle_root, out, workers=1, sites_per_shard=4)
    shards = sorted(out.rglob("*.tfrecord"))
    # truncate one shard, delete another, and claim a site the metadata does not know
    shards[0].write_bytes(shards[0].read_bytes()[:-10])
    shards[1].unlink()
    md = read_metadata(kaggle_root)
    extra = md.iloc[[0]].assign(site_id="HEPG2-01_4_P24_1")
    report = verify(out, metadata=pd.concat([md, extra], ignore_index=True))
    assert not report.ok
    text = report.summary()
    assert "xxh3_128 checksum" in text and "missing" in text and "corrupt or truncated" in text
    assert "HEPG2-01_4_P24_1" in text
    with pytest.raises(FileNotFoundError, match="no manifest"):
        verify(tmp_path / "nothing")


@pytest.mark.slow  # spawns worker processes, each importing TensorFlow
def test_workers_give_the_same_bytes(kaggle_root, tmp_path) -> None:
    one = convert(kaggle_root, tmp_path / "one", workers=1, sites_per_shard=3)
    two = convert(kaggle_root, tmp_path / "two", workers=2, sites_per_shard=3)
    assert [s.digest for s in one.shards] == [s.digest for s in two.shards]
    assert shard_bytes(tmp_path / "one") == shard_bytes(tmp_path / "two")


def test_convert_result_is_frozen(kaggle_root, tmp_path) -> None:
    result = convert(kaggle_root, tmp_path / "o", datasets=("test",), workers=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.output_dir = "x"  # type: ignore[misc]
    assert json.loads((tmp_path / "o" / MANIFEST_NAME).read_text())["n_sites"] == n_test_sites(
        kaggle_root
    )
    assert os.path.basename(result.manifest_path) == MANIFEST_NAME
    shutil.rmtree(tmp_path / "o")


# --- the shared synthetic data sets (rxdata.synthetic) ---------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_kaggle", "tiny_full"])
def test_synthetic_data_sets_round_trip(fixture, request, tmp_path) -> None:
    from rxdata.images import load_site

    root: Path = request.getfixturevalue(fixture)
    out = tmp_path / "out"
    result = convert(root, out, workers=1, sites_per_shard=100)
    md = read_metadata(root)
    assert result.ok and result.n_sites == len(md)
    assert verify(out, decode=True, metadata=md).ok
    records = read_back(out)
    layout = "kaggle" if fixture == "tiny_kaggle" else "full"
    for row in md.iloc[::37].itertuples():  # a spread of sites, both data sets
        expected = load_site(
            row.dataset if layout == "kaggle" else None,
            row.experiment,
            row.plate,
            row.well,
            row.site,
            base_path=root,
            layout=layout,
        )
        assert np.array_equal(records[row.site_id]["image"], expected)


# --- the real RxRx1 images ----------------------------------------------------------------


@pytest.mark.real
def test_real_images_with_incomplete_sites(real_root, tmp_path) -> None:
    from rxdata.images import read_png
    from rxdata.metadata import scan_images

    images = real_root / "images"
    scan = scan_images(images)
    md = read_metadata(real_root / "metadata")
    md = md[md["site_id"].isin(set(scan.sites["site_id"]))].reset_index(drop=True)
    assert len(md) == 36  # 18 wells x 2 sites; every site 2 has channels 1-4 only
    with pytest.raises(ConvertError, match=r"_2 .*lacks channel\(s\) 5, 6.*B02_s2_w5.png"):
        convert(images, tmp_path / "strict", metadata=md, workers=1)

    out = tmp_path / "out"
    result = convert(images, out, metadata=md, workers=1, on_error="skip", decode=True)
    assert result.n_sites == 18 and len(result.skipped) == 18
    assert {s.site_id[-2:] for s in result.skipped} == {"_2"}
    report = pd.read_csv(out / REPORT_NAME, dtype=str)
    assert sorted(report.site_id) == sorted(scan.incomplete["site_id"])
    assert report.reason.str.contains("lacks channel\\(s\\) 5, 6").all()
    assert read_manifest(out)["options"]["image_shape"] == [512, 512]
    assert verify(out, decode=True, metadata=md).ok
    rec = read_back(out)["HEPG2-08_2_B02_1"]
    for ch in range(1, 7):
        png = images / "test" / "HEPG2-08" / "Plate2" / f"B02_s1_w{ch}.png"
        assert np.array_equal(rec["image"][:, :, ch - 1], read_png(png))


def test_rxdata_convert_is_the_function_after_importing_every_module(kaggle_root, tmp_path) -> None:
    # Modules are nouns (conversion, normalization) so importing them can never shadow the
    # public functions rxdata.convert and rxdata.normalize.
    import rxdata
    import rxdata.conversion
    import rxdata.normalization

    assert callable(rxdata.normalize) and not isinstance(rxdata.normalize, type(rxdata))

    result = rxdata.convert(kaggle_root, tmp_path / "o", datasets=("test",), workers=1)
    assert result.n_sites == n_test_sites(kaggle_root)
    assert rxdata.verify(tmp_path / "o").ok


def test_progress_bar_and_log_lines(kaggle_root, tmp_path, capsys, caplog) -> None:
    import logging

    n = n_test_sites(kaggle_root)
    convert(kaggle_root, tmp_path / "a", datasets=("test",), workers=1, progress=True)
    bar = capsys.readouterr().err
    assert "rxdata-convert" in bar and f"{n}/{n}" in bar and "site/s" in bar
    with caplog.at_level(logging.INFO, logger="rxdata.conversion"):
        convert(kaggle_root, tmp_path / "b", datasets=("test",), workers=1)  # not a terminal
    assert any(f"{n}/{n} sites (100.0%)" in r.getMessage() for r in caplog.records)
    assert "site/s" not in capsys.readouterr().err


def test_image_size_is_voted_not_taken_from_one_file(own_root, tmp_path) -> None:
    site = find_site(own_root)
    shape, odd = read_png(site.png(1)).shape, taller(site)
    for ch in range(1, 7):
        wrong_size(site.png(ch))
    md = read_metadata(own_root)
    # a seed whose plan reads the odd-sized site first
    seed = next(
        s
        for s in range(1000)
        if plan_shards(md, ConvertOptions(seed=s))[0].site_ids[0] == site.site_id
    )
    result = convert(own_root, tmp_path / "out", workers=1, on_error="skip", seed=seed)
    assert read_manifest(tmp_path / "out")["options"]["image_shape"] == list(shape)
    assert [s.site_id for s in result.skipped] == [site.site_id]
    assert odd in result.skipped[0].reason


ids = st.from_regex(r"[A-Z0-9]{2,6}-0[1-9]_[1-4]_[B-O][0-2][0-9]_[12]", fullmatch=True)
# a shard's checksum: XXH3-128 as written, or SHA-256 as read from an earlier version's record
digests = st.from_regex(r"xxh3_128:[0-9a-f]{32}|sha256:[0-9a-f]{64}", fullmatch=True)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=50, deadline=None)
@given(
    site_ids=st.lists(ids, max_size=5, unique=True),
    digest=digests,
    count=st.integers(0, 10**6),
    size=st.integers(0, 2**40),
    skipped=st.lists(st.builds(SkippedSite, ids, text, text, text, text), max_size=3),
)
def test_shard_record_json_round_trip(site_ids, digest, count, size, skipped) -> None:
    record = ShardRecord(
        "random-42/train/001.tfrecord",
        "train",
        count,
        digest,
        size,
        tuple(site_ids),
        tuple(skipped),
    )
    assert ShardRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    for s in skipped:  # the report row splits the site id back into its parts
        row = s.row()
        assert "_".join([row["experiment"], row["plate"], row["well"], row["site"]]) == s.site_id


keys = st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True)


@given(st.dictionaries(keys, st.text(max_size=20), max_size=6))
def test_beam_options_parse_round_trip(flags) -> None:
    as_dict = ConvertOptions(beam_options=flags).beam_options
    as_list = ConvertOptions(beam_options=[f"--{k}={v}" for k, v in flags.items()]).beam_options
    assert as_dict == as_list == tuple(sorted(flags.items()))


def test_remote_paths_through_gfile(kaggle_root, tmp_path) -> None:
    # TensorFlow's in-memory "ram://" file system stands in for gs://: every path with a
    # scheme goes through tf.io.gfile (listing, reading, atomic rename, checksums).
    import uuid

    import tensorflow as tf

    base = f"ram://rxdata-test-{uuid.uuid4().hex}"
    for path in kaggle_root.rglob("*"):
        if path.is_file():
            dest = f"{base}/data/{path.relative_to(kaggle_root).as_posix()}"
            tf.io.gfile.makedirs(dest.rsplit("/", 1)[0])
            tf.io.gfile.copy(str(path), dest)
    out = f"{base}/out"
    result = convert(f"{base}/data", out, workers=1, sites_per_shard=4)
    assert result.ok and result.n_sites == len(read_metadata(kaggle_root))
    assert verify(out, decode=True, metadata=f"{base}/data").ok
    again = convert(f"{base}/data", out, workers=1, sites_per_shard=4)
    assert again.n_reused == len(result.shards) > 1
    local = convert(kaggle_root, tmp_path / "local", workers=1, sites_per_shard=4)
    assert [s.digest for s in result.shards] == [s.digest for s in local.shards]


def test_full_disk_is_reported_and_resumable(kaggle_root, tmp_path, monkeypatch) -> None:
    import errno

    import rxdata.tfrecord

    reference = tmp_path / "reference"
    convert(kaggle_root, reference, workers=1, sites_per_shard=3)
    real = rxdata.tfrecord.write_shard
    calls = {"n": 0}

    def disk_fills_up(path, examples, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, examples, **kw)

    out = tmp_path / "out"
    monkeypatch.setattr(rxdata.tfrecord, "write_shard", disk_fills_up)
    with pytest.raises(ConvertError, match=r"No space left on device.*re-run the same command"):
        convert(kaggle_root, out, workers=1, sites_per_shard=3)
    monkeypatch.setattr(rxdata.tfrecord, "write_shard", real)
    assert convert(kaggle_root, out, workers=1, sites_per_shard=3).n_reused == 2
    assert shard_bytes(out) == shard_bytes(reference)


def test_no_progress_folder_after_a_complete_run(kaggle_root, tmp_path) -> None:
    out = tmp_path / "o"
    convert(kaggle_root, out, datasets=("test",), workers=1)
    assert not (out / "_progress").exists()  # the docs: it exists only while incomplete
    again = convert(kaggle_root, out, datasets=("test",), workers=1)  # the resume path
    assert again.n_reused == len(again.shards)
    assert not (out / "_progress").exists()


_BLOCKING_CONVERT = """
import sys, time
import rxdata.conversion.shard as shard
from rxdata.cli import convert_main

real, calls = shard.load_site, []

def load_site(ctx, row, paths=None):
    calls.append(row)
    if len(calls) == 4:  # the second shard: wait here until SIGTERM arrives
        time.sleep(600)
    return real(ctx, row, paths)

shard.load_site = load_site
sys.exit(convert_main(sys.argv[1:]))
"""


@pytest.mark.subprocess
def test_sigterm_to_rxdata_convert_is_an_interrupt_and_resumable(own_root, tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from rxdata.cli import EXIT_INTERRUPTED

    reference = tmp_path / "reference"
    convert(own_root, reference, sites_per_shard=3, workers=1)
    out = tmp_path / "out"
    args = [str(own_root), str(out), "--sites-per-shard", "3", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_CONVERT, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((out / "_progress").glob("*.json")):  # the first shard is complete
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the conversion never finished a shard"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted; re-run the same command to resume" in err
    assert not read_manifest(out)["complete"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    resumed = convert(own_root, out, sites_per_shard=3, workers=1)
    assert resumed.n_reused == 1
    assert shard_bytes(out) == shard_bytes(reference)
    assert (out / MANIFEST_NAME).read_bytes() == (reference / MANIFEST_NAME).read_bytes()


@pytest.mark.subprocess
@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_converting_to_local_uncompressed_shards_imports_no_tensorflow(
    small_kaggle, tmp_path, encoding
) -> None:
    # rxdata encodes, frames and hashes these records itself: a worker that imported
    # TensorFlow would pay seconds of CPU for nothing
    import subprocess
    import sys

    script = (
        "import sys; from rxdata import ConvertOptions, convert;"
        f"convert({str(small_kaggle)!r}, {str(tmp_path / 'out')!r}, options=ConvertOptions("
        f"encoding={encoding!r}, workers=1, progress=False));"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]
    assert verify(tmp_path / "out", decode=True).ok


def test_conversion_modules_form_no_cycle_and_share_no_private_names() -> None:
    import ast
    import graphlib

    package = Path(__file__).parents[1] / "src" / "rxdata" / "conversion"
    graph: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        name = f"rxdata.conversion.{path.stem}".removesuffix(".__init__")
        graph[name] = set()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            # (`from rxdata import _io` imports a private module, the package's own door)
            if isinstance(node, ast.ImportFrom) and node.module not in (None, "rxdata"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports private {private} from {node.module}"
        for node in tree.body:  # module-level imports: what importing the module runs
            module = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
            if module == "rxdata.conversion" or module.startswith("rxdata.conversion."):
                graph[name].add(module)
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on an import cycle
    assert not any(d.endswith(".beam") for deps in graph.values() for d in deps)  # lazy only


@pytest.mark.subprocess
def test_importing_conversion_does_not_import_beam() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rxdata.conversion; "
        "assert 'rxdata.conversion.beam' not in sys.modules; "
        "assert 'apache_beam' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def test_experiments_option_takes_either_spelling_and_checks_names() -> None:
    from rxdata.errors import OptionsError

    assert ConvertOptions(experiments="HUVEC-1").experiments == ("HUVEC-01",)
    both = ConvertOptions(experiments=("HUVEC-01", "HUVEC-1", "HEPG2-2"))
    assert both.experiments == ("HEPG2-02", "HUVEC-01")
    assert both.output_fields()["experiments"] == ["HEPG2-02", "HUVEC-01"]
    assert "experiments" not in ConvertOptions().output_fields()  # old manifests still match
    for bad in ((), ("HUVEC",), (3,)):
        with pytest.raises(OptionsError, match="experiments="):
            ConvertOptions(experiments=bad)


# --- the runner protocol, seen from convert ---------------------------------------------------


def _fake_runner(monkeypatch, returns):
    """Make every runner name give a runner whose records are ``returns(real records)``."""
    import rxdata.conversion.job as job
    from rxdata.conversion.local import run_local

    def fake(tasks, options):
        return returns(run_local(tasks, options))

    monkeypatch.setattr(job, "runner", lambda name: fake)


def test_convert_writes_the_manifest_from_any_order_of_records(
    kaggle_root, tmp_path, monkeypatch
) -> None:
    reference = convert(kaggle_root, tmp_path / "ref", sites_per_shard=3, workers=1)
    _fake_runner(monkeypatch, lambda records: records[::-1])
    result = convert(kaggle_root, tmp_path / "out", sites_per_shard=3, workers=1)
    assert [s.path for s in result.shards] == [s.path for s in reference.shards]  # plan order
    assert (tmp_path / "out" / MANIFEST_NAME).read_bytes() == (
        tmp_path / "ref" / MANIFEST_NAME
    ).read_bytes()


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (lambda records: records[1:], "planned shards were not written"),
        (
            lambda records: [dataclasses.replace(records[0], path="x.tfrecord"), *records[1:]],
            r"the local runner returned unplanned shards \['x.tfrecord'\]",
        ),
    ],
    ids=["a-record-missing", "an-unplanned-record"],
)
def test_convert_checks_what_a_runner_returns(
    kaggle_root, tmp_path, monkeypatch, returns, message
) -> None:
    _fake_runner(monkeypatch, returns)
    with pytest.raises(ConvertError, match=message):
        convert(kaggle_root, tmp_path / "out", sites_per_shard=3, workers=1)
    assert (
        not (tmp_path / "out" / MANIFEST_NAME).exists()
        or not json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["complete"]
    )
