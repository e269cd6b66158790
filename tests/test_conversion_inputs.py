"""Conversion against hostile inputs (issue 23): one notion of a valid PNG, content identity
of the inputs, and proportionate work when the metadata names sites without images."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from helpers import Site, find_site, png_bytes, read_png
from rxdata.cli import EXIT_VERIFY_FAILED, main
from rxdata.conversion import convert, verify
from rxdata.conversion.shard import CONTENT_HASH, content_hash
from rxdata.errors import ConvertError
from rxdata.images import channel_path
from rxdata.metadata import read_metadata
from rxdata.records import read_manifest


@pytest.fixture
def root(small_copy: Path) -> Path:
    """A private copy of the small synthetic data set (conftest.SMALL_OPTIONS), to damage."""
    return small_copy


@pytest.fixture
def site(root: Path) -> Site:
    """A train treatment site of ``root``."""
    return find_site(root)


def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def short_png(height: int, width: int, rows: int) -> bytes:
    """A PNG whose header says ``height`` rows and whose IDAT holds ``rows``; CRCs valid."""
    raw = b"".join(b"\x00" + bytes(width) for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    sig = b"\x89PNG\r\n\x1a\n"
    return sig + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- one notion of a valid image --------------------------------------------------------


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_png_with_too_few_rows_is_refused_and_named(root, site, tmp_path, encoding) -> None:
    height, width = read_png(site.png(3)).shape
    site.png(3).write_bytes(short_png(height, width, 4))
    with pytest.raises(ConvertError, match=rf"{site.site_id}.*_w3.png.*truncated image data"):
        convert(root, tmp_path / "out", encoding=encoding, workers=1)


def test_png_with_too_few_rows_is_listed_when_skipping(root, site, tmp_path) -> None:
    height, width = read_png(site.png(3)).shape
    site.png(3).write_bytes(short_png(height, width, 4))
    result = convert(root, tmp_path / "out", on_error="skip", workers=1)
    assert [s.site_id for s in result.skipped] == [site.site_id]
    with open(result.report_path or "", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["site_id"] == site.site_id and row["path"].endswith("_w3.png")
    assert "truncated image data" in row["reason"]
    assert verify(tmp_path / "out", decode=True).ok


def test_verify_decode_refuses_what_tensorflow_would() -> None:
    """verify --decode decodes with the converter's check: a short PNG is an error."""
    from rxdata.errors import RecordError
    from rxdata.reader import decode_example
    from rxdata.tfrecord import encode_example

    site = {"experiment": "HEPG2-01", "plate": 1, "well": "B02", "site": 1}
    example = encode_example(site, pngs=[short_png(8, 8, 3)] * 6)
    assert decode_example(example, decode=False)["height"] == 8
    with pytest.raises(RecordError, match=r"channel 1 PNG.*truncated image data"):
        decode_example(example, decode=True)


# --- content identity --------------------------------------------------------------------


def test_content_hash_of_every_input_is_recorded(root, site, tmp_path) -> None:
    out = tmp_path / "out"
    convert(root, out, workers=1)
    by_site = {
        site: contents
        for entry in read_manifest(out)["shards"]
        for site, contents in zip(entry["site_ids"], entry["site_contents"], strict=True)
    }
    want = ",".join(content_hash(site.png(ch).read_bytes()) for ch in range(1, 7))
    assert by_site[site.site_id] == want
    assert len(set(by_site.values())) == len(by_site)  # each site's own images


def test_same_size_replacement_with_restored_mtime_is_found_by_inputs_check(
    root, site, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    for ch in range(1, 7):  # uncompressed PNGs: every image of one shape has the same size
        site.png(ch).write_bytes(png_bytes(read_png(site.png(ch)), compress_level=0))
    convert(root, out, workers=1)
    target = site.png(4)
    st = target.stat()
    target.write_bytes(png_bytes(255 - read_png(target), compress_level=0))  # other pixels
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size
    # The fast check cannot see it: a re-run keeps every shard and verify passes.
    assert convert(root, out, workers=1).n_reused == len(read_manifest(out)["shards"])
    assert verify(out, decode=True).ok
    # The content check names the file.
    report = verify(out, inputs=root)
    assert not report.ok and report.inputs
    (problem,) = report.problems
    assert str(target) in problem and site.site_id in problem and "content changed" in problem
    assert main(["verify", str(out), "--inputs", str(root)]) == EXIT_VERIFY_FAILED
    assert str(target) in capsys.readouterr().out
    assert verify(out).ok  # without --inputs the images are not read


def test_inputs_check_reports_a_missing_image_and_an_old_manifest(root, site, tmp_path) -> None:
    out = tmp_path / "out"
    convert(root, out, workers=1)
    site.png(2).unlink()
    (problem,) = verify(out, inputs=root).problems
    assert "missing" in problem and str(site.png(2)) in problem
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"site_contents"', '"old_field"'))
    problems = verify(out, inputs=root).problems
    assert problems and all("no content hashes recorded" in p for p in problems)


def test_content_hash_is_xxh3_64_and_named_in_each_shard_entry(root, site, tmp_path) -> None:
    import xxhash

    out = tmp_path / "out"
    convert(root, out, workers=1)
    entries = read_manifest(out)["shards"]
    assert entries and all(e["content_hash"] == CONTENT_HASH == "xxh3_64" for e in entries)
    blob = site.png(1).read_bytes()
    assert content_hash(blob) == xxhash.xxh3_64_hexdigest(blob)


def _rewrite_manifest(out: Path, edit) -> None:
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["shards"]:
        edit(entry)
    path.write_text(json.dumps(manifest))


def test_an_earlier_manifest_without_a_hash_name_is_checked_with_sha256(
    root, site, tmp_path
) -> None:
    """Manifests of earlier versions hold SHA-256 prefixes and no name: still checked."""
    out = tmp_path / "out"
    convert(root, out, workers=1)

    def sha256_16(dataset: str, site_id: str, ch: int) -> str:
        experiment, plate, well, number = site_id.rsplit("_", 3)
        path = channel_path(root, dataset, experiment, int(plate), well, int(number), ch)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]

    def to_sha256(entry: dict) -> None:
        del entry["content_hash"]
        entry["site_contents"] = [
            ",".join(sha256_16(entry["dataset"], site_id, ch) for ch in range(1, 7))
            for site_id in entry["site_ids"]
        ]

    _rewrite_manifest(out, to_sha256)
    assert verify(out, inputs=root).ok
    target = site.png(2)
    st = target.stat()
    target.write_bytes(bytes(reversed(target.read_bytes())))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    (problem,) = verify(out, inputs=root).problems
    assert str(target) in problem and "content changed" in problem and "sha256" in problem


def test_an_unknown_hash_name_is_refused_clearly(root, tmp_path) -> None:
    out = tmp_path / "out"
    convert(root, out, workers=1)
    _rewrite_manifest(out, lambda entry: entry.update(content_hash="blake9"))
    problems = verify(out, inputs=root).problems
    assert problems and all("'blake9' is not one this rxdata knows" in p for p in problems)
    assert all("upgrade rxdata" in p for p in problems)


def test_a_progress_record_keeps_its_hash_name(root, tmp_path) -> None:
    """A shard kept from a run of an earlier version keeps its SHA-256 contents, named."""
    from rxdata.conversion.shard import ShardRecord

    record = ShardRecord(
        "a.tfrecord", "train", 1, "xxh3_128:" + "0" * 32, 1, ("s",), site_contents=("x",)
    )
    assert ShardRecord.from_json(record.to_json()) == record
    old = {k: v for k, v in record.to_json().items() if k != "content_hash"}
    assert ShardRecord.from_json(old).content_hash == "sha256"


def test_inputs_check_passes_on_unchanged_inputs_both_layouts(
    small_kaggle, small_full, tmp_path
) -> None:
    for layout, data in (("kaggle", small_kaggle), ("full", small_full)):
        convert(data, tmp_path / f"out-{layout}", workers=1)
        assert verify(tmp_path / f"out-{layout}", inputs=data).ok


# --- proportionate work -------------------------------------------------------------------


def test_a_directory_named_like_a_png_is_called_a_directory(root, site, tmp_path) -> None:
    path = site.png(5)
    path.unlink()
    path.mkdir()
    with pytest.raises(ConvertError, match=rf"{path} is a directory"):
        convert(root, tmp_path / "out", workers=1)


def test_real_sample_with_skip_writes_no_empty_shard(real_root, tmp_path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConvertError, match=r"have images.*experiments"):
        convert(real_root, out, workers=1)
    result = convert(real_root, out, workers=1, on_error="skip")
    shards = list(out.rglob("*.tfrecord"))
    assert shards and all(p.stat().st_size > 0 for p in shards)
    assert all(r.count > 0 for r in result.shards)
    assert len(shards) == len(result.shards)
    progress = out / "_progress"
    assert not progress.exists()
    assert verify(out).ok


def test_sites_without_images_are_found_before_planning(root, tmp_path) -> None:
    md = read_metadata(root)
    u2os = md[md["experiment"] == "U2OS-01"].sort_values("site_id")
    first = u2os.site_id.iloc[0]
    shutil.rmtree(root / "train" / "U2OS-01")
    with pytest.raises(ConvertError, match=rf"{first}.*have images"):
        convert(root, tmp_path / "out", workers=1)
    result = convert(root, tmp_path / "out2", workers=1, on_error="skip")
    assert {s.site_id for s in result.skipped} == set(u2os.site_id)
    assert all(r.count > 0 for r in result.shards)


def test_metadata_without_any_image_says_so_at_once(root, tmp_path) -> None:
    for folder in ("train", "test"):
        shutil.rmtree(root / folder)
        (root / folder).mkdir()
    with pytest.raises(ConvertError, match=r"none of the \d+ selected sites has images"):
        convert(root, tmp_path / "out", workers=1, on_error="skip")
    assert not list((tmp_path / "out").rglob("*.tfrecord"))
