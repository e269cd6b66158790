"""Tests for rxdata._io, the one door to files (local paths here; gs:// goes through gfile)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
import xxhash
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rxdata import _io
from rxdata.errors import MetadataError, RecordError
from rxdata.metadata import find_metadata

chunks = st.lists(st.binary(max_size=300), max_size=8)


@settings(max_examples=50, deadline=None)
@given(parts=chunks)
def test_checksum_while_writing_equals_xxh3_128_of_the_bytes(tmp_path_factory, parts) -> None:
    path = tmp_path_factory.mktemp("io") / "f.bin"
    with _io.atomic_writer(path) as w:
        for part in parts:
            w.write(part)
    data = b"".join(parts)
    expected = "xxh3_128:" + xxhash.xxh3_128_hexdigest(data)
    assert w.digest() == expected == _io.file_digest(path)
    assert _io.digest_and_size(path) == (expected, len(data)) == (expected, w.size)
    assert _io.file_digests(path, ("sha256", "xxh3_128")) == [
        "sha256:" + hashlib.sha256(data).hexdigest(),
        expected,
    ]
    assert _io.read_bytes(path) == data
    assert os.listdir(path.parent) == ["f.bin"]  # no temporary left


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=2000))
def test_write_bytes_atomic_round_trip(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("io") / "x.json"
    assert _io.write_bytes_atomic(path, data) == "xxh3_128:" + xxhash.xxh3_128_hexdigest(data)
    assert _io.read_bytes(path) == data


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "manifest.json"
    _io.write_bytes_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="disk full"), _io.atomic_writer(path) as w:
        w.write(b"new, half written")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]


def test_temporaries_are_hidden_from_globs(tmp_path) -> None:
    tmp = _io.temporary_name(tmp_path / "a.tfrecord")
    assert os.path.dirname(tmp) == str(tmp_path)
    assert os.path.basename(tmp).startswith(".a.tfrecord.tmp-")
    Path(tmp).write_bytes(b"")
    assert _io.glob(str(tmp_path / "*.tfrecord")) == []


def test_open_is_binary_only(tmp_path) -> None:
    with pytest.raises(ValueError, match="binary"):
        _io.open(tmp_path / "x", "w")
    with pytest.raises(FileNotFoundError):
        _io.read_bytes(tmp_path / "missing")


def test_listing_and_removal(tmp_path) -> None:
    _io.makedirs(tmp_path / "a" / "b")
    _io.makedirs(tmp_path / "a" / "b")  # idempotent
    _io.write_bytes_atomic(tmp_path / "a" / "b" / "f.png", b"1")
    assert _io.isdir(tmp_path / "a") and _io.isfile(tmp_path / "a" / "b" / "f.png")
    assert list(_io.walk_files(tmp_path, ".png")) == [str(tmp_path / "a" / "b" / "f.png")]
    assert _io.listdir(tmp_path / "a") == ["b"]
    assert not _io.remove_empty_dir(tmp_path / "a" / "b")  # not empty: kept
    _io.rename(tmp_path / "a" / "b" / "f.png", tmp_path / "g.png")
    assert _io.remove_empty_dir(tmp_path / "a" / "b")
    assert not _io.exists(tmp_path / "a" / "b")
    _io.remove(tmp_path / "g.png")
    assert not _io.exists(tmp_path / "g.png")


@pytest.mark.parametrize(
    ("path", "remote", "folder"),
    [
        ("gs://bucket/a/b.csv", True, "gs://bucket/a"),
        ("s3://bucket/x", True, "s3://bucket"),
        ("/data/x.csv", False, "/data"),
        ("rel/x.csv", False, "rel"),
    ],
)
def test_schemes_and_dirname(path, remote, folder) -> None:
    assert _io.is_remote(path) is remote
    assert _io.dirname(path) == folder


def test_find_metadata_names_the_folder_it_searched(tmp_path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(MetadataError, match="no metadata found"):
        find_metadata(tmp_path / "images")
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "train.csv").write_text("")
    assert find_metadata(tmp_path / "images") == str(tmp_path / "metadata")


_WRITTEN = re.compile(r"xxh3_128:[0-9a-f]{32}|sha256:[0-9a-f]{64}")


@settings(max_examples=50, deadline=None)
@given(data=st.binary(max_size=3000), algorithm=st.sampled_from(_io.DIGEST_ALGORITHMS))
def test_every_checksum_computed_is_read_back(tmp_path_factory, data, algorithm) -> None:
    path = tmp_path_factory.mktemp("io") / "f.bin"
    path.write_bytes(data)
    digest = _io.file_digest(path, algorithm)
    assert _WRITTEN.fullmatch(digest) and _io.digest_algorithm(digest) == algorithm
    assert _io.recorded_digest({"digest": digest}, "m.json") == digest
    with _io.open(path) as f:
        assert _io.HashingReader(f, algorithm).drain() == digest
    if algorithm == "sha256":  # how manifests of earlier versions hold it
        assert _io.recorded_digest({"sha256": digest[7:]}, "m.json") == digest


@given(value=st.text(max_size=80) | st.from_regex(r"[a-z0-9_]{1,10}:[0-9a-fA-F]{0,70}"))
def test_a_malformed_or_unknown_checksum_is_refused_naming_the_file(value) -> None:
    assume(not _WRITTEN.fullmatch(value))
    with pytest.raises(RecordError):
        _io.digest_algorithm(value)
    with pytest.raises(RecordError) as err:
        _io.recorded_digest({"path": "a/b.tfrecord", "digest": value}, "out/manifest.json")
    message = str(err.value)
    assert message.startswith("out/manifest.json: damaged manifest: shard 'a/b.tfrecord': ")
    assert "re-run the convert command (with --overwrite)" in message


def test_an_unknown_algorithm_is_never_hashed(tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    for attempt in (
        lambda: _io.file_digest(tmp_path / "f", "md5"),
        lambda: _io.HashingWriter(_io.open(tmp_path / "g", "wb"), "md5"),
        lambda: _io.HashingReader(_io.open(tmp_path / "f"), "md5"),
    ):
        with pytest.raises(RecordError, match=r"'md5' is not one this rxdata knows"):
            attempt()
