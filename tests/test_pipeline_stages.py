"""Each stage of rxdata.pipeline alone, with only its option group; and the groups."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rxdata import tfrecord
from rxdata.errors import OptionsError, RecordError
from rxdata.pipeline import (
    AugmentOptions,
    DistributeOptions,
    OrderOptions,
    PipelineOptions,
    PlacementOptions,
    ReadOptions,
    Selection,
    stages,
)
from rxdata.pipeline.options import AUTOTUNE
from rxdata.reader import RecordLayout
from rxdata.splits import Split
from rxdata.transforms import stats_function

RAW = RecordLayout("raw", 4, 6, 3)


def site(i: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "experiment": ("HEPG2-01", "U2OS-02")[i % 2],
        "plate": 1 + i % 3,
        "well": f"B{2 + i:02d}",
        "site": 1,
        "sirna_id": i,
        "well_type": "treatment",
    }
    return {**row, **extra}


def image(i: int, h: int = 4, w: int = 6, c: int = 3) -> np.ndarray:
    return np.full((h, w, c), i, np.uint8) + np.arange(c, dtype=np.uint8)


def records(rows: list[dict[str, object]], encoding: str = "raw") -> list[bytes]:
    out = []
    for i, row in enumerate(rows):
        img = image(i)
        if encoding == "raw":
            out.append(tfrecord.encode_example(row, image=img))
        else:
            pngs = []
            for c in range(img.shape[-1]):
                buf = io.BytesIO()
                Image.fromarray(img[..., c]).save(buf, format="PNG")
                pngs.append(buf.getvalue())
            out.append(tfrecord.encode_example(row, pngs=pngs))
    return out


def shard(path: Path, rows: list[dict[str, object]], encoding: str = "raw") -> str:
    tfrecord.write_shard(str(path), records(rows, encoding))
    return str(path)


def ids(ds: tf.data.Dataset, layout: RecordLayout = RAW) -> list[int]:
    """The sirna_id of each serialized record of ``ds``."""
    out = []
    for serialized in ds:
        parsed = tfrecord.parse_example(
            serialized, encoding=layout.encoding, channels=layout.channels, keys={"sirna_id"}
        )
        out.append(int(parsed["sirna_id"]))
    return out


# --- options: groups that check themselves ---------------------------------------------------


def test_pipeline_options_is_every_group_with_the_same_defaults() -> None:
    opts = PipelineOptions()
    groups = (ReadOptions, OrderOptions, AugmentOptions, PlacementOptions, DistributeOptions)
    names = set()
    for group in groups:
        assert isinstance(opts, group)
        for f in dataclasses.fields(group):
            assert getattr(opts, f.name) == getattr(group(), f.name), f.name
            names.add(f.name)
    assert names == {f.name for f in dataclasses.fields(PipelineOptions)}  # nothing else
    assert len(names) == 24  # the 22 options and the derived crop/resize pairs
    assert max(len(dataclasses.fields(g)) for g in groups) <= 6  # each group small


@pytest.mark.parametrize(
    ("group", "kwargs", "message"),
    [
        (ReadOptions, {"compression": "lz4"}, "compression='lz4'; allowed: auto, none"),
        (ReadOptions, {"cycle_length": 0}, "cycle_length=0; expected a positive int, AUTOTUNE"),
        (ReadOptions, {"prefetch": -3}, r"prefetch=-3; expected an int >= 0 or AUTOTUNE"),
        (OrderOptions, {"batch_by": "well"}, "batch_by='well'; allowed: None, plate"),
        (OrderOptions, {"repeat": 1}, "repeat=1; expected True or False"),
        (AugmentOptions, {"crop_size": (0, 2)}, r"crop_size=\(0, 2\); expected a positive"),
        (AugmentOptions, {"dihedral": "yes"}, "dihedral='yes'; expected True or False"),
        (PlacementOptions, {"jit": None}, "jit=None; expected True or False"),
        (PlacementOptions, {"dtype": "int8"}, "dtype='int8'; allowed: float32"),
        (DistributeOptions, {"data_service": "nohost"}, "data_service='nohost'; expected"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_each_group_checks_its_own_fields(group: type, kwargs: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        group(**kwargs)
    with pytest.raises(OptionsError, match=message):  # and so does the flat spelling
        PipelineOptions(**kwargs)


def test_groups_are_frozen_keyword_only_and_replaceable() -> None:
    opts = PipelineOptions(crop_size=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.crop_size = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        ReadOptions("gzip")  # type: ignore[misc]
    again = dataclasses.replace(opts, crop_size=(4, 6), on_error="skip")
    assert again.crop == (4, 6) and again.on_error == "skip" and opts.crop == (8, 8)
    with pytest.raises(OptionsError, match="intensity_jitter"):
        dataclasses.replace(opts, intensity_jitter=(1.5, 0.0))


def test_order_resolves_its_none_defaults_by_mode() -> None:
    assert OrderOptions().is_deterministic(training=False)
    assert not OrderOptions().is_deterministic(training=True)
    assert OrderOptions(deterministic=True).is_deterministic(training=True)
    assert OrderOptions().drops_remainder(training=True)
    assert not OrderOptions().drops_remainder(training=False)
    assert not OrderOptions(drop_remainder=False).drops_remainder(training=True)
    assert ReadOptions(num_parallel_calls=AUTOTUNE).tolerant is False
    assert ReadOptions(on_error="warn").tolerant


# --- selection ----------------------------------------------------------------------------


def test_selection_checks_every_filter_before_reading() -> None:
    assert Selection(experiments=["HEPG2-1", "U2OS-02"]).experiments == ("HEPG2-01", "U2OS-02")
    assert Selection(cell_types="RPE").cell_types == ("RPE",)
    with pytest.raises(OptionsError, match=r"cell_types='hepg2'.*HEPG2"):
        Selection(cell_types="hepg2")
    with pytest.raises(OptionsError, match="experiments is empty"):
        Selection(experiments=[])
    with pytest.raises(OptionsError, match="split= needs part="):
        Selection(split=Split({"a": ["HEPG2-01"]}))
    with pytest.raises(OptionsError, match="part= needs split="):
        Selection(part="a")
    with pytest.raises(OptionsError, match=r"part \['b'\] is not in the split's parts"):
        Selection(split=Split({"a": ["HEPG2-01"]}), part="b")
    assert Selection().predicates() == []


# --- build time: list shards, check layout ------------------------------------------------


def test_list_shards_reads_literal_paths_and_names_a_missing_pattern(tmp_path: Path) -> None:
    literal = shard(tmp_path / "plate[1].tfrecord", [site(0)])
    assert stages.list_shards(literal) == [literal]
    assert stages.list_shards([tmp_path / "plate*"]) == [literal]
    with pytest.raises(FileNotFoundError, match="nothing"):
        stages.list_shards(str(tmp_path / "nothing*.tfrecord"))


def test_check_layout_fits_the_options_to_the_records(tmp_path: Path) -> None:
    files = [shard(tmp_path / "a.tfrecord", [site(0), site(1)])]
    read, place, aug = ReadOptions(), PlacementOptions(), AugmentOptions()
    geo = stages.check_layout(files, read, place, aug, training=True)
    assert geo == stages.Geometry(RAW, select=None, channels=3, size=(4, 6))
    geo = stages.check_layout(
        files, read, PlacementOptions(channels=(3, 1)), AugmentOptions(crop_size=3), True
    )
    assert (geo.select, geo.channels, geo.size) == ((2, 0), 2, (3, 3))
    resized = stages.check_layout(files, read, place, AugmentOptions(resize_to=(8, 2)), False)
    assert resized.size == (8, 2)
    with pytest.raises(OptionsError, match=r"channels=\(4,\); the records hold channels 1\.\.3"):
        stages.check_layout(files, read, PlacementOptions(channels=(4,)), aug, True)
    with pytest.raises(OptionsError, match=r"crop_size=5 is larger than the 4x6 images"):
        stages.check_layout(files, read, place, AugmentOptions(crop_size=5), True)
    with pytest.raises(OptionsError, match="dihedral=True needs square images, these are 4x6"):
        stages.check_layout(files, read, place, AugmentOptions(dihedral=True), training=True)
    # evaluation never augments: no square needed
    stages.check_layout(files, read, place, AugmentOptions(dihedral=True), training=False)
    (tmp_path / "b.tfrecord").write_bytes(b"not a record")
    with pytest.raises(RecordError, match=r"b\.tfrecord"):
        stages.check_layout([*files, str(tmp_path / "b.tfrecord")], read, place, aug, True)


# --- records ------------------------------------------------------------------------------


def test_read_records_shards_files_or_records_among_pipelines(tmp_path: Path) -> None:
    files = [shard(tmp_path / f"{k}.tfrecord", [site(2 * k), site(2 * k + 1)]) for k in range(4)]
    order = OrderOptions()
    every = ids(stages.read_records(files, RAW, ReadOptions(), order, training=False))
    assert every == [0, 2, 4, 6, 1, 3, 5, 7]  # interleaved, one record per shard in turn
    by_file = stages.read_records(files, RAW, ReadOptions(), order, training=False, shard=(2, 1))
    assert sorted(ids(by_file)) == [2, 3, 6, 7]  # files 1 and 3
    few = stages.read_records(files[:1], RAW, ReadOptions(), order, training=False, shard=(2, 1))
    assert ids(few) == [1]  # fewer files than pipelines: every 2nd record


def test_read_records_shuffles_and_repeats_the_file_order_in_training(tmp_path: Path) -> None:
    files = [shard(tmp_path / f"{k}.tfrecord", [site(k)]) for k in range(8)]
    read = ReadOptions(cycle_length=1)
    order = OrderOptions(seed=3, repeat=True)
    ds = stages.read_records(files, RAW, read, order, training=True)
    first = ids(ds.take(16))
    assert sorted(first[:8]) == sorted(first[8:]) == list(range(8))
    assert first[:8] != list(range(8)) and first[:8] != first[8:]  # reshuffled each epoch
    again = ids(stages.read_records(files, RAW, read, order, training=True).take(16))
    assert again == first  # the seed fixes it


def test_read_records_drops_bad_raw_records_only_when_tolerant(tmp_path: Path) -> None:
    good = records([site(0), site(1)])
    short = tfrecord.encode_example(site(9), image=np.zeros((2, 2, 3), np.uint8))
    path = tmp_path / "mixed.tfrecord"
    tfrecord.write_shard(str(path), [good[0], short, good[1]])
    skip = stages.read_records(
        [str(path)], RAW, ReadOptions(on_error="skip"), OrderOptions(), training=False
    )
    assert ids(skip) == [0, 1]
    keep = stages.read_records([str(path)], RAW, ReadOptions(), OrderOptions(), training=False)
    assert ids(keep) == [0, 9, 1]  # "raise": the bad record fails later, when decoded


def test_read_records_with_absolute_paths_reads_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shard(tmp_path / "rel.tfrecord", [site(0)])
    ds = stages.read_records(
        ["rel.tfrecord"], RAW, ReadOptions(), OrderOptions(), training=False, absolute=True
    )
    monkeypatch.chdir(os.path.dirname(tmp_path))  # as a service worker elsewhere would
    assert ids(ds) == [0]


def test_filter_sites_keeps_the_selection_and_labelled_sites_in_training() -> None:
    rows = [
        site(0),
        site(1),
        site(2, sirna_id=1110, well_type="positive_control"),
        site(3, sirna_id=-1),
    ]
    ds = tf.data.Dataset.from_tensor_slices(records(rows))
    read = ReadOptions()

    def kept(
        selection: Selection, label: str | None = "sirna_id", training: bool = False
    ) -> list[int]:
        return ids(stages.filter_sites(ds, selection, RAW, read, label=label, training=training))

    assert kept(Selection()) == [0, 1, 1110, -1]
    assert kept(Selection(), training=True) == [0, 1, 1110]
    assert kept(Selection(), label="plate", training=True) == [0, 1, 1110, -1]
    assert kept(Selection(include_controls=False)) == [0, 1, -1]
    assert kept(Selection(experiments="U2OS-2")) == [1, -1]
    assert kept(Selection(well_types=["positive_control"])) == [1110]
    plates = Split({"a": [("HEPG2-01", "1"), ("HEPG2-01", "3")]}, by=("experiment", "plate"))
    assert kept(Selection(split=plates, part="a")) == [0, 1110]


def test_filter_sites_drops_records_too_broken_to_filter_when_tolerant() -> None:
    ds = tf.data.Dataset.from_tensor_slices([*records([site(0)]), b"garbage"])
    sel = Selection(cell_types="HEPG2")
    assert ids(
        stages.filter_sites(ds, sel, RAW, ReadOptions(on_error="skip"), label=None, training=False)
    ) == [0]
    with pytest.raises(tf.errors.InvalidArgumentError):
        ids(stages.filter_sites(ds, sel, RAW, ReadOptions(), label=None, training=False))


# --- parse and batch ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_parse_decodes_the_kept_channels(encoding: str) -> None:
    layout = RecordLayout(encoding, 4, 6, 3)
    geo = stages.Geometry(layout, select=(2, 0), channels=2, size=(4, 6))
    ds = tf.data.Dataset.from_tensor_slices(records([site(0), site(1)], encoding))
    if encoding == "raw":
        ds = ds.batch(2)  # raw records are parsed a batch at a time
    parsed = list(stages.parse(ds, geo, ReadOptions(), label="well", deterministic=True))
    images = np.concatenate([p["image"].numpy().reshape(-1, 4, 6, 2) for p in parsed])
    np.testing.assert_array_equal(images[1], image(1)[..., [2, 0]])
    assert set(parsed[0]) >= {"image", "well", *stages.META_KEYS}


def test_parse_drops_a_bad_png_site_alone_when_tolerant() -> None:
    layout = RecordLayout("png", 4, 6, 3)
    geo = stages.Geometry(layout, select=None, channels=3, size=(4, 6))
    example = tf.train.Example.FromString(records([site(5)], "png")[0])
    for feature in example.features.feature.values():  # truncate every PNG
        values = feature.bytes_list.value
        if values and values[0].startswith(b"\x89PNG"):
            values[:] = [v[:30] for v in values]
    bad = example.SerializeToString()
    ds = tf.data.Dataset.from_tensor_slices(
        [*records([site(0)], "png"), bad, *records([site(1)], "png")]
    )
    got = stages.parse(ds, geo, ReadOptions(on_error="skip"), label=None, deterministic=True)
    assert [int(p["sirna_id"]) for p in got] == [0, 1]
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(stages.parse(ds, geo, ReadOptions(), label=None, deterministic=True))


@pytest.mark.parametrize("batch_by", ["plate", "experiment"])
def test_batch_by_groups_serialized_and_parsed_sites(batch_by: str) -> None:
    rows = [site(i) for i in range(12)]
    order = OrderOptions(batch_by=batch_by)  # type: ignore[arg-type]
    serialized = tf.data.Dataset.from_tensor_slices(records(rows))
    for batches in (
        stages.batch(serialized, 2, RAW, order, training=False),
        stages.batch(
            serialized.map(lambda s: tfrecord.parse_example(s, encoding="raw", channels=3)),
            2,
            RAW,
            order,
            training=False,
        ),
    ):
        total = 0
        for b in batches:
            if not isinstance(b, dict):
                b = tfrecord.parse_example(b, encoding="raw", channels=3)
            keys = {
                (e, int(p) if batch_by == "plate" else 0)
                for e, p in zip(b["experiment"].numpy(), b["plate"].numpy(), strict=True)
            }
            assert len(keys) == 1
            total += len(b["experiment"])
        assert total == 12  # evaluation keeps each group's partial batch


# --- per-batch stages ---------------------------------------------------------------------


def batch_dict(n: int = 2, h: int = 4, w: int = 6) -> dict[str, tf.Tensor]:
    return {
        "image": tf.constant(np.stack([image(i, h, w) for i in range(n)])),
        "experiment": tf.constant(["HEPG2-01"] * n),
        "plate": tf.constant([1] * n),
        "id_code": tf.constant([f"HEPG2-01_1_B0{i + 2}" for i in range(n)]),
        "site": tf.constant([1] * n),
        "sirna_id": tf.constant(list(range(n))),
    }


def test_add_statistics_measures_the_full_site() -> None:
    parsed = batch_dict()
    out = stages.add_statistics(parsed, stats_function(None, None, 3, "float32"))
    np.testing.assert_array_equal(out["std"].numpy(), 255.0)
    assert stages.add_statistics(parsed, None) is parsed


def test_augment_centre_crops_in_evaluation_and_jitters_only_in_training() -> None:
    geo = stages.Geometry(RAW, select=None, channels=3, size=(2, 2))
    parsed = {**batch_dict(), "mean": tf.zeros([2, 3]), "std": tf.ones([2, 3])}
    aug = AugmentOptions(crop_size=2, intensity_jitter=(0.5, 1.0))
    out = stages.augment(parsed, geo, aug, training=False, batch_size=2)
    np.testing.assert_array_equal(out["image"].numpy(), parsed["image"].numpy()[:, 1:3, 2:4])
    assert out["image"].shape == (2, 2, 2, 3) and out["mean"].shape == (2, 3)
    np.testing.assert_array_equal(out["std"].numpy(), 1.0)
    trained = stages.augment(parsed, geo, aug, training=True)
    assert not np.array_equal(trained["std"].numpy(), parsed["std"].numpy())


def test_augment_dihedral_keeps_the_pixels_of_each_image() -> None:
    geo = stages.Geometry(RecordLayout("raw", 5, 5, 1), select=None, channels=1, size=(5, 5))
    x = np.arange(50, dtype=np.uint8).reshape(2, 5, 5, 1)
    out = stages.augment(
        {"image": tf.constant(x)}, geo, AugmentOptions(dihedral=True), training=True
    )
    for got, want in zip(out["image"].numpy(), x, strict=True):
        assert sorted(got.ravel()) == sorted(want.ravel())


@pytest.mark.parametrize("on", ["cpu", "accelerator"])
def test_normalize_on_the_cpu_or_ship_statistics(on: str) -> None:
    parsed = {
        "image": tf.fill([1, 2, 2, 1], tf.constant(10, tf.uint8)),
        "mean": tf.constant([[4.0]]),
        "std": tf.constant([[2.0]]),
    }
    out = stages.normalize(parsed, PlacementOptions(normalize_on=on, dtype="bfloat16"))  # type: ignore[arg-type]
    if on == "cpu":
        assert set(out) == {"image"} and out["image"].dtype == tf.bfloat16
        np.testing.assert_array_equal(tf.cast(out["image"], tf.float32).numpy(), 3.0)
    else:
        assert out is parsed
    unnormalized = {"image": parsed["image"]}
    assert stages.normalize(unnormalized, PlacementOptions(dtype="uint8")) is unnormalized


def test_pack_builds_each_batch_structure() -> None:
    parsed = {**batch_dict(), "mean": tf.zeros([2, 3]), "std": tf.ones([2, 3])}
    parsed.update(
        {k: tf.constant(["x", "y"]) for k in ("well", "cell_type", "well_type", "dataset")}
    )
    x, y = stages.pack(parsed, label="sirna_id", output="tuple", training=True)
    assert set(x) == {"image", "mean", "std"} and y.numpy().tolist() == [0, 1]
    x, ids_ = stages.pack(
        {k: v for k, v in parsed.items() if k not in ("mean", "std")},
        label=None,
        output="tuple",
        training=False,
    )
    assert x.shape == (2, 4, 6, 3) and set(ids_) == {"id_code", "site"}
    only = stages.pack({"image": parsed["image"]}, label=None, output="tuple", training=True)
    assert only is parsed["image"]
    d = stages.pack(parsed, label="plate", output="dict", training=True, batch_size=2)
    assert set(d) == {"image", "mean", "std", "label", *stages.META_KEYS}
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        stages.pack(parsed, label="plate", output="dict", training=True, batch_size=3)


# --- distribution -------------------------------------------------------------------------


def test_distribute_is_the_identity_without_a_service_and_refuses_misuse() -> None:
    ds = tf.data.Dataset.range(2)
    assert stages.distribute(ds, DistributeOptions()) is ds
    service = DistributeOptions(data_service="localhost:5050")
    stages.check_service_use(DistributeOptions(), training=False, input_context=object())
    with pytest.raises(OptionsError, match="data_service is for training only"):
        stages.check_service_use(service, training=False, input_context=None)
    with pytest.raises(OptionsError, match="data_service with input_context is not supported"):
        stages.check_service_use(service, training=True, input_context=object())


# A few valid and invalid values per field, for the property below.
_VALUES = {
    "compression": ["auto", "gzip", "lz4"],
    "on_error": ["raise", "warn", "ignore"],
    "read_buffer_bytes": [None, 1 << 20, 0],
    "cycle_length": [None, AUTOTUNE, 4, 0],
    "prefetch": [AUTOTUNE, 0, 2, -5],
    "shuffle_buffer": [1, 256, 0, True],
    "seed": [None, 7, "7"],
    "deterministic": [None, True, 1],
    "batch_by": [None, "plate", "well"],
    "crop_size": [None, 8, (4, 6), (0, 1)],
    "intensity_jitter": [(0.0, 0.0), (0.2, 1), (1.0, 0.0)],
    "channels": [None, (1, 2), (2, 2), ()],
    "dtype": ["float32", "uint8", "int8"],
    "normalize_on": ["cpu", "accelerator", "tpu"],
    "data_service": [None, "grpc://cpu-0:5050", "cpu-0"],
}
_GROUP_OF = {
    f.name: group
    for group in (ReadOptions, OrderOptions, AugmentOptions, PlacementOptions, DistributeOptions)
    for f in dataclasses.fields(group)
}


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in _VALUES.items()}))
def test_flat_options_accept_exactly_what_their_groups_accept(kwargs: dict) -> None:
    """PipelineOptions(**kw) == the groups built from their share of kw, or the same error."""
    errors = []
    for group in {_GROUP_OF[k] for k in kwargs}:
        try:
            group(**{k: v for k, v in kwargs.items() if _GROUP_OF[k] is group})
        except OptionsError as err:
            errors.append(str(err))
    if errors:
        with pytest.raises(OptionsError) as info:
            PipelineOptions(**kwargs)
        assert str(info.value) in errors
    else:
        opts = PipelineOptions(**kwargs)
        for key, value in kwargs.items():
            group = _GROUP_OF[key](**{key: value})
            assert getattr(opts, key) == getattr(group, key)
