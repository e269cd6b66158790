"""Tests for rxdata.pipeline: make_dataset, PipelineOptions, predict."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rxdata import reader, tfrecord
from rxdata.errors import OptionsError, RecordError
from rxdata.normalization import ChannelStats, Normalizer, normalize, standardize_image
from rxdata.pipeline import LABEL_SPACES, PipelineOptions, make_dataset, predict
from rxdata.transforms import standardize

H = W = 8
EXPERIMENTS = ("HEPG2-01", "U2OS-02", "RPE-03")


def site_image(index: int) -> np.ndarray:
    """A distinct image per site: channel c holds index*6 + c plus a spatial ramp."""
    ramp = np.arange(H * W, dtype=np.int64).reshape(H, W, 1)
    chans = np.arange(6, dtype=np.int64).reshape(1, 1, 6)
    return ((index * 6 + chans + ramp * 3) % 251).astype(np.uint8)


def site_rows(n_per_exp: int = 7) -> list[dict[str, object]]:
    rows = []
    for e, exp in enumerate(EXPERIMENTS):
        for i in range(n_per_exp):
            index = e * n_per_exp + i
            if i == 0:
                well_type, sirna_id = "negative_control", 1138
            elif i == 1:
                well_type, sirna_id = "positive_control", 1110
            elif i == 2 and exp == "RPE-03":
                well_type, sirna_id = "treatment", pd.NA  # an unlabelled test site
            else:
                well_type, sirna_id = "treatment", index
            rows.append(
                {
                    "experiment": exp,
                    "plate": 1 + i % 2,
                    "well": f"C{index:02d}",
                    "site": 1 + i % 2,
                    "well_type": well_type,
                    "sirna_id": sirna_id,
                    "index": index,
                }
            )
    return rows


def png_bytes(plane: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(plane, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_shards(root: Path, encoding: str = "raw", compression: str = "none") -> list[dict]:
    rows = site_rows()
    root.mkdir(parents=True, exist_ok=True)
    for shard in range(3):  # shard k holds rows k, k+3, ...
        examples = []
        for row in rows[shard::3]:
            image = site_image(int(row["index"]))  # type: ignore[arg-type]
            if encoding == "raw":
                examples.append(tfrecord.encode_example(row, image=image))
            else:
                pngs = [png_bytes(image[..., c]) for c in range(6)]
                examples.append(tfrecord.encode_example(row, pngs=pngs))
        tfrecord.write_shard(root / f"{shard:03d}.tfrecord", examples, compression=compression)  # type: ignore[arg-type]
    return rows


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    root = tmp_path_factory.mktemp("shards")
    rows = write_shards(root)
    return str(root / "*.tfrecord"), rows


@pytest.fixture(scope="module")
def png_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("png")
    write_shards(root, encoding="png", compression="gzip")
    return str(root / "*.tfrecord")


def collect(ds: tf.data.Dataset) -> dict[str, np.ndarray]:
    """Concatenate a dict-output dataset."""
    parts: dict[str, list[np.ndarray]] = {}
    for batch in ds:
        for key, value in batch.items():
            parts.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def index_of(images: np.ndarray) -> np.ndarray:
    """Recover the site index from uint8 images made by site_image (top-left pixel)."""
    return (images[:, 0, 0, 0].astype(int) // 6).astype(int)


# ---------------------------------------------------------------------------------------
# Evaluation mode: order, completeness and id alignment
# ---------------------------------------------------------------------------------------
def test_eval_mode_is_complete_deterministic_and_aligned(shards: tuple[str, list[dict]]) -> None:
    pattern, rows = shards
    opts = PipelineOptions(dtype="uint8")
    first = collect(
        make_dataset(pattern, batch_size=4, training=False, options=opts, output="dict")
    )
    again = collect(
        make_dataset(pattern, batch_size=4, training=False, options=opts, output="dict")
    )
    np.testing.assert_array_equal(first["id_code"], again["id_code"])
    assert len(first["id_code"]) == len(rows)  # every site, the last partial batch kept
    by_index = {int(r["index"]): r for r in rows}
    for image, id_code, site, label in zip(
        first["image"], first["id_code"], first["site"], first["label"], strict=True
    ):
        row = by_index[int(index_of(image[None])[0])]
        assert id_code.decode() == f"{row['experiment']}_{row['plate']}_{row['well']}"
        assert site == row["site"]
        assert label == (-1 if row["sirna_id"] is pd.NA else row["sirna_id"])
        np.testing.assert_array_equal(image, site_image(int(row["index"])))


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
def test_eval_tuple_carries_ids_and_keras_predict_uses_only_x(
    shards: tuple[str, list[dict]],
) -> None:
    import keras

    pattern, rows = shards
    ds = make_dataset(pattern, batch_size=5, training=False)
    images, labels, ids = next(iter(ds))
    assert set(ids) == {"id_code", "site"} and images.dtype == tf.float32
    assert images.shape[0] == labels.shape[0] == ids["id_code"].shape[0] == 5

    inputs = keras.Input((H, W, 6))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    assert model.predict(ds, verbose=0).shape == (len(rows), 6)

    id_frame, predictions = predict(model, ds)
    assert len(id_frame) == len(predictions) == len(rows)
    # each prediction (the per-channel mean of the site) matches its own site's pixels
    for (id_code, site), pred in zip(id_frame.itertuples(index=False), predictions, strict=True):
        row = next(
            r
            for r in rows
            if f"{r['experiment']}_{r['plate']}_{r['well']}" == id_code and r["site"] == site
        )
        expected = site_image(int(row["index"])).mean(axis=(0, 1)) / 255.0
        np.testing.assert_allclose(pred, expected, rtol=1e-5)


def test_predict_rejects_training_datasets(shards: tuple[str, list[dict]]) -> None:
    ds = make_dataset(shards[0], batch_size=4, training=True)
    with pytest.raises(OptionsError, match="training=False"):
        predict(lambda x, training=False: x, ds)


# ---------------------------------------------------------------------------------------
# Training mode
# ---------------------------------------------------------------------------------------
def test_training_shuffles_drops_unlabelled_and_has_static_shapes(
    shards: tuple[str, list[dict]],
) -> None:
    pattern, rows = shards
    opts = PipelineOptions(dtype="uint8", seed=1)
    ds = make_dataset(pattern, batch_size=4, options=opts)
    assert ds.element_spec[0].shape.as_list() == [4, H, W, 6]
    assert ds.element_spec[1].shape.as_list() == [4]
    seen = [index_of(x.numpy()) for x, _y in ds]
    labelled = [int(r["index"]) for r in rows if r["sirna_id"] is not pd.NA]
    flat = np.concatenate(seen)
    assert len(flat) == len(labelled) // 4 * 4  # drop_remainder
    assert set(flat) <= set(labelled) and len(set(flat)) == len(flat)
    eval_order = index_of(
        collect(make_dataset(pattern, batch_size=4, training=False, options=opts, output="dict"))[
            "image"
        ]
    )
    assert list(flat) != [i for i in eval_order if i in set(flat)]  # shuffled


def test_seed_with_deterministic_reproduces_the_training_order(
    shards: tuple[str, list[dict]],
) -> None:
    opts = PipelineOptions(dtype="uint8", seed=5, deterministic=True)

    def order() -> list[int]:
        ds = make_dataset(shards[0], batch_size=3, options=opts)
        return np.concatenate([index_of(x.numpy()) for x, _y in ds]).tolist()

    first = order()
    assert order() == first
    other = PipelineOptions(dtype="uint8", seed=6, deterministic=True)
    ds = make_dataset(shards[0], batch_size=3, options=other)
    assert np.concatenate([index_of(x.numpy()) for x, _y in ds]).tolist() != first


def test_repeat_gives_endless_reshuffled_epochs(shards: tuple[str, list[dict]]) -> None:
    opts = PipelineOptions(dtype="uint8", repeat=True)
    ds = make_dataset(shards[0], batch_size=8, options=opts)
    batches = list(ds.take(10))  # more than the 2 full batches of one epoch
    assert len(batches) == 10


def test_labels_filters_and_split(shards: tuple[str, list[dict]]) -> None:
    from rxdata.splits import Split

    pattern, rows = shards
    opts = PipelineOptions(dtype="uint8")

    def indices(**kwargs: object) -> set[int]:
        ds = make_dataset(
            pattern, batch_size=3, training=False, options=opts, output="dict", **kwargs
        )
        return set(index_of(collect(ds)["image"]).tolist())

    def expect(pred) -> set[int]:  # type: ignore[no-untyped-def]
        return {int(r["index"]) for r in rows if pred(r)}

    # controls dropped; the unlabelled test treatment stays (it must be predicted)
    assert indices(include_controls=False) == expect(
        lambda r: r["sirna_id"] is pd.NA or r["sirna_id"] < LABEL_SPACES["treatments"]
    )
    assert indices(include_controls=False, label="cell_type") == indices(include_controls=False)
    assert indices(experiments="U2OS-02") == expect(lambda r: r["experiment"] == "U2OS-02")
    # either spelling, as `rxdata convert --experiments` takes it (not a silent empty dataset)
    assert indices(experiments=["U2OS-2"]) == expect(lambda r: r["experiment"] == "U2OS-02")
    assert indices(cell_types=["HEPG2", "RPE"]) == expect(lambda r: r["experiment"] != "U2OS-02")
    assert indices(well_types=["negative_control"]) == expect(
        lambda r: r["well_type"] == "negative_control"
    )
    split = Split({"train": ["HEPG2-01", "RPE-03"], "val": ["U2OS-02"]})
    assert indices(split=split, part="val") == expect(lambda r: r["experiment"] == "U2OS-02")
    # the records spell U2OS-02: a split written U2OS-2 selects the same sites
    split = Split({"train": ["HEPG2-01", "RPE-03"], "val": ["U2OS-2"]})
    assert indices(split=split, part="val") == expect(lambda r: r["experiment"] == "U2OS-02")
    plates = Split({"a": [("HEPG2-01", "2")]}, by=("experiment", "plate"))
    assert indices(split=plates, part="a") == expect(
        lambda r: r["experiment"] == "HEPG2-01" and r["plate"] == 2
    )
    ds = make_dataset(pattern, batch_size=50, training=False, label="experiment")
    _x, labels, _ids = next(iter(ds))
    assert set(labels.numpy().tolist()) == {e.encode() for e in EXPERIMENTS}


# ---------------------------------------------------------------------------------------
# Encodings, compressions, channels, dtypes
# ---------------------------------------------------------------------------------------
def test_png_gzip_records_equal_raw(shards: tuple[str, list[dict]], png_shards: str) -> None:
    opts = PipelineOptions(dtype="uint8", channels=(5, 2))
    raw = collect(
        make_dataset(shards[0], batch_size=4, training=False, options=opts, output="dict")
    )
    png = collect(
        make_dataset(png_shards, batch_size=4, training=False, options=opts, output="dict")
    )
    np.testing.assert_array_equal(raw["id_code"], png["id_code"])
    np.testing.assert_array_equal(raw["image"], png["image"])
    full = collect(
        make_dataset(
            shards[0],
            batch_size=4,
            training=False,
            output="dict",
            options=PipelineOptions(dtype="uint8"),
        )
    )
    np.testing.assert_array_equal(raw["image"], full["image"][..., [4, 1]])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_dtypes_and_global_normalizer_match_numpy(
    shards: tuple[str, list[dict]], dtype: str
) -> None:
    normalizer = Normalizer.global_()
    opts = PipelineOptions(dtype=dtype, channels=(1, 3))  # type: ignore[arg-type]
    got = collect(
        make_dataset(
            shards[0],
            batch_size=6,
            training=False,
            options=opts,
            normalizer=normalizer,
            output="dict",
        )
    )
    assert got["image"].dtype.name == dtype
    raw = collect(
        make_dataset(
            shards[0],
            batch_size=6,
            training=False,
            output="dict",
            options=PipelineOptions(dtype="uint8", channels=(1, 3)),
        )
    )
    expected = normalize(raw["image"], normalizer.global_stats.select([1, 3]))
    np.testing.assert_array_equal(got["image"], expected.astype(got["image"].dtype))


def plate_normalizer() -> Normalizer:
    groups = {
        f"{exp}/{plate}": ChannelStats(
            mean=np.linspace(1, 6, 6) * (e + 1) + plate, std=np.linspace(2, 7, 6) + plate
        )
        for e, exp in enumerate(EXPERIMENTS[:2])  # RPE-03 unseen: global fallback
        for plate in (1, 2)
    }
    return Normalizer("plate", groups, global_stats=ChannelStats(np.full(6, 9.0), np.full(6, 3.0)))


@pytest.mark.parametrize(
    "normalizer", [plate_normalizer(), Normalizer.per_image()], ids=["plate", "image"]
)
def test_accelerator_mode_equals_cpu_mode(
    shards: tuple[str, list[dict]], normalizer: Normalizer
) -> None:
    from rxdata.layers import Standardize

    pattern, rows = shards
    kw = {"batch_size": 5, "training": False, "normalizer": normalizer, "output": "dict"}
    cpu = collect(make_dataset(pattern, **kw))  # type: ignore[arg-type]
    acc = collect(
        make_dataset(pattern, options=PipelineOptions(normalize_on="accelerator"), **kw)  # type: ignore[arg-type]
    )
    assert acc["image"].dtype == np.uint8 and acc["mean"].shape == (len(rows), 6)
    on_device = Standardize()([acc["image"], acc["mean"], acc["std"]]).numpy()
    np.testing.assert_array_equal(on_device, cpu["image"])
    # ... and both equal the numpy normalizer, site by site
    for image, exp, plate, out in zip(
        acc["image"], acc["experiment"], acc["plate"], cpu["image"], strict=True
    ):
        if normalizer.mode == "image":
            np.testing.assert_allclose(out, standardize_image(image), rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(out, normalizer.normalize(image, exp.decode(), plate))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_xla_compiled_normalization_is_bit_identical(
    shards: tuple[str, list[dict]], dtype: str
) -> None:
    kw = {"batch_size": 7, "training": False, "output": "dict", "normalizer": plate_normalizer()}
    fused = collect(make_dataset(shards[0], options=PipelineOptions(dtype=dtype), **kw))  # type: ignore[arg-type]
    plain = collect(
        make_dataset(shards[0], options=PipelineOptions(dtype=dtype, jit=False), **kw)  # type: ignore[arg-type]
    )
    np.testing.assert_array_equal(fused["image"], plain["image"])


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
def test_accelerator_tuple_output_feeds_a_keras_model(shards: tuple[str, list[dict]]) -> None:
    import keras

    from rxdata.layers import Standardize

    opts = PipelineOptions(normalize_on="accelerator")
    ds = make_dataset(shards[0], batch_size=4, options=opts, normalizer=Normalizer.global_())
    x, _y = next(iter(ds))
    assert set(x) == {"image", "mean", "std"} and x["image"].dtype == tf.uint8
    image = keras.Input((H, W, 6), dtype="uint8", name="image")
    mean = keras.Input((6,), name="mean")
    std = keras.Input((6,), name="std")
    z = Standardize()([image, mean, std])
    z = keras.layers.GlobalAveragePooling2D()(z)
    model = keras.Model({"image": image, "mean": mean, "std": std}, keras.layers.Dense(1139)(z))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ---------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------
def dihedral_images(image: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        rotated = np.rot90(image, k)
        out += [rotated, rotated[:, ::-1]]
    return out


def test_dihedral_and_crop(shards: tuple[str, list[dict]]) -> None:
    pattern, rows = shards
    opts = PipelineOptions(dtype="uint8", dihedral=True, crop_size=6, seed=3)
    by_index = {int(r["index"]): site_image(int(r["index"])) for r in rows}
    seen_variants = set()
    for images, _labels in make_dataset(pattern, batch_size=4, options=opts):
        assert images.shape[1:] == (6, 6, 6)
        for image in images.numpy():
            matches = [
                (i, v)
                for i, full in by_index.items()
                for v, sym in enumerate(dihedral_images(full))
                for top in range(3)
                for left in range(3)
                if np.array_equal(sym[top : top + 6, left : left + 6], image)
            ]
            assert matches, "output is not a crop of a dihedral image of any site"
            seen_variants.add(matches[0][1])
    assert len(seen_variants) > 2

    centre = PipelineOptions(dtype="uint8", crop_size=(4, 6))
    ds = make_dataset(pattern, batch_size=30, training=False, options=centre, output="dict")
    batch = next(iter(ds))  # the corner pixel moved: find the site by its ids
    first_id = batch["id_code"].numpy()[0].decode()
    row = next(
        r
        for r in rows
        if f"{r['experiment']}_{r['plate']}_{r['well']}" == first_id
        and r["site"] == batch["site"].numpy()[0]
    )
    np.testing.assert_array_equal(batch["image"][0], site_image(int(row["index"]))[2:6, 1:7])


def test_resize_rounds_to_uint8_identically_on_both_paths(shards: tuple[str, list[dict]]) -> None:
    kw = {"batch_size": 40, "training": False, "output": "dict", "normalizer": Normalizer.global_()}
    cpu = collect(make_dataset(shards[0], options=PipelineOptions(resize_to=5), **kw))  # type: ignore[arg-type]
    acc = collect(
        make_dataset(
            shards[0],
            options=PipelineOptions(resize_to=5, normalize_on="accelerator"),
            **kw,  # type: ignore[arg-type]
        )
    )
    assert acc["image"].shape[1:] == (5, 5, 6)
    np.testing.assert_array_equal(standardize(acc["image"], acc["mean"], acc["std"]), cpu["image"])


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scale=st.floats(0.0, 0.9), shift=st.floats(0.0, 3.0), seed=st.integers(0, 2**16))
def test_intensity_jitter_is_an_affine_map_of_the_normalized_pixels_within_bounds(
    shards: tuple[str, list[dict]], scale: float, shift: float, seed: int
) -> None:
    # The jitter is folded into mean/std; through the public output, the jittered
    # statistics must equal z' = a * z + b with a in [1 - scale, 1 + scale] and
    # b in [-shift, shift] for every example and channel, and leave pixels untouched.
    normalizer = Normalizer.global_()
    opts = PipelineOptions(
        intensity_jitter=(scale, shift), normalize_on="accelerator", seed=seed, dtype="float32"
    )
    x, _y = next(iter(make_dataset(shards[0], batch_size=8, options=opts, normalizer=normalizer)))
    m = normalizer.global_stats.mean.astype(np.float32)
    s = normalizer.global_stats.std.astype(np.float32)
    m2, s2 = x["mean"].numpy(), x["std"].numpy()
    a = s / s2  # s' = s / a
    b = (m - m2) / s2  # m' = m - b * s / a
    tol = 1e-5
    assert np.all((a >= 1 - scale - tol) & (a <= 1 + scale + tol))
    assert np.all(np.abs(b) <= shift + tol)
    pixels = x["image"].numpy().astype(np.float32)
    z = (pixels - m[None, None, None, :]) / s[None, None, None, :]
    jittered = standardize(x["image"], x["mean"], x["std"]).numpy()
    expected = a[:, None, None, :] * z + b[:, None, None, :]
    np.testing.assert_allclose(jittered, expected, rtol=1e-4, atol=1e-4)
    if scale == shift == 0.0:
        np.testing.assert_array_equal(a, 1.0)
        np.testing.assert_array_equal(b, 0.0)


def test_intensity_jitter_changes_training_batches(shards: tuple[str, list[dict]]) -> None:
    opts = PipelineOptions(intensity_jitter=(0.2, 0.5), normalize_on="accelerator", seed=0)
    x, _y = next(
        iter(make_dataset(shards[0], batch_size=4, options=opts, normalizer=Normalizer.global_()))
    )
    std = x["std"].numpy()
    ratio = std / Normalizer.global_().global_stats.std.astype(np.float32)
    assert np.all((ratio > 1 / 1.2 - 1e-6) & (ratio < 1 / 0.8 + 1e-6))
    assert not np.allclose(ratio, 1.0)


# ---------------------------------------------------------------------------------------
# rxrx1-utils records and distribution
# ---------------------------------------------------------------------------------------
def test_reads_rxrx1_utils_shards(tmp_path: Path) -> None:
    def b(v: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))

    def i(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    with tf.io.TFRecordWriter(str(tmp_path / "001.tfrecord"), options="GZIP") as writer:
        for k in range(3):
            feats = {
                "image": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[site_image(k).tobytes()])
                ),
                "well": b(f"B{k + 2:02d}"),
                "well_type": b("treatment"),
                "experiment": b("HUVEC-01"),
                "plate": i(3),
                "site": i(1),
                "cell_type": b("HUVEC"),
            }
            if k:
                feats["sirna"] = i(100 + k)
            writer.write(
                tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()
            )
    ds = make_dataset(
        str(tmp_path / "*.tfrecord"),
        batch_size=3,
        training=False,
        output="dict",
        options=PipelineOptions(dtype="uint8"),
    )
    got = collect(ds)
    assert got["id_code"].tolist() == [b"HUVEC-01_3_B02", b"HUVEC-01_3_B03", b"HUVEC-01_3_B04"]
    assert got["label"].tolist() == [-1, 101, 102]
    np.testing.assert_array_equal(got["image"][2], site_image(2))
    train = make_dataset(str(tmp_path / "*.tfrecord"), batch_size=1)
    assert sorted(int(y[0]) for _x, y in train) == [101, 102]


def test_input_context_shards_files_and_splits_batch(shards: tuple[str, list[dict]]) -> None:
    pattern, rows = shards
    seen = []
    for pipeline_id in range(2):
        ctx = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=4
        )
        ds = make_dataset(
            pattern,
            batch_size=8,
            training=False,
            input_context=ctx,
            output="dict",
            options=PipelineOptions(dtype="uint8"),
        )
        got = collect(ds)
        assert ds.element_spec["image"].shape.as_list()[0] in (None, 2)
        assert max(len(b["site"]) for b in ds) == 2  # per-replica batch: 8 / 4
        seen.append(set(zip(got["id_code"].tolist(), got["site"].tolist(), strict=True)))
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == len(rows)


@pytest.mark.subprocess
@pytest.mark.slow
def test_mirrored_strategy_two_logical_cpus(shards: tuple[str, list[dict]]) -> None:
    script = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from rxdata.pipeline import make_dataset, PipelineOptions
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        opts = PipelineOptions(seed=0)
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: make_dataset({shards[0]!r}, batch_size=8, input_context=ctx,
                                     options=opts))
        @tf.function
        def step(x, y):
            def replica(x, y):
                return tf.shape(x)[0], tf.reduce_sum(tf.cast(y, tf.int64))
            return strategy.run(replica, args=(x, y))
        sizes, total = [], 0
        for x, y in dist:
            n, s = step(x, y)
            sizes += [int(v) for v in strategy.experimental_local_results(n)]
            total += int(strategy.reduce("SUM", s, axis=None))
        print("replicas", strategy.num_replicas_in_sync, "sizes", sorted(set(sizes)),
              "batches", len(sizes), "total", total)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    labelled = [int(r["sirna_id"]) for r in shards[1] if r["sirna_id"] is not pd.NA]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("replicas 2 sizes [4]"), line
    batches = int(line.split("batches ")[1].split()[0])
    assert batches == 2 * (len(labelled) // 8)  # 8 global = 4 per replica, remainder dropped


# ---------------------------------------------------------------------------------------
# Options and errors
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": (0, 1)}, "channels=.0, 1."),
        ({"channels": (1, 1)}, "repeats a channel"),
        ({"dtype": "int8"}, "dtype='int8'"),
        ({"normalize_on": "gpu"}, "normalize_on='gpu'"),
        ({"crop_size": (3, 0)}, "crop_size"),
        ({"intensity_jitter": (1.5, 0.0)}, "intensity_jitter"),
        ({"shuffle_buffer": 0}, "shuffle_buffer=0"),
        ({"cycle_length": -2}, "cycle_length=-2"),
        ({"compression": "lz4"}, "compression='lz4'"),
        ({"normalize_on": "accelerator", "dtype": "uint8"}, "already ships uint8"),
    ],
)
def test_options_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        PipelineOptions(**kwargs)  # type: ignore[arg-type]


def test_make_dataset_argument_errors(shards: tuple[str, list[dict]], tmp_path: Path) -> None:
    pattern = shards[0]
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        make_dataset(str(tmp_path / "*.tfrecord"), batch_size=2)
    with pytest.raises(OptionsError, match="batch_size=0"):
        make_dataset(pattern, batch_size=0)
    # a filter value no record can hold would give an empty dataset silently
    with pytest.raises(OptionsError, match=r"cell_types='hepg2'.*HEPG2"):
        make_dataset(pattern, batch_size=2, cell_types="hepg2")
    with pytest.raises(OptionsError, match=r"well_types='treated'.*treatment"):
        make_dataset(pattern, batch_size=2, well_types=["treated"])
    with pytest.raises(OptionsError, match=r"experiments='HEPG2_01'.*HEPG2-01"):
        make_dataset(pattern, batch_size=2, experiments="HEPG2_01")
    with pytest.raises(OptionsError, match=r"records hold channels 1\.\.6"):
        make_dataset(pattern, batch_size=2, options=PipelineOptions(channels=(7,)))
    with pytest.raises(OptionsError, match="label='colour'"):
        make_dataset(pattern, batch_size=2, label="colour")
    with pytest.raises(OptionsError, match="larger than the 8x8"):
        make_dataset(pattern, batch_size=2, options=PipelineOptions(crop_size=9))
    with pytest.raises(OptionsError, match="needs square images"):
        make_dataset(
            pattern, batch_size=2, options=PipelineOptions(dihedral=True, crop_size=(4, 6))
        )
    with pytest.raises(OptionsError, match="split= needs part="):
        from rxdata.splits import Split

        make_dataset(pattern, batch_size=2, split=Split({"a": ["HEPG2-01"]}))
    with pytest.raises(OptionsError, match="drop the normalizer"):
        make_dataset(
            pattern,
            batch_size=2,
            normalizer=Normalizer.global_(),
            options=PipelineOptions(dtype="uint8"),
        )
    empty = tmp_path / "empty.tfrecord"
    tfrecord.write_shard(empty, [])
    with pytest.raises(Exception, match="are empty"):
        make_dataset(str(empty), batch_size=2)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch_size=st.integers(1, 25))
def test_eval_every_batch_size_sees_each_site_once(
    shards: tuple[str, list[dict]], batch_size: int
) -> None:
    pattern, rows = shards
    ds = make_dataset(
        pattern,
        batch_size=batch_size,
        training=False,
        label=None,
        options=PipelineOptions(dtype="uint8"),
    )
    keys = [
        (c, int(s))
        for _x, ids in ds
        for c, s in zip(ids["id_code"].numpy().tolist(), ids["site"].numpy(), strict=True)
    ]
    assert len(keys) == len(set(keys)) == len(rows)


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_bad_records_raise_or_are_skipped(tmp_path: Path, encoding: str) -> None:
    rows = site_rows(2)  # 6 sites
    good = []
    for row in rows:
        image = site_image(int(row["index"]))  # type: ignore[arg-type]
        if encoding == "raw":
            good.append(tfrecord.encode_example(row, image=image))
        else:
            good.append(
                tfrecord.encode_example(row, pngs=[png_bytes(image[..., c]) for c in range(6)])
            )
    wrong = tf.train.Example.FromString(good[1])
    wrong.features.feature["image"].bytes_list.value[0] = b"\x00" * 7  # neither size nor PNG
    tfrecord.write_shard(tmp_path / "a.tfrecord", [good[0], wrong.SerializeToString(), good[2]])
    tfrecord.write_shard(tmp_path / "b.tfrecord", good[3:])
    data = (tmp_path / "b.tfrecord").read_bytes()
    (tmp_path / "b.tfrecord").write_bytes(data[: len(data) - 50])  # cut the last record
    pattern = str(tmp_path / "*.tfrecord")

    def ids(on_error: str) -> list[bytes]:
        opts = PipelineOptions(dtype="uint8", on_error=on_error)  # type: ignore[arg-type]
        ds = make_dataset(pattern, batch_size=2, training=False, options=opts, output="dict")
        return sorted(collect(ds)["id_code"].tolist())

    with pytest.raises(tf.errors.OpError):
        ids("raise")
    kept = ids("skip")
    assert kept == sorted(
        f"{r['experiment']}_{r['plate']}_{r['well']}".encode()
        for r in (rows[0], rows[2], *rows[3:5])
    )
    assert ids("warn") == kept


# ---------------------------------------------------------------------------------------
# What a glob may hold: one layout, bad first records, literal paths (issue 12)
# ---------------------------------------------------------------------------------------
def one_shard(path: Path, encoding: str = "raw", size: int = H, n: int = 3) -> list[bytes]:
    examples = []
    for row in site_rows(1)[:n]:
        image = np.resize(site_image(int(row["index"])), (size, size, 6))  # type: ignore[arg-type]
        if encoding == "raw":
            examples.append(tfrecord.encode_example(row, image=image))
        else:
            pngs = [png_bytes(image[..., c]) for c in range(6)]
            examples.append(tfrecord.encode_example(row, pngs=pngs))
    tfrecord.write_shard(path, examples)
    return examples


@pytest.mark.parametrize("on_error", ["raise", "skip", "warn"])
@pytest.mark.parametrize(
    ("second", "described"),
    [(("png", H), "png 8x8x6"), (("raw", 6), "raw 6x6x6")],
    ids=["png-and-raw", "two-sizes"],
)
def test_mixed_layouts_are_an_error_at_build_time_naming_a_file_of_each(
    tmp_path: Path, on_error: str, second: tuple[str, int], described: str
) -> None:
    one_shard(tmp_path / "a.tfrecord")
    one_shard(tmp_path / "b.tfrecord")
    one_shard(tmp_path / "c.tfrecord", encoding=second[0], size=second[1])
    opts = PipelineOptions(dtype="uint8", on_error=on_error)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="2 different record layouts") as info:
        make_dataset(str(tmp_path / "*.tfrecord"), batch_size=2, options=opts)
    message = str(info.value)
    assert f"raw 8x8x6: {tmp_path / 'a.tfrecord'}" in message
    assert f"{described}: {tmp_path / 'c.tfrecord'}" in message


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_a_bad_first_record_is_skipped_at_build_time_too(tmp_path: Path, on_error: str) -> None:
    good = one_shard(tmp_path / "a.tfrecord")
    tfrecord.write_shard(tmp_path / "a.tfrecord", [b"\x00 not an example", *good])
    pattern = str(tmp_path / "a.tfrecord")
    with pytest.raises(RecordError, match=r"a\.tfrecord: record 0: not a serialized"):
        make_dataset(pattern, batch_size=2, options=PipelineOptions(dtype="uint8"))
    opts = PipelineOptions(dtype="uint8", on_error=on_error)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "warn" reports the skipped record
        ds = make_dataset(pattern, batch_size=2, training=False, options=opts, output="dict")
    ids = collect(ds)["well"].tolist()
    assert ids == [
        tf.train.Example.FromString(g).features.feature["well"].bytes_list.value[0] for g in good
    ]


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_corrupt_first_record_is_not_mistaken_for_another_layout(
    tmp_path: Path, on_error: str
) -> None:
    # The layout is peeked without checking the payload CRC; a first record whose shape
    # was damaged into another consistent one (8x8 -> 16x4, same byte count) must end as
    # a bad record (raise or skip), not as "two layouts".
    one_shard(tmp_path / "a.tfrecord")
    one_shard(tmp_path / "b.tfrecord")
    data = bytearray((tmp_path / "b.tfrecord").read_bytes())
    for key, value in ((b"height", 16), (b"width", 4)):
        at = data.index(key) + len(key) + 6  # key, then Feature > Int64List > value varint
        assert data[at] == H
        data[at] = value
    (tmp_path / "b.tfrecord").write_bytes(bytes(data))
    opts = PipelineOptions(dtype="uint8", on_error=on_error)  # type: ignore[arg-type]
    pattern = str(tmp_path / "*.tfrecord")
    if on_error == "raise":
        with pytest.raises(RecordError, match=r"b\.tfrecord: record 0: corrupt"):
            make_dataset(pattern, batch_size=2, options=opts)
        return
    ds = make_dataset(pattern, batch_size=2, training=False, options=opts, label=None)
    # a's 3 sites; b ends at its damaged first record (a payload CRC error ends a shard)
    assert sum(int(x.shape[0]) for x, _ids in ds) == 3


def test_an_existing_path_with_glob_characters_is_read_as_itself(tmp_path: Path) -> None:
    one_shard(tmp_path / "plate[1].tfrecord", n=2)
    one_shard(tmp_path / "plate1.tfrecord", n=3)  # what the name matches as a glob
    opts = PipelineOptions(dtype="uint8")
    for pattern in (str(tmp_path / "plate[1].tfrecord"), tmp_path / "plate[1].tfrecord"):
        ds = make_dataset(pattern, batch_size=8, training=False, label=None, options=opts)
        assert sum(int(x.shape[0]) for x, _ids in ds) == 2
    # a pattern that is not an existing file is still a glob
    ds = make_dataset(
        str(tmp_path / "plate[0-9].tfrecord"), batch_size=8, training=False, options=opts
    )
    assert sum(int(x.shape[0]) for x, _y, _ids in ds) == 3


# ---------------------------------------------------------------------------------------
# A damaged GZIP shard with on_error="skip" (issue 12)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9], ids=["10%", "50%", "90%"])
def test_flipped_byte_in_a_gzip_shard_keeps_a_clean_prefix(tmp_path: Path, where: float) -> None:
    rows = site_rows(8)  # 24 sites in one small shard (one TensorFlow inflate block)
    rng = np.random.default_rng(0)
    examples = [
        tfrecord.encode_example(row, image=rng.integers(0, 256, (H, W, 6), dtype=np.uint8))
        for row in rows
    ]
    path = tmp_path / "g.tfrecord"
    tfrecord.write_shard(path, examples, compression="gzip")
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))
    wells = [
        tf.train.Example.FromString(e).features.feature["well"].bytes_list.value[0]
        for e in examples
    ]
    intact = [r["well"].encode() for r in reader.read_tfrecord(path, on_error="skip")]
    assert intact and intact == wells[: len(intact)] and len(intact) < len(wells)
    with pytest.raises((RecordError, tf.errors.DataLossError)):  # at build or in iteration
        list(
            make_dataset(
                str(path), batch_size=4, training=False, options=PipelineOptions(dtype="uint8")
            )
        )
    opts = PipelineOptions(dtype="uint8", on_error="skip")
    ds = make_dataset(str(path), batch_size=4, training=False, options=opts, output="dict")
    kept = collect(ds).get("well", np.array([], object)).tolist()
    # documented: the pipeline keeps what TensorFlow's inflater returned, a prefix of the
    # intact records (read_tfrecord recovers all of them)
    assert kept == intact[: len(kept)]


# ---------------------------------------------------------------------------------------
# tf.data service (issue 16)
# ---------------------------------------------------------------------------------------
def test_data_service_epochs_cover_every_site_exactly_once(png_shards: str) -> None:
    from rxdata import service

    rows = site_rows()
    dispatcher = service.start_dispatcher()
    address = service.dispatcher_address(dispatcher)
    workers = [service.start_worker(address) for _ in range(2)]
    try:
        opts = PipelineOptions(data_service=dispatcher.target, drop_remainder=False, seed=0)
        ds = make_dataset(
            png_shards,
            batch_size=4,
            options=opts,
            normalizer=plate_normalizer(),
            label=None,
            output="dict",
        )
        expected = sorted(
            (f"{r['experiment']}_{r['plate']}_{r['well']}".encode(), r["site"]) for r in rows
        )
        for _epoch in range(2):
            seen = [
                (c, int(s))
                for batch in ds
                for c, s in zip(batch["id_code"].numpy(), batch["site"].numpy(), strict=True)
            ]
            assert sorted(seen) == expected
        # the pixels went through the same decode and normalization as locally
        local = collect(
            make_dataset(
                png_shards,
                batch_size=4,
                training=False,
                normalizer=plate_normalizer(),
                label=None,
                output="dict",
            )
        )
        remote = collect(ds)
        order = np.lexsort((remote["site"], remote["id_code"]))
        local_order = np.lexsort((local["site"], local["id_code"]))
        np.testing.assert_array_equal(remote["image"][order], local["image"][local_order])
    finally:
        for worker in workers:
            worker.stop()
        dispatcher.stop()


def test_data_service_option_checks(shards: tuple[str, list[dict]]) -> None:
    from rxdata import service

    with pytest.raises(OptionsError, match="port=70000"):
        service.start_dispatcher(port=70000)
    with pytest.raises(OptionsError, match="dispatcher='nowhere'"):
        service.start_worker("nowhere")
    with pytest.raises(OptionsError, match="data_service='localhost'"):
        PipelineOptions(data_service="localhost")
    opts = PipelineOptions(data_service="grpc://localhost:5050")
    with pytest.raises(OptionsError, match="training only"):
        make_dataset(shards[0], batch_size=2, training=False, options=opts)
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0)
    with pytest.raises(OptionsError, match="input_context is not supported"):
        make_dataset(shards[0], batch_size=2, options=opts, input_context=ctx)


# ---------------------------------------------------------------------------------------
# Group-pure batches (batch_by)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["raw", "png"])
@pytest.mark.parametrize("batch_by", ["plate", "experiment"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_group_pure_batches_hold_one_group(
    shards: tuple[str, list[dict]], png_shards: str, encoding: str, batch_by: str, training: bool
) -> None:
    pattern = shards[0] if encoding == "raw" else png_shards
    opts = PipelineOptions(batch_by=batch_by, seed=3, drop_remainder=False, dtype="uint8")  # type: ignore[arg-type]
    ds = make_dataset(pattern, batch_size=3, training=training, options=opts, output="dict")
    seen = []
    for batch in ds:
        keys = {
            (e, p if batch_by == "plate" else 0)
            for e, p in zip(batch["experiment"].numpy(), batch["plate"].numpy(), strict=True)
        }
        assert len(keys) == 1, keys
        seen.extend(index_of(batch["image"].numpy()).tolist())
    expected = [r["index"] for r in shards[1] if not (training and pd.isna(r["sirna_id"]))]
    assert sorted(seen) == sorted(expected)  # nothing dropped, nothing repeated


def test_mixed_batches_mix_plates(shards: tuple[str, list[dict]]) -> None:
    ds = make_dataset(shards[0], batch_size=6, training=False, output="dict")
    plates = [len(set(b["plate"].numpy().tolist())) for b in ds]
    assert max(plates) > 1  # the default is unchanged: batches span plates


def test_batch_by_is_validated() -> None:
    with pytest.raises(OptionsError, match="batch_by='well'"):
        PipelineOptions(batch_by="well")  # type: ignore[arg-type]
