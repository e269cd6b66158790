"""rxdata.reader.Sites and the pure-Python Example parser: reading without TensorFlow.

The parser is checked against protobuf's (through ``tf.train.Example``) on generated
examples; ``Sites`` against the conversion's manifest (every site exactly once over any
split into parts), in a child process without TensorFlow, and under a PyTorch
``DataLoader`` with two workers where PyTorch is installed.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import rxdata
from rxdata._protobuf import example_features
from rxdata.errors import IncompleteConversionError, OptionsError, RecordError
from rxdata.reader import decode_example
from rxdata.sites import Sites

REPO = Path(__file__).resolve().parents[1]


# --- the Example parser -------------------------------------------------------------------

feature_values = st.one_of(
    st.lists(st.binary(max_size=20), max_size=4).map(lambda v: ("bytes_list", v)),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4).map(lambda v: ("int64_list", v)),
    st.lists(st.floats(width=32, allow_nan=False), max_size=4).map(lambda v: ("float_list", v)),
    st.just(("none", [])),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), feature_values, max_size=6))
def test_parser_equals_protobuf(features):
    example = tf.train.Example()
    for key, (kind, values) in features.items():
        feature = example.features.feature[key]
        if kind != "none":
            getattr(feature, kind).value.extend(values)
    data = example.SerializeToString()
    parsed = example_features(data)
    want = {}
    for key, feature in tf.train.Example.FromString(data).features.feature.items():
        kind = feature.WhichOneof("kind")
        want[key] = [] if kind is None else list(getattr(feature, kind).value)
    assert parsed == want


def test_parser_merges_like_protobuf():
    one = tf.train.Example()
    one.features.feature["a"].int64_list.value.extend([1, 2])
    one.features.feature["b"].bytes_list.value.append(b"x")
    two = tf.train.Example()
    two.features.feature["a"].int64_list.value.append(3)  # a map key again: the last wins
    two.features.feature["b"].float_list.value.append(0.5)  # another oneof member: replaces
    data = one.SerializeToString() + two.SerializeToString()
    want = tf.train.Example.FromString(data).features.feature
    parsed = example_features(data)
    assert parsed == {"a": list(want["a"].int64_list.value), "b": [0.5]} == {"a": [3], "b": [0.5]}
    # a Feature's own fields merge: two int64 lists in one Feature concatenate
    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[7])).SerializeToString()
    entry = b"\x0a\x01c" + b"\x12" + bytes([2 * len(feature)]) + feature + feature
    data = b"\x0a" + bytes([len(entry) + 2]) + b"\x0a" + bytes([len(entry)]) + entry
    assert example_features(data) == {"c": [7, 7]}
    assert list(tf.train.Example.FromString(data).features.feature["c"].int64_list.value) == [7, 7]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_parser_rejects_garbage_with_record_error(data):
    try:
        tf.train.Example.FromString(data)
        accepted = True
    except Exception:
        accepted = False
    try:
        example_features(data)
    except RecordError:
        assert not accepted, f"protobuf parses {data!r}, rxdata does not"


def test_decode_example_names_bad_text():
    example = tf.train.Example()
    for key, value in [("experiment", b"\xff\xfe"), ("well", b"B02")]:
        example.features.feature[key].bytes_list.value.append(value)
    for key in ("plate", "site"):
        example.features.feature[key].int64_list.value.append(1)
    example.features.feature["image"].bytes_list.value.append(bytes(6 * 4))
    with pytest.raises(RecordError, match=r"'experiment' is not UTF-8"):
        decode_example(example.SerializeToString())


# --- Sites over a conversion ---------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tiny_kaggle, tmp_path_factory) -> Path:
    """A raw conversion of the tiny data set in 40-site shards (5 train, 3 test)."""
    out = tmp_path_factory.mktemp("sites") / "records"
    rxdata.convert(tiny_kaggle, out, encoding="raw", sites_per_shard=40, workers=1)
    return out


def site_key(record) -> str:
    return f"{record['id_code']}_{record['site']}"


def manifest_sites(folder: Path, dataset: str | None = None) -> list[str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return sorted(
        site
        for shard in manifest["shards"]
        if dataset in (None, shard["dataset"])
        for site in shard["site_ids"]
    )


@pytest.mark.parametrize("parts", [1, 2, 3, 20], ids=lambda n: f"{n}-parts")
def test_every_site_once_over_the_parts(converted, parts):
    seen = collections.Counter()
    for index in range(parts):
        for record in Sites(converted, split="train", shard_index=index, shard_count=parts):
            seen[site_key(record)] += 1
    assert sorted(seen) == manifest_sites(converted, "train")
    assert set(seen.values()) == {1}


def test_records_equal_the_tensorflow_reader(converted):
    sites = Sites(converted)
    assert sites.count == len(manifest_sites(converted)) == 336
    got = {site_key(r): r for r in sites}
    for path in sites.files:
        for want in rxdata.read_tfrecord(path):
            record = got[site_key(want)]
            np.testing.assert_array_equal(record["image"], want["image"])
            for key, value in want.items():
                if key != "image":
                    missing = -1 if key == "sirna_id" else ""
                    assert record[key] == (missing if value is None else value), key
    assert {r["dataset"] for r in got.values()} == {"train", "test"}
    assert any(r["sirna_id"] == -1 and r["sirna"] == "" for r in got.values())  # test sites


def test_shard_files_and_patterns(converted):
    files = sorted(str(p) for p in converted.glob("*/train/*.tfrecord"))
    assert Sites(files).files == files
    pattern = str(converted / "*" / "train" / "*.tfrecord")
    assert sum(1 for _ in Sites(pattern)) == len(manifest_sites(converted, "train"))
    assert Sites(pattern).count is None
    with pytest.raises(OptionsError, match=r"split='train' needs a conversion"):
        Sites(pattern, split="train")
    with pytest.raises(FileNotFoundError, match=r"no shards to read: \[\] names none"):
        Sites([])
    with pytest.raises(FileNotFoundError, match=r"no TFRecord files match"):
        Sites(str(converted / "nothing-*.tfrecord"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shard_count": 0}, r"shard_count=0; need an integer >= 1"),
        ({"shard_index": 2, "shard_count": 2}, r"shard_index=2; need an integer in 0\.\.1"),
        ({"shard_index": -1}, r"shard_index=-1"),
        ({"on_error": "ignore"}, r"on_error='ignore'; allowed"),
    ],
)
def test_bad_options(converted, kwargs, match):
    with pytest.raises(OptionsError, match=match):
        Sites(converted, **kwargs)


def test_unknown_split_and_incomplete_conversion(converted, tmp_path):
    with pytest.raises(OptionsError, match=r"split='valid' is not a split .* \['train', 'test'\]"):
        Sites(converted, split="valid")
    copy = tmp_path / "records"
    shutil.copytree(converted, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["complete"] = False
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompleteConversionError, match=r"re-run the same `rxdata convert`"):
        Sites(copy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no manifest.json in it"):
        Sites(tmp_path / "empty")


def test_a_records_handle_or_a_folder_inside_the_conversion(converted):
    records = rxdata.open_records(converted)
    sites = Sites(records, split="test")
    assert sites.records is records and sites.files == sorted(records.files("test"))
    assert sites.count == records.split_sizes["test"] == len(manifest_sites(converted, "test"))
    inner = Sites(converted / "random-42" / "train")  # open_records: that split's shards
    assert inner.files == sorted(records.files("train"))
    assert inner.count == len(manifest_sites(converted, "train"))
    assert Sites(str(converted / "random-42" / "train" / "*.tfrecord")).records is None
    with pytest.raises(OptionsError, match=r"allow_incomplete='yes' must be True or False"):
        Sites(records, allow_incomplete="yes")


def test_incomplete_conversion_read_only_when_asked(converted, tmp_path, caplog):
    """allow_incomplete reads the finished shards (counted) and says how many of how many."""
    copy = tmp_path / "records"
    shutil.copytree(converted, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["complete"] = False
    kept = [s for s in manifest["shards"] if s["dataset"] == "train"][:2]
    progress = copy / "_progress"
    progress.mkdir()
    for shard in kept:  # what a run that finished two train shards leaves
        (progress / (shard["path"].replace("/", "__") + ".json")).write_text(json.dumps(shard))
    for shard in manifest["shards"]:
        shard.pop("digest"), shard.pop("count")
        if shard not in kept:
            (copy / shard["path"]).unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompleteConversionError, match=r"allow_incomplete=True"):
        Sites(copy, split="train")
    with caplog.at_level("WARNING", logger="rxdata.records"):
        sites = Sites(copy, split="train", allow_incomplete=True)
    assert "reading 80 of 224 sites (2 of 6 shards)" in caplog.text
    assert sites.count == 80 and sum(1 for _ in sites) == 80


@pytest.mark.parametrize("how", ["dotdot", "symlink"])
def test_a_tampered_manifest_is_refused(converted, tmp_path, how):
    copy = tmp_path / "records"
    shutil.copytree(converted, copy)
    (tmp_path / "victim.tfrecord").write_bytes(b"SECRET")
    manifest = json.loads((copy / "manifest.json").read_text())
    if how == "symlink":
        (copy / "random-42" / "train" / "linked").symlink_to(tmp_path)
        manifest["shards"][0]["path"] = "random-42/train/linked/victim.tfrecord"
    else:
        manifest["shards"][0]["path"] = "../victim.tfrecord"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RecordError, match=r"damaged manifest"):
        Sites(copy)


def test_changed_payload_is_found_by_the_manifest_hash(converted, tmp_path):
    copy = tmp_path / "records"
    shutil.copytree(converted, copy)
    shard = sorted(copy.glob("*/test/*.tfrecord"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside some image: framing and parsing still succeed
    shard.write_bytes(bytes(data))
    found = r"xxh3_128 checksum is xxh3_128:.* manifest says .*rxdata verify"
    with pytest.raises(RecordError, match=rf"{re.escape(str(shard))}: .*{found}"):
        list(Sites(copy, split="test"))
    sites = list(Sites(copy, split="test", on_error="skip"))
    assert len(sites) == len(manifest_sites(copy, "test"))  # skip: the records are read
    unchecked = list(Sites(copy, split="test", check_digest=False))
    assert len(unchecked) == len(sites)
    # bare files have no manifest to check against: the length CRCs only
    assert len(list(Sites(str(shard)))) == 40


def test_truncated_shard(converted, tmp_path):
    shard = sorted(converted.glob("*/train/*.tfrecord"))[0]
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(RecordError, match=r"cut\.tfrecord: record 39: truncated record"):
        list(Sites(str(cut)))
    with pytest.warns(UserWarning, match=r"record 39: truncated"):
        assert len(list(Sites(str(cut), on_error="warn"))) == 39


def run_child(code: str, tmp_path: Path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_sites_never_import_tensorflow(converted, tmp_path):
    out = run_child(
        f"""
        import sys
        from rxdata.sites import Sites
        n = sum(1 for _ in Sites({str(converted)!r}))
        print(n, "tensorflow" in sys.modules)
        """,
        tmp_path,
    )
    assert out.split() == ["336", "False"]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is not installed: `make test-backends` installs the torch extra",
)
def test_torch_dataloader_reads_each_site_once(converted, tmp_path):
    out = run_child(
        f"""
        import collections, json, sys
        import torch
        from torch.utils.data import DataLoader, IterableDataset
        from rxdata.sites import Sites

        class RxRx1(Sites, IterableDataset):
            def __iter__(self):
                for site in super().__iter__():
                    site["tensorflow"] = "tensorflow" in sys.modules
                    yield site

        loader = DataLoader(RxRx1({str(converted)!r}), batch_size=16, num_workers=2)
        seen = collections.Counter()
        for epoch in range(2):
            for batch in loader:
                assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (
                    32, 32, 6)
                assert not batch["tensorflow"].any(), "a worker imported TensorFlow"
                for id_code, site in zip(batch["id_code"], batch["site"].tolist()):
                    seen[(epoch, f"{{id_code}}_{{site}}")] += 1
        print(json.dumps({{"sites": sorted(k for e, k in seen if e == 0),
                          "counts": sorted(set(seen.values())),
                          "epochs": sorted({{e for e, _ in seen}}),
                          "tensorflow": "tensorflow" in sys.modules}}))
        """,
        tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["sites"] == manifest_sites(converted)
    assert result["counts"] == [1]  # every site exactly once per epoch
    assert result["epochs"] == [0, 1]
    assert result["tensorflow"] is False
