"""The shard checksum: XXH3-128, recorded as ``"digest": "xxh3_128:HEX"`` (format version 2).

A conversion of an earlier version (``"sha256": HEX`` per shard, format version 1: made
here by :func:`helpers.to_legacy_manifest`) still opens, reads with checking, verifies and
resumes with its shards kept; a flipped byte is found by ``verify``, by ``Sites`` and on
resume, whichever the algorithm; a checksum this rxdata does not know is a damaged
manifest, named with the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
import xxhash

from helpers import shard_bytes, to_legacy_manifest
from rxdata.cli import EXIT_OK, EXIT_VERIFY_FAILED, main
from rxdata.conversion import MANIFEST_NAME, convert, verify
from rxdata.errors import OutputExistsError, RecordError
from rxdata.records import open_records
from rxdata.sites import Sites

PER = 3  # sites per shard: the 18 sites of conftest.SMALL_OPTIONS make 6 shards


@pytest.fixture
def converted(small_kaggle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    convert(small_kaggle, out, sites_per_shard=PER, workers=1)
    return out


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def flip_a_byte(shard: Path) -> None:
    """Damage a shard as bit rot does: one byte, same size, inside a PNG's pixel data
    (the framing and the record still parse: only a checksum can find it)."""
    data = bytearray(shard.read_bytes())
    data[data.index(b"IDAT") + 8] ^= 0xFF
    shard.write_bytes(bytes(data))


def written_as(out: Path, algorithm: str) -> None:
    """Leave ``out`` as the version that records ``algorithm`` writes it."""
    if algorithm == "sha256":
        to_legacy_manifest(out)


def test_each_shard_records_its_xxh3_128_checksum(small_kaggle, tmp_path) -> None:
    out = tmp_path / "out"
    result = convert(small_kaggle, out, sites_per_shard=PER, workers=1)
    body = manifest(out)
    assert body["format_version"] == 2
    for entry, record in zip(body["shards"], result.shards, strict=True):
        assert "sha256" not in entry
        data = (out / entry["path"]).read_bytes()
        assert entry["digest"] == record.digest == "xxh3_128:" + xxhash.xxh3_128_hexdigest(data)


def test_an_earlier_versions_conversion_opens_reads_and_verifies(converted, capsys) -> None:
    to_legacy_manifest(converted)
    assert manifest(converted)["format_version"] == 1
    records = open_records(converted)
    assert records.complete and records.n_sites == 18
    assert sum(1 for _ in Sites(converted)) == 18  # every shard hashed (SHA-256) and matched
    assert verify(converted).ok
    assert main(["verify", str(converted)]) == EXIT_OK


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_a_flipped_byte_is_found_by_verify(converted, algorithm, capsys) -> None:
    written_as(converted, algorithm)
    shard = converted / manifest(converted)["shards"][1]["path"]
    flip_a_byte(shard)
    problems = [p for p in verify(converted).problems if "checksum" in p]
    assert len(problems) == 1
    relative = shard.relative_to(converted).as_posix()
    assert problems[0].startswith(f"{relative}: {algorithm} checksum ")
    assert "differs from the manifest's" in problems[0] and "re-run the same" in problems[0]
    capsys.readouterr()
    assert main(["verify", str(converted)]) == EXIT_VERIFY_FAILED
    assert f"{algorithm} checksum" in capsys.readouterr().out


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_a_flipped_byte_is_found_by_sites(converted, algorithm) -> None:
    written_as(converted, algorithm)
    shard = converted / manifest(converted)["shards"][0]["path"]
    flip_a_byte(shard)
    expected = (
        rf"{re.escape(str(shard))}: .*{algorithm} checksum is {algorithm}:\w+, its manifest says "
    )
    with pytest.raises(RecordError, match=expected + rf"{algorithm}:\w+.*rxdata verify"):
        list(Sites(converted, decode=False))
    assert len(list(Sites(converted, decode=False, check_digest=False))) == 18


def test_an_earlier_versions_conversion_resumes_keeping_every_shard(
    small_kaggle, converted
) -> None:
    before = shard_bytes(converted)
    mtimes = {p: p.stat().st_mtime_ns for p in converted.rglob("*.tfrecord")}
    to_legacy_manifest(converted)
    again = convert(small_kaggle, converted, sites_per_shard=PER, workers=1)
    assert again.n_reused == len(again.shards) == 6  # checked by SHA-256, not rewritten
    assert shard_bytes(converted) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    body = manifest(converted)  # recorded as a new conversion would be
    assert body["format_version"] == 2
    for entry in body["shards"]:
        data = (converted / entry["path"]).read_bytes()
        assert entry["digest"] == "xxh3_128:" + xxhash.xxh3_128_hexdigest(data)
        assert "sha256" not in entry
    assert verify(converted).ok


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_a_flipped_byte_is_rewritten_on_resume(small_kaggle, converted, algorithm, caplog):
    good = shard_bytes(converted)
    written_as(converted, algorithm)
    relative = manifest(converted)["shards"][2]["path"]
    flip_a_byte(converted / relative)
    with caplog.at_level(logging.WARNING, logger="rxdata.conversion.shard"):
        again = convert(small_kaggle, converted, sites_per_shard=PER, workers=1)
    assert [s.path for s in again.shards if not s.reused] == [relative]
    assert f"shard {relative} does not match its record ({algorithm} checksum" in caplog.text
    assert shard_bytes(converted) == good
    assert verify(converted).ok


@pytest.mark.parametrize(
    "value, why",
    [
        ("md5:" + "0" * 32, "checksum algorithm 'md5' is not one this rxdata knows"),
        ("xxh3_128:" + "0" * 31, "a xxh3_128 checksum has 32 lower-case hex digits"),
        ("0" * 32, "is not ALGORITHM:HEX"),
    ],
    ids=["unknown-algorithm", "short", "no-algorithm"],
)
def test_an_unknown_checksum_is_a_damaged_manifest(small_kaggle, converted, value, why):
    body = manifest(converted)
    body["shards"][0]["digest"] = value
    (converted / MANIFEST_NAME).write_text(json.dumps(body))
    where = f"{converted / MANIFEST_NAME}: damaged manifest: shard '{body['shards'][0]['path']}'"
    fix = "re-run the convert command (with --overwrite)"
    for attempt in (lambda: open_records(converted), lambda: Sites(converted)):
        with pytest.raises(RecordError) as err:
            attempt()
        assert str(err.value).startswith(where) and why in str(err.value) and fix in str(err.value)
    (problem,) = verify(converted).problems
    assert problem.startswith(where) and why in problem
    with pytest.raises(OutputExistsError, match="damaged manifest"):
        convert(small_kaggle, converted, sites_per_shard=PER, workers=1)
    convert(small_kaggle, converted, sites_per_shard=PER, workers=1, overwrite=True)
    assert verify(converted).ok


@pytest.mark.parametrize(
    "edit, why",
    [
        # the digest is right, the legacy key wrong: which one to check would be a guess
        (lambda e: e.update(sha256="0" * 64), "records both 'digest' and 'sha256'"),
        # a complete conversion's shard with no checksum: was read unchecked by Sites,
        # and verify stopped with "checksum 'xxh3_128' is not ALGORITHM:HEX"
        (lambda e: e.pop("digest"), "records no checksum, which every shard of a complete"),
    ],
    ids=["both-keys", "no-checksum"],
)
def test_a_tampered_checksum_entry_is_a_damaged_manifest(small_kaggle, converted, edit, why):
    body = manifest(converted)
    edit(body["shards"][0])
    (converted / MANIFEST_NAME).write_text(json.dumps(body))
    where = f"{converted / MANIFEST_NAME}: damaged manifest: "
    for attempt in (lambda: open_records(converted), lambda: Sites(converted)):
        with pytest.raises(RecordError) as err:
            attempt()
        assert str(err.value).startswith(where) and why in str(err.value)
        assert "(with --overwrite)" in str(err.value)
    (problem,) = verify(converted).problems
    assert problem.startswith(where) and why in problem
    assert main(["verify", str(converted)]) == EXIT_VERIFY_FAILED
    with pytest.raises(OutputExistsError, match="damaged manifest"):
        convert(small_kaggle, converted, sites_per_shard=PER, workers=1)
    convert(small_kaggle, converted, sites_per_shard=PER, workers=1, overwrite=True)
    assert verify(converted).ok


def interrupted_run(root: Path, out: Path, monkeypatch) -> list[Path]:
    """A run stopped in the middle of its third shard; the two progress records left."""
    import rxdata.conversion.shard as conv

    real, calls = conv.load_site, {"n": 0}

    def crash_on_seventh_site(ctx, row, paths=None):
        calls["n"] += 1
        if calls["n"] == 7:  # in the middle of the third shard: two complete
            raise KeyboardInterrupt
        return real(ctx, row, paths)

    monkeypatch.setattr(conv, "load_site", crash_on_seventh_site)
    with pytest.raises(KeyboardInterrupt):
        convert(root, out, sites_per_shard=PER, workers=1)
    monkeypatch.setattr(conv, "load_site", real)
    return sorted((out / "_progress").glob("*.json"))


def test_an_earlier_versions_interrupted_run_resumes_keeping_its_shards(
    small_kaggle, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "out"
    reference = convert(small_kaggle, tmp_path / "reference", sites_per_shard=PER, workers=1)
    records = interrupted_run(small_kaggle, out, monkeypatch)
    body = manifest(out)
    body["format_version"] = 1  # an incomplete manifest holds no checksum to convert
    (out / MANIFEST_NAME).write_text(json.dumps(body))
    for path in records:  # progress records as the earlier version wrote them
        record = json.loads(path.read_text())
        del record["digest"]
        record["sha256"] = hashlib.sha256((out / record["path"]).read_bytes()).hexdigest()
        path.write_text(json.dumps(record))
    resumed = convert(small_kaggle, out, sites_per_shard=PER, workers=1)
    assert resumed.n_reused == 2
    assert [s.digest for s in resumed.shards] == [s.digest for s in reference.shards]
    assert shard_bytes(out) == shard_bytes(tmp_path / "reference")
    assert verify(out).ok


def test_a_progress_record_with_an_unknown_checksum_rewrites_its_shard(
    small_kaggle, tmp_path, monkeypatch, caplog
) -> None:
    out = tmp_path / "out"
    records = interrupted_run(small_kaggle, out, monkeypatch)
    assert len(records) == 2
    damaged = json.loads(records[0].read_text())
    damaged["digest"] = "blake9:" + "0" * 32
    records[0].write_text(json.dumps(damaged))
    with caplog.at_level(logging.WARNING, logger="rxdata.conversion.manifest"):
        resumed = convert(small_kaggle, out, sites_per_shard=PER, workers=1)
    assert f"{records[0]} is damaged" in caplog.text and "'blake9'" in caplog.text
    reused = [s.path for s in resumed.shards if s.reused]
    assert len(reused) == 1 and damaged["path"] not in reused  # the other complete shard
    assert verify(out).ok


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("format_version", True, r"format_version True, this rxdata reads 1 and 2"),
        ("complete", 1, r"damaged manifest: complete is 1, not true or false"),
        ("complete", None, r"damaged manifest: complete is None, not true or false"),
    ],
)
def test_a_manifest_field_of_another_type_is_damaged_not_guessed(
    converted, field, value, message
) -> None:
    # JSON `true` equals 1 in Python, and 1 is truthy: neither may pass as the real value,
    # or a "complete" conversion would be read without the checks a complete one gets
    body = manifest(converted)
    body[field] = value
    (converted / MANIFEST_NAME).write_text(json.dumps(body))
    with pytest.raises(RecordError, match=message):
        open_records(converted)
    report = verify(converted)
    assert not report.ok and re.search(message, report.problems[0])
