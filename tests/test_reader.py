"""Tests for rxdata.reader: reading shards in plain Python, rxrx1-utils records, bad shards."""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from helpers import png_bytes, rxrx1_utils_example, write_good_shard
from rxdata import tfrecord
from rxdata.errors import RecordError
from rxdata.reader import RecordLayout, decode_example, list_shards, read_layout, read_tfrecord


# ---------------------------------------------------------------------------------------
# rxrx1-utils compatibility: records in its exact layout, written with plain TensorFlow
# ---------------------------------------------------------------------------------------
def test_reads_rxrx1_utils_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 16, 6), dtype=np.uint8)
    path = str(tmp_path / "001.tfrecord")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(rxrx1_utils_example(image, 1138, "negative_control"))
        writer.write(rxrx1_utils_example(image, None, "treatment"))  # a test site
    labelled, unlabelled = list(read_tfrecord(path))
    np.testing.assert_array_equal(labelled["image"], image)
    assert labelled["id_code"] == "HEPG2-08_2_B02"
    assert (labelled["sirna"], labelled["sirna_id"]) == ("1138", 1138)
    assert (unlabelled["sirna"], unlabelled["sirna_id"]) == (None, None)
    assert labelled["encoding"] == "raw" and labelled["dataset"] is None
    assert (labelled["height"], labelled["width"], labelled["channels"]) == (16, 16, 6)


def test_rxrx1_utils_channel_subsets_are_inferred(tmp_path: Path) -> None:
    image = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = str(tmp_path / "rgb.tfrecord")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(rxrx1_utils_example(image, 5, "treatment"))
    record = next(read_tfrecord(path))
    assert record["channels"] == 3
    np.testing.assert_array_equal(record["image"], image)
    bad = tf.train.Example.FromString(rxrx1_utils_example(image, 5, "treatment"))
    bad.features.feature["image"].bytes_list.value[0] = b"x" * 7
    with pytest.raises(RecordError, match="7 bytes has no height/width"):
        decode_example(bad.SerializeToString())


# ---------------------------------------------------------------------------------------
# Bad shards
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", tfrecord.COMPRESSIONS)
def test_truncated_shard_names_file_and_record(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "t.tfrecord"
    write_good_shard(path, compression)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(RecordError, match=r"t\.tfrecord: record \d: corrupt or truncated") as info:
        list(read_tfrecord(path))
    reader = read_tfrecord(path, on_error="skip")
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
        list(read_tfrecord(path))
    reader = read_tfrecord(path, on_error="skip", decode=False)
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
        next(read_tfrecord(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = read_tfrecord(path, on_error="warn")
        assert list(reader) == []
    assert reader.bad == 1 and "c.tfrecord: record 0" in str(caught[0].message)


def test_bad_examples_are_counted_and_skipped(tmp_path: Path) -> None:
    good = write_good_shard(tmp_path / "g.tfrecord", n=2)
    wrong_size = tf.train.Example.FromString(good[0])
    wrong_size.features.feature["height"].int64_list.value[0] = 9
    path = tmp_path / "mixed.tfrecord"
    tfrecord.write_shard(path, [good[0], b"\x00garbage", wrong_size.SerializeToString(), good[1]])
    with pytest.raises(RecordError, match=r"mixed\.tfrecord: record 1: not a serialized"):
        list(read_tfrecord(path))
    reader = read_tfrecord(path, on_error="skip")
    assert [r["site"] for r in reader] == [1, 2]
    assert reader.bad == 2 and "record 2: raw 'image' has 6144 bytes" in reader.errors[1]


def test_not_a_tfrecord_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(RecordError, match=r"x\.png: not a TFRecord file \(first bytes 89 50"):
        read_tfrecord(path)
    with pytest.raises(FileNotFoundError, match=r"missing\.tfrecord"):
        read_tfrecord(tmp_path / "missing.tfrecord")


# ---------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", tfrecord.COMPRESSIONS)
def test_read_layout_peeks_the_first_good_record(tmp_path: Path, compression: str) -> None:
    good = write_good_shard(tmp_path / "g.tfrecord", n=2, side=16)
    path = tmp_path / "l.tfrecord"
    tfrecord.write_shard(path, [b"\x00junk", *good], compression=compression)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match=r"l\.tfrecord: record 0: not a serialized"):
        read_layout(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = read_layout(path, on_error="warn")
    assert layout == RecordLayout("raw", 16, 16, 6) and len(caught) == 1
    # a shard cut inside its first record has no good record; an empty one neither
    data = (tmp_path / "g.tfrecord").read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[:100])
    assert read_layout(tmp_path / "cut.tfrecord", on_error="skip") is None
    with pytest.raises(RecordError, match="record 0: truncated record"):
        read_layout(tmp_path / "cut.tfrecord")
    tfrecord.write_shard(tmp_path / "empty.tfrecord", [], compression=compression)  # type: ignore[arg-type]
    assert read_layout(tmp_path / "empty.tfrecord") is None


def test_list_shards_names_a_folder_and_its_shards(tmp_path) -> None:
    """A conversion's output folder passed as the pattern: an error naming the fix."""
    shard = tmp_path / "out" / "random-42" / "train" / "001.tfrecord"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"is a folder.*random-42/train/001\.tfrecord"):
        list_shards(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        list_shards(str(tmp_path / "o*"))


def test_read_tfrecord_of_a_folder_names_the_fix(tmp_path) -> None:
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a TFRecord shard"):
        list(read_tfrecord(tmp_path))
