"""Tests for rxdata.tfrecord: schema, round trips, rxrx1-utils compatibility, writing."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import make_site, rxrx1_utils_example
from rxdata import reader, tfrecord
from rxdata.errors import OptionsError, RecordError


def png_bytes(plane: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(plane, mode="L").save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------
labels = st.one_of(
    st.just((None, None)),
    st.integers(0, 1138).map(lambda i: (str(i), i)),
    st.tuples(st.sampled_from(["s21721", "UNTREATED", "sirna_250"]), st.integers(0, 1138)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    channels=st.integers(1, 6),
    encoding=st.sampled_from(tfrecord.ENCODINGS),
    compression=st.sampled_from(tfrecord.COMPRESSIONS),
    label=labels,
    dataset=st.sampled_from(["train", "test", None]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip(
    tmp_path: Path,
    height: int,
    width: int,
    channels: int,
    encoding: str,
    compression: str,
    label: tuple[str | None, int | None],
    dataset: str | None,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    sirna, sirna_id = label
    site = make_site(
        sirna=pd.NA if sirna is None else sirna,
        sirna_id=pd.NA if sirna_id is None else sirna_id,
        dataset=dataset,
    )
    if encoding == "raw":
        data = tfrecord.encode_example(site, image=image)
    else:
        pngs = [png_bytes(image[..., c]) for c in range(channels)]
        data = tfrecord.encode_example(site, pngs=pngs)
    path = tmp_path / f"{seed}-{encoding}-{compression}.tfrecord"
    info = tfrecord.write_shard(path, [data, data], compression=compression)  # type: ignore[arg-type]
    assert info.count == 2 and info.size == path.stat().st_size
    assert tfrecord.detect_compression(path) == compression

    records = list(reader.read_tfrecord(path))
    assert len(records) == 2
    rec = records[0]
    np.testing.assert_array_equal(rec["image"], image)
    assert rec["image"].dtype == np.uint8
    assert (rec["height"], rec["width"], rec["channels"]) == (height, width, channels)
    assert rec["encoding"] == encoding
    assert rec["sirna"] == sirna and rec["sirna_id"] == sirna_id
    assert rec["dataset"] == dataset
    assert (rec["id_code"], rec["experiment"], rec["plate"], rec["well"], rec["site"]) == (
        "HEPG2-01_1_B03",
        "HEPG2-01",
        1,
        "B03",
        2,
    )

    # The graph-side parser agrees with the numpy reader.
    parsed = tfrecord.parse_example(tf.constant([data]), encoding=encoding, channels=channels)
    pixels = tfrecord.decode_image(
        parsed["image"], encoding=encoding, height=height, width=width, channels=channels
    )
    np.testing.assert_array_equal(pixels.numpy()[0], image)
    assert int(parsed["sirna_id"][0]) == (-1 if sirna_id is None else sirna_id)


def test_checksum_matches_file_bytes(tmp_path: Path) -> None:
    import xxhash

    path = tmp_path / "a.tfrecord"
    info = tfrecord.write_shard(path, [b"abc", b"def"], compression="gzip")
    assert info.digest == "xxh3_128:" + xxhash.xxh3_128_hexdigest(path.read_bytes())
    assert info.path == str(path)


def test_channel_subset_png_decodes_only_selected(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 6), dtype=np.uint8)
    data = tfrecord.encode_example(make_site(), pngs=[png_bytes(image[..., c]) for c in range(6)])
    parsed = tfrecord.parse_example(tf.constant(data), encoding="png", channels=6)
    out = tfrecord.decode_image(
        parsed["image"], encoding="png", height=5, width=7, channels=6, select=[4, 1]
    )
    np.testing.assert_array_equal(out.numpy(), image[..., [4, 1]])


# ---------------------------------------------------------------------------------------
# rxrx1-utils compatibility: records in its exact layout, written with plain TensorFlow
# ---------------------------------------------------------------------------------------
def test_parse_example_reads_rxrx1_utils_records() -> None:
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 6), dtype=np.uint8)
    serialized = [rxrx1_utils_example(image, 7, "treatment"), rxrx1_utils_example(image, None, "")]
    parsed = tfrecord.parse_example(tf.constant(serialized))
    assert parsed["id_code"].numpy().tolist() == [b"HEPG2-08_2_B02"] * 2
    assert parsed["sirna_id"].numpy().tolist() == [7, -1]


def test_rxdata_raw_records_satisfy_rxrx1_utils_parser() -> None:
    # rxrx1-utils' parse_example asked for these keys and types (sirna required).
    spec = {
        "image": tf.io.FixedLenFeature((), tf.string),
        "well": tf.io.FixedLenFeature((), tf.string),
        "well_type": tf.io.FixedLenFeature((), tf.string),
        "plate": tf.io.FixedLenFeature((), tf.int64),
        "site": tf.io.FixedLenFeature((), tf.int64),
        "cell_type": tf.io.FixedLenFeature((), tf.string),
        "sirna": tf.io.FixedLenFeature((), tf.int64),
        "experiment": tf.io.FixedLenFeature((), tf.string),
    }
    image = np.full((4, 4, 6), 9, np.uint8)
    parsed = tf.io.parse_single_example(tfrecord.encode_example(make_site(), image=image), spec)
    assert int(parsed["sirna"]) == 513
    assert tf.io.decode_raw(parsed["image"], tf.uint8).shape == (96,)


# ---------------------------------------------------------------------------------------
# Encoding errors
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, "exactly one of", id="no-image"),
        pytest.param({"image": np.zeros((2, 2), np.uint8)}, "uint8 array", id="2d"),
        pytest.param({"image": np.zeros((2, 2, 1), np.float32)}, "uint8 array", id="float"),
        pytest.param({"pngs": [b"nope"]}, "channel 1: not a PNG", id="bad-png"),
        pytest.param({"image": np.zeros((2, 2, 1), np.uint8), "height": 3}, "is 2x2", id="height"),
    ],
)
def test_encode_rejects_bad_pixels(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RecordError, match=message) as info:
        tfrecord.encode_example(make_site(), **kwargs)  # type: ignore[arg-type]
    assert "HEPG2-01_1_B03_2" in str(info.value)


def test_encode_rejects_missing_and_bad_columns() -> None:
    image = np.zeros((2, 2, 1), np.uint8)
    with pytest.raises(RecordError, match="required column 'plate'"):
        tfrecord.encode_example(make_site(plate=pd.NA), image=image)
    with pytest.raises(RecordError, match="'site' must be an integer, got 'x'"):
        tfrecord.encode_example(make_site(site="x"), image=image)
    with pytest.raises(RecordError, match="PNG sizes differ"):
        tfrecord.encode_example(
            make_site(), pngs=[png_bytes(np.zeros((2, 2), np.uint8)), png_bytes(image[:1, :, 0])]
        )


# ---------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------
def test_write_shard_failure_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.tfrecord"

    def examples():  # type: ignore[no-untyped-def]
        yield b"one"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        tfrecord.write_shard(path, examples())
    assert os.listdir(path.parent) == []


def test_write_shard_replaces_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "x.tfrecord"
    tfrecord.write_shard(path, [b"old"])
    seen: list[list[str]] = []

    def examples():  # type: ignore[no-untyped-def]
        yield b"new"
        seen.append(sorted(os.listdir(tmp_path)))
        assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == [b"old"]

    tfrecord.write_shard(path, examples())
    assert seen[0][0].startswith(".x.tfrecord.tmp-") and seen[0][1] == "x.tfrecord"
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == [b"new"]
    assert os.listdir(tmp_path) == ["x.tfrecord"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=3000), max_size=6))
def test_uncompressed_shards_are_byte_identical_to_tensorflows_writer(records) -> None:
    """The framing written by rxdata (hashed on the way) is TFRecordWriter's, byte for byte."""
    import tempfile

    import xxhash

    with tempfile.TemporaryDirectory() as folder:
        ours, theirs = Path(folder) / "ours.tfrecord", Path(folder) / "theirs.tfrecord"
        info = tfrecord.write_shard(ours, records)
        with tf.io.TFRecordWriter(str(theirs)) as writer:
            for record in records:
                writer.write(record)
        assert ours.read_bytes() == theirs.read_bytes()
        assert info.digest == "xxh3_128:" + xxhash.xxh3_128_hexdigest(theirs.read_bytes())
        assert (info.count, info.size) == (len(records), theirs.stat().st_size)
        assert [r.numpy() for r in tf.data.TFRecordDataset(str(ours))] == records


@pytest.mark.parametrize("fast", [True, False], ids=["rxdata-framing", "tensorflow-writer"])
def test_both_uncompressed_writers_give_the_same_shard(tmp_path, monkeypatch, fast) -> None:
    """Without google-crc32c's C extension, TensorFlow's writer is used: same bytes."""
    import google_crc32c
    import xxhash

    assert google_crc32c.implementation == "c"  # this environment takes the fast path
    monkeypatch.setattr(tfrecord, "_FAST_CRC32C", fast)
    records = [b"", b"abc", bytes(range(256)) * 40]
    info = tfrecord.write_shard(tmp_path / "x.tfrecord", records)
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    assert (tmp_path / "x.tfrecord").read_bytes() == (tmp_path / "tf.tfrecord").read_bytes()
    assert info.digest == "xxh3_128:" + xxhash.xxh3_128_hexdigest(
        (tmp_path / "x.tfrecord").read_bytes()
    )
    assert tfrecord.masked_crc32c(b"abc") == tfrecord._mask(google_crc32c.value(b"abc"))


def test_bad_compression_option(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="compression='lz4'"):
        tfrecord.write_shard(tmp_path / "x", [], compression="lz4")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Compression detection and empty shards
# ---------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64))
def test_detection_agrees_with_python_codecs(payload: bytes) -> None:
    # through the public function: any GZIP or ZLIB stream, even of a few bytes
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.tfrecord"
        for data, expected in ((gzip.compress(payload), "gzip"), (zlib.compress(payload), "zlib")):
            path.write_bytes(data)
            assert tfrecord.detect_compression(path) == expected


def test_empty_shards(tmp_path: Path) -> None:
    for compression in tfrecord.COMPRESSIONS:
        path = tmp_path / f"{compression}.tfrecord"
        info = tfrecord.write_shard(path, [], compression=compression)  # type: ignore[arg-type]
        assert info.count == 0
        assert tfrecord.detect_compression(path) == compression or info.size == 0
        assert list(reader.read_tfrecord(path)) == []


# ---------------------------------------------------------------------------------------
# Real images
# ---------------------------------------------------------------------------------------
@pytest.mark.real
def test_real_site_round_trips_in_both_encodings(real_root: Path, tmp_path: Path) -> None:
    folder = real_root / "images" / "train" / "HEPG2-01" / "Plate1"
    pngs = [(folder / f"B02_s1_w{c}.png").read_bytes() for c in range(1, 7)]
    expected = np.stack([np.asarray(Image.open(io.BytesIO(p))) for p in pngs], axis=-1)
    site = make_site(experiment="HEPG2-01", well="B02", site=1, sirna="1138", sirna_id=1138)
    raw = tfrecord.encode_example(site, image=expected)
    png = tfrecord.encode_example(site, pngs=pngs)
    assert len(png) < 0.6 * len(raw)  # PNG records are much smaller on real cells
    tfrecord.write_shard(tmp_path / "r.tfrecord", [raw, png])
    for record in reader.read_tfrecord(tmp_path / "r.tfrecord"):
        np.testing.assert_array_equal(record["image"], expected)
    parsed = tfrecord.parse_example(tf.constant(png), encoding="png", channels=6)
    pixels = tfrecord.decode_image(
        parsed["image"], encoding="png", height=512, width=512, channels=6
    )
    np.testing.assert_array_equal(pixels.numpy(), expected)


def test_encodes_rows_of_the_metadata_table(tiny_kaggle: Path) -> None:
    from rxdata.metadata import read_metadata

    meta = read_metadata(tiny_kaggle)
    # one row of each kind: train treatment, controls, unlabelled test treatment
    picks = meta.groupby(["dataset", "well_type"], observed=True).head(1)
    assert meta["sirna_id"].isna().any() and len(picks) >= 4
    image = np.zeros((2, 2, 6), np.uint8)
    for _, row in picks.iterrows():
        for site in (row, row.to_dict()):  # a pandas Series or a plain dict
            record = reader.decode_example(tfrecord.encode_example(site, image=image))
            for key in ("id_code", "dataset", "experiment", "cell_type", "well", "well_type"):
                assert record[key] == str(row[key]), key
            assert (record["plate"], record["site"]) == (row["plate"], row["site"])
            if pd.isna(row["sirna_id"]):
                assert record["sirna_id"] is None
            else:
                assert record["sirna_id"] == int(row["sirna_id"])
            assert record["sirna"] == (None if pd.isna(row["sirna"]) else str(row["sirna"]))


# ---------------------------------------------------------------------------------------
# Deterministic bytes (resumed, parallel and Beam conversions must write identical shards)
# ---------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(order=st.permutations(list(make_site())), label=labels)
def test_example_bytes_do_not_depend_on_key_order(order: list[str], label: tuple) -> None:
    site = make_site(sirna=label[0], sirna_id=label[1])
    shuffled = {key: site[key] for key in order}
    image = np.arange(4 * 4 * 6, dtype=np.uint8).reshape(4, 4, 6)
    assert tfrecord.encode_example(shuffled, image=image) == tfrecord.encode_example(
        site, image=image
    )


@pytest.mark.subprocess
def test_example_bytes_are_identical_in_a_fresh_process() -> None:
    import hashlib
    import subprocess
    import sys

    script = (
        "import hashlib, numpy as np; from rxdata import tfrecord;"
        f"site = {make_site(plate=1, site=2)!r};"
        "image = np.arange(96, dtype=np.uint8).reshape(4, 4, 6);"
        "print(hashlib.sha256(tfrecord.encode_example(site, image=image)).hexdigest())"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    image = np.arange(96, dtype=np.uint8).reshape(4, 4, 6)
    here = tfrecord.encode_example(make_site(plate=1, site=2), image=image)
    assert out.stdout.strip().splitlines()[-1] == hashlib.sha256(here).hexdigest()


def _protobuf_bytes(features: dict) -> bytes:
    example = tf.train.Example()
    for name, (kind, values) in features.items():
        getattr(example.features.feature[name], kind).value.extend(values)
    return example.SerializeToString(deterministic=True)


# names that are prefixes of each other, empty, non-ASCII; values at the varint edges
_names = st.text(alphabet="ab_é\U0001f52c", max_size=4)
_int64s = st.sampled_from([0, 1, 127, 128, 16383, 16384, -1, -(2**63), 2**63 - 1]) | st.integers(
    -(2**63), 2**63 - 1
)
_features = st.dictionaries(
    _names,
    st.one_of(
        st.tuples(st.just("bytes_list"), st.lists(st.binary(max_size=300), max_size=3)),
        st.tuples(st.just("int64_list"), st.lists(_int64s, max_size=3)),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(features=_features)
def test_hand_serialized_example_is_protobufs_deterministic_bytes(features: dict) -> None:
    from google.protobuf.internal import api_implementation

    from rxdata._protobuf import example_features, serialize_example

    data = serialize_example(features)
    assert example_features(data) == {k: list(v) for k, (_, v) in features.items()}
    assert tf.train.Example.FromString(data) == tf.train.Example.FromString(
        _protobuf_bytes(features)
    )
    if api_implementation.Type() == "upb":  # protobuf's default backend: the same bytes
        assert data == _protobuf_bytes(features)


def test_hand_serializer_refuses_what_protobuf_refuses() -> None:
    from rxdata._protobuf import serialize_example

    with pytest.raises(RecordError, match="'n': 9223372036854775808 is outside the int64"):
        serialize_example({"n": ("int64_list", [2**63])})
    with pytest.raises(RecordError, match="kind 'float_list' is not one of"):
        serialize_example({"f": ("float_list", [1.0])})


@pytest.mark.subprocess
def test_encoding_a_site_imports_no_tensorflow() -> None:
    import subprocess
    import sys

    script = (
        "import sys, numpy as np; from rxdata import tfrecord;"
        f"site = {make_site(plate=1, site=2)!r};"
        "tfrecord.encode_example(site, image=np.zeros((4, 4, 6), np.uint8));"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_reading_names_live_in_reader_only() -> None:
    # Reading shards in plain Python is rxdata.reader's; tfrecord (which reader imports)
    # has no name of it, so no hidden reverse edge from tfrecord to reader.
    for name in ("read_tfrecord", "decode_example", "read_layout", "RecordLayout", "RecordReader"):
        assert callable(getattr(reader, name))
        assert not hasattr(tfrecord, name), name
    assert not hasattr(tfrecord, "CHANNELS")  # the feature key is CHANNELS_KEY
    assert tfrecord.CHANNELS_KEY == "channels"
    import rxdata

    assert rxdata.read_tfrecord is reader.read_tfrecord
