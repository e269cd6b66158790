"""Tests for rxdata.tfrecord: schema, round trips, rxrx1-utils compatibility, bad shards."""

from __future__ import annotations

import gzip
import io
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rxdata import tfrecord
from rxdata.errors import OptionsError, RecordError


def png_bytes(plane: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(plane, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_site(**overrides: object) -> dict[str, object]:
    site: dict[str, object] = {
        "site_id": "HEPG2-01_1_B03_2",
        "id_code": "HEPG2-01_1_B03",
        "dataset": "train",
        "experiment": "HEPG2-01",
        "cell_type": "HEPG2",
        "plate": np.int8(1),
        "well": "B03",
        "site": np.int8(2),
        "well_type": "treatment",
        "sirna": "513",
        "sirna_id": 513,
    }
    site.update(overrides)
    return site


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

    records = list(tfrecord.read_tfrecord(path))
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


def test_sha256_matches_file_bytes(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "a.tfrecord"
    info = tfrecord.write_shard(path, [b"abc", b"def"], compression="gzip")
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
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
def rxrx1_utils_example(image: np.ndarray, sirna: int | None, well_type: str) -> bytes:
    def b(v: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")]))

    def i(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    features = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        "well": b("B02"),
        "well_type": b(well_type),
        "experiment": b("HEPG2-08"),
        "plate": i(2),
        "site": i(1),
        "cell_type": b("HEPG2"),
    }
    if sirna is not None:
        features["sirna"] = i(sirna)
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def test_reads_rxrx1_utils_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 16, 6), dtype=np.uint8)
    path = str(tmp_path / "001.tfrecord")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(rxrx1_utils_example(image, 1138, "negative_control"))
        writer.write(rxrx1_utils_example(image, None, "treatment"))  # a test site
    labelled, unlabelled = list(tfrecord.read_tfrecord(path))
    np.testing.assert_array_equal(labelled["image"], image)
    assert labelled["id_code"] == "HEPG2-08_2_B02"
    assert (labelled["sirna"], labelled["sirna_id"]) == ("1138", 1138)
    assert (unlabelled["sirna"], unlabelled["sirna_id"]) == (None, None)
    assert labelled["encoding"] == "raw" and labelled["dataset"] is None
    assert (labelled["height"], labelled["width"], labelled["channels"]) == (16, 16, 6)

    serialized = [rxrx1_utils_example(image, 7, "treatment"), rxrx1_utils_example(image, None, "")]
    parsed = tfrecord.parse_example(tf.constant(serialized))
    assert parsed["id_code"].numpy().tolist() == [b"HEPG2-08_2_B02"] * 2
    assert parsed["sirna_id"].numpy().tolist() == [7, -1]


def test_rxrx1_utils_channel_subsets_are_inferred(tmp_path: Path) -> None:
    image = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = str(tmp_path / "rgb.tfrecord")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(rxrx1_utils_example(image, 5, "treatment"))
    record = next(tfrecord.read_tfrecord(path))
    assert record["channels"] == 3
    np.testing.assert_array_equal(record["image"], image)
    bad = tf.train.Example.FromString(rxrx1_utils_example(image, 5, "treatment"))
    bad.features.feature["image"].bytes_list.value[0] = b"x" * 7
    with pytest.raises(RecordError, match="7 bytes has no height/width"):
        tfrecord.decode_example(bad.SerializeToString())


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


def test_bad_compression_option(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="compression='lz4'"):
        tfrecord.write_shard(tmp_path / "x", [], compression="lz4")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Bad shards
# ---------------------------------------------------------------------------------------
def write_good_shard(
    path: Path, compression: str = "none", n: int = 3, side: int = 32
) -> list[bytes]:
    # Distinct random pixels do not compress, so a cut near the end damages only the last
    # record, in every compression.
    rng = np.random.default_rng(2)
    data = [
        tfrecord.encode_example(
            make_site(site=s + 1), image=rng.integers(0, 256, (side, side, 6), dtype=np.uint8)
        )
        for s in range(n)
    ]
    tfrecord.write_shard(path, data, compression=compression)  # type: ignore[arg-type]
    return data


@pytest.mark.parametrize("compression", tfrecord.COMPRESSIONS)
def test_truncated_shard_names_file_and_record(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "t.tfrecord"
    write_good_shard(path, compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(RecordError, match=r"t\.tfrecord: record \d: corrupt or truncated") as info:
        list(tfrecord.read_tfrecord(path))
    reader = tfrecord.read_tfrecord(path, on_error="skip")
    good = list(reader)
    # The records before the cut survive; for GZIP/ZLIB (where TensorFlow's inflater
    # fails early, reading ahead in blocks) they are salvaged through Python's zlib.
    assert [r["site"] for r in good] == [1, 2]
    assert reader.bad == 1 and reader.count == 2
    if compression == "none":
        assert "record 2" in str(info.value)


def inflated_until_error(data: bytes, wbits: int) -> bytes:
    """Everything zlib inflates before it reports an error, fed one byte at a time."""
    inflater = zlib.decompressobj(wbits)
    out = []
    for i in range(len(data)):
        try:
            out.append(inflater.decompress(data[i : i + 1]))
        except zlib.error:
            break
    return b"".join(out)


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9], ids=["10%", "50%", "90%"])
def test_one_flipped_byte_salvages_every_record_before_the_damage(
    tmp_path: Path, compression: str, where: float
) -> None:
    # A small shard: TensorFlow inflates it in one block and, on the error, returns none
    # of its records. Every record that ends before the first damaged inflated byte must
    # come back, and nothing after it.
    plain = tmp_path / "plain.tfrecord"
    good = write_good_shard(plain, n=12, side=16)
    path = tmp_path / "d.tfrecord"
    tfrecord.write_shard(path, good, compression=compression)  # type: ignore[arg-type]
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))

    stream = plain.read_bytes()
    inflated = inflated_until_error(bytes(data), 31 if compression == "gzip" else 15)
    damage = next(i for i, (x, y) in enumerate(zip(inflated, stream, strict=False)) if x != y)
    ends = np.cumsum([len(g) + 16 for g in good])  # 12 bytes of header, 4 of CRC
    expected = int(np.sum(ends <= damage))
    assert 0 < expected < len(good)  # records on both sides of the damage

    with pytest.raises(RecordError, match=r"d\.tfrecord: record \d+: corrupt or truncated"):
        list(tfrecord.read_tfrecord(path))
    reader = tfrecord.read_tfrecord(path, on_error="skip", decode=False)
    got = [r["site"] for r in reader]
    assert got == list(range(1, expected + 1))
    assert reader.bad == 1 and reader.count == expected


def test_corrupt_record_payload(tmp_path: Path) -> None:
    path = tmp_path / "c.tfrecord"
    write_good_shard(path)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF  # inside record 0's payload: its CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="record 0: corrupt"):
        next(tfrecord.read_tfrecord(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = tfrecord.read_tfrecord(path, on_error="warn")
        assert list(reader) == []
    assert reader.bad == 1 and "c.tfrecord: record 0" in str(caught[0].message)


def test_bad_examples_are_counted_and_skipped(tmp_path: Path) -> None:
    good = write_good_shard(tmp_path / "g.tfrecord", n=2)
    wrong_size = tf.train.Example.FromString(good[0])
    wrong_size.features.feature["height"].int64_list.value[0] = 9
    path = tmp_path / "mixed.tfrecord"
    tfrecord.write_shard(path, [good[0], b"\x00garbage", wrong_size.SerializeToString(), good[1]])
    with pytest.raises(RecordError, match=r"mixed\.tfrecord: record 1: not a serialized"):
        list(tfrecord.read_tfrecord(path))
    reader = tfrecord.read_tfrecord(path, on_error="skip")
    assert [r["site"] for r in reader] == [1, 2]
    assert reader.bad == 2 and "record 2: raw 'image' has 6144 bytes" in reader.errors[1]


def test_not_a_tfrecord_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(RecordError, match=r"x\.png: not a TFRecord file \(first bytes 89 50"):
        tfrecord.read_tfrecord(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.tfrecord"):
        tfrecord.read_tfrecord(tmp_path / "missing.tfrecord")


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
        assert list(tfrecord.read_tfrecord(path)) == []


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
    for record in tfrecord.read_tfrecord(tmp_path / "r.tfrecord"):
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
            record = tfrecord.decode_example(tfrecord.encode_example(site, image=image))
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


@pytest.mark.parametrize("compression", tfrecord.COMPRESSIONS)
def test_read_layout_peeks_the_first_good_record(tmp_path: Path, compression: str) -> None:
    good = write_good_shard(tmp_path / "g.tfrecord", n=2, side=16)
    path = tmp_path / "l.tfrecord"
    tfrecord.write_shard(path, [b"\x00junk", *good], compression=compression)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"l\.tfrecord: record 0: not a serialized"):
        tfrecord.read_layout(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = tfrecord.read_layout(path, on_error="warn")
    assert layout == tfrecord.RecordLayout("raw", 16, 16, 6) and len(caught) == 1
    # a shard cut inside its first record has no good record; an empty one neither
    data = (tmp_path / "g.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[:100])
    assert tfrecord.read_layout(tmp_path / "cut.tfrecord", on_error="skip") is None
    with pytest.raises(RecordError, match="record 0: truncated record"):
        tfrecord.read_layout(tmp_path / "cut.tfrecord")
    tfrecord.write_shard(tmp_path / "empty.tfrecord", [], compression=compression)  # type: ignore[arg-type]
    assert tfrecord.read_layout(tmp_path / "empty.tfrecord") is None
