from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rxdata.cli import main
from rxdata.errors import OptionsError
from rxdata.labels import rerelease_names, to_rerelease_names
from rxdata.metadata import read_metadata, scan_images
from rxdata.naming import (
    NEGATIVE_CONTROL_WELL,
    POSITIVE_CONTROL_IDS,
    POSITIVE_CONTROL_WELLS,
    image_path,
)
from rxdata.synthetic import (
    TARGET_CHANNEL_MEANS,
    TREATMENT_WELLS,
    SyntheticOptions,
    generate,
    plate_layout,
    sirna_groups,
)

KAGGLE_COLUMNS = {
    "train.csv": ["id_code", "experiment", "plate", "well", "sirna"],
    "test.csv": ["id_code", "experiment", "plate", "well"],
    "train_controls.csv": ["id_code", "experiment", "plate", "well", "sirna", "well_type"],
    "test_controls.csv": ["id_code", "experiment", "plate", "well", "sirna", "well_type"],
    "sample_submission.csv": ["id_code", "sirna"],
}
FULL_COLUMNS = [
    "site_id",
    "well_id",
    "cell_type",
    "dataset",
    "experiment",
    "plate",
    "well",
    "site",
    "well_type",
    "sirna",
    "sirna_id",
]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("plates", 0),
        ("plates", 5),
        ("sites", 3),
        ("sirnas_per_plate", 278),
        ("positive_controls", 31),
        ("image_size", 4),
        ("image_width", 4),
        ("image_width", 12.0),
        ("png_compression", 10),
        ("signal", -1.0),
        ("batch_effect", "strong"),
        ("incomplete_fraction", 1.5),
        ("layout", "zarr"),
        ("label_style", "roman"),
        ("workers", 0),
        ("seed", -1),
        ("plates", True),
        ("experiments", (("HEPG2", -1, 0),)),
        ("experiments", (("HEPG2", 0, 0),)),
        ("experiments", (("hepg2", 1, 0),)),
        ("experiments", "HEPG2"),
        ("experiments", (("FOO", 1, 1),)),  # read_metadata refuses unknown cell types
        ("progress", "yes"),
        ("sites", 1),  # with the default Kaggle layout, whose CSVs imply 2 sites per well
    ],
)
def test_bad_options_name_the_field(field, value):
    with pytest.raises(OptionsError, match=field if field != "experiments" else "experiments"):
        SyntheticOptions(**{field: value})


def test_options_accept_a_mapping_and_name_experiments_like_the_real_data():
    opts = SyntheticOptions(experiments={"HEPG2": (2, 1), "U2OS": (1, 0)})
    assert opts.experiments == (("HEPG2", 2, 1), ("U2OS", 1, 0))
    assert opts.experiment_names == (
        ("train", "HEPG2-01"),
        ("train", "HEPG2-02"),
        ("train", "U2OS-01"),
        ("test", "HEPG2-03"),
    )
    real = SyntheticOptions()
    assert sum(d == "train" for d, _ in real.experiment_names) == 33
    assert sum(d == "test" for d, _ in real.experiment_names) == 18
    assert ("test", "HUVEC-24") in real.experiment_names


def test_image_width_makes_non_square_images_and_none_means_square(tmp_path):
    small = {"experiments": (("RPE", 1, 0),), "plates": 1, "sirnas_per_plate": 1}
    opts = SyntheticOptions.tiny(**small, positive_controls=0, image_size=12, image_width=10)
    root = generate(tmp_path / "wide", opts)
    shapes = {np.asarray(Image.open(p)).shape for p in root.rglob("*.png")}
    assert shapes == {(12, 10)}  # (height, width) = (image_size, image_width)
    # a width equal to the height is the square default, byte for byte
    square = SyntheticOptions.tiny(**small, image_size=12)
    same = generate(tmp_path / "a", square, image_width=12)
    assert _digest(same) == _digest(generate(tmp_path / "b", square))


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(OptionsError, match="unknown option"):
        generate(tmp_path, SyntheticOptions.tiny(), size=8)


# ----------------------------------------------------------------------------- plate layout
def test_real_plate_structure():
    opts = SyntheticOptions()
    groups = sirna_groups(opts.seed)
    assert sorted(groups.ravel().tolist()) == list(range(1108))
    assert len(TREATMENT_WELLS) == 277
    orders = set()
    for experiment in ("HEPG2-01", "HUVEC-05", "RPE-03", "U2OS-02", "HUVEC-17"):
        order = []
        for plate in (1, 2, 3, 4):
            layout = plate_layout(opts, experiment, plate)
            assert len(layout) == 308 and layout.well.is_unique
            assert layout.well.is_monotonic_increasing
            neg = layout[layout.well_type == "negative_control"]
            assert neg.well.tolist() == [NEGATIVE_CONTROL_WELL] and neg.sirna_id.tolist() == [1138]
            pos = layout[layout.well_type == "positive_control"]
            assert sorted(pos.well) == sorted(POSITIVE_CONTROL_WELLS)
            assert sorted(pos.sirna_id) == list(POSITIVE_CONTROL_IDS)
            treat = set(layout[layout.well_type == "treatment"].sirna_id)
            (group,) = [g for g in range(4) if set(groups[g]) == treat]  # one whole group
            order.append(group)
        assert sorted(order) == [0, 1, 2, 3]  # each plate a different group
        orders.add(tuple(order))
    assert len(orders) > 1  # the group order varies by experiment


def test_small_plates_reuse_the_same_sirnas_across_experiments():
    opts = SyntheticOptions(sirnas_per_plate=3, positive_controls=2)

    def classes(experiment):
        return {
            k
            for p in range(1, 5)
            for k in plate_layout(opts, experiment, p).query("well_type == 'treatment'").sirna_id
        }

    assert len(classes("HEPG2-01")) == 12  # 4 groups x 3 siRNAs
    assert classes("HEPG2-01") == classes("RPE-02")  # the same classes in every experiment


# ----------------------------------------------------------------------------- round trips
def test_kaggle_files_match_the_real_formats(tiny_kaggle):
    for name, columns in KAGGLE_COLUMNS.items():
        df = pd.read_csv(tiny_kaggle / name)
        assert list(df.columns) == columns, name
    sub = pd.read_csv(tiny_kaggle / "sample_submission.csv")
    test = pd.read_csv(tiny_kaggle / "test.csv")
    assert sub.id_code.tolist() == test.id_code.tolist() and (sub.sirna == 911).all()
    controls = pd.read_csv(tiny_kaggle / "train_controls.csv")
    assert set(controls.well_type) == {"negative_control", "positive_control"}


@pytest.mark.real
def test_kaggle_headers_equal_the_real_headers(tiny_kaggle, real_metadata_dir):
    for name in KAGGLE_COLUMNS:
        real = (real_metadata_dir / name).read_text().splitlines()[0]
        assert (tiny_kaggle / name).read_text().splitlines()[0] == real


def test_full_release_metadata_format(tiny_full):
    df = pd.read_csv(tiny_full / "metadata.csv")
    assert list(df.columns) == FULL_COLUMNS
    assert (df.sirna[df.sirna_id == 1138] == "EMPTY").all()
    assert df.sirna[df.sirna_id != 1138].str.fullmatch(r"s\d+").all()


@pytest.mark.parametrize("fixture", ["tiny_kaggle", "tiny_full"])
def test_generate_read_scan_agree(fixture, request):
    root = request.getfixturevalue(fixture)
    md = read_metadata(root)
    scan = scan_images(root)
    assert len(md) == len(scan) == 336
    assert sorted(md.site_id) == sorted(scan.sites.site_id)
    assert scan.sites.complete.all() and not scan.unparsed
    assert md.cell_type.nunique() == 4
    assert set(md.plate) == {1, 2, 3, 4}
    assert (md.groupby(["experiment", "plate"], observed=True).well.nunique() == 7).all()
    layout = "kaggle" if fixture == "tiny_kaggle" else "full"
    row = md.iloc[-1]
    png = root / image_path(row.dataset, row.experiment, row.plate, row.well, row.site, 6, layout)
    with Image.open(png) as im:
        assert (im.mode, im.size) == ("L", (32, 32))


def test_string_labels_round_trip(tmp_path, tiny_kaggle):
    root = generate(tmp_path, SyntheticOptions.tiny(seed=7, image_size=8), label_style="string")
    strings = read_metadata(root)
    ints = read_metadata(tiny_kaggle)
    pd.testing.assert_series_equal(strings.sirna_id, ints.sirna_id)
    assert set(strings.sirna.dropna()) >= {"UNTREATED"}
    # the re-release's own numbering, not "sirna_{class id}": class 0 is sirna_332
    labelled = strings.sirna_id.notna().to_numpy()
    names = to_rerelease_names(strings.sirna_id[labelled].astype(int).tolist())
    assert (strings.sirna[labelled].to_numpy() == names).all()
    assert (strings.sirna[labelled] != "sirna_" + strings.sirna_id[labelled].astype(str)).any()
    train = pd.read_csv(root / "train.csv", dtype=str)
    assert train.sirna.isin(rerelease_names()).all()
    # the sample submission is in the same label space as the tables beside it
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert (sample.sirna == to_rerelease_names([911])[0]).all()
    plain = pd.read_csv(tiny_kaggle / "sample_submission.csv", dtype=str)
    assert (plain.sirna == "911").all()


def test_incomplete_sites_are_reported(tmp_path):
    root = generate(tmp_path, SyntheticOptions.tiny(image_size=8, incomplete_fraction=0.25))
    scan = scan_images(root)
    fraction = len(scan.incomplete) / len(scan)
    assert 0.15 < fraction < 0.35
    assert set(scan.incomplete.missing) == {(5, 6)}
    assert len(read_metadata(root)) == len(scan)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(["kaggle", "full"]))
def test_generate_round_trip_property(tmp_path_factory, seed, layout):
    opts = SyntheticOptions.tiny(
        experiments=(("RPE", 1, 1),), plates=2, sirnas_per_plate=2, image_size=8, seed=seed
    )
    root = generate(tmp_path_factory.mktemp("prop"), opts, layout=layout)
    md = read_metadata(root)
    assert sorted(md.site_id) == sorted(scan_images(root).sites.site_id)
    assert len(md) == 2 * 2 * (2 + 2 + 1) * 2


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_across_worker_counts(tmp_path):
    # 80 sites: enough for generate() to use its process pool when workers > 1
    opts = SyntheticOptions.tiny(experiments=(("HEPG2", 1, 1),), sirnas_per_plate=2, image_size=8)
    a = _digest(generate(tmp_path / "a", opts))
    b = _digest(generate(tmp_path / "b", opts, workers=2))
    c = _digest(generate(tmp_path / "c", opts, seed=1))
    assert a == b
    assert a != c
    common = [k for k in a.keys() & c.keys() if k.endswith(".png")]
    assert common and all(a[k] != c[k] for k in common)  # B02 exists in both: new pixels


_GENERATE = (
    "import sys; from rxdata.synthetic import SyntheticOptions, generate; "
    "generate(sys.argv[1], SyntheticOptions.tiny(experiments=(('U2OS', 1, 1),), plates=1, "
    "sirnas_per_plate=1, positive_controls=1, image_size=12, image_width=10))"
)


@pytest.mark.subprocess
def test_same_bytes_in_fresh_processes_with_other_hash_seeds(tmp_path):
    """The tests' data sets are generated per process (pytest-xdist workers, subprocess
    tests) and their shards compared across runs: no pixel may depend on ``hash()``."""
    import os
    import subprocess
    import sys

    digests = []
    for hash_seed in ("1", "4321"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        root = tmp_path / hash_seed
        subprocess.run([sys.executable, "-c", _GENERATE, str(root)], env=env, check=True)
        digests.append(_digest(root))
    assert digests[0] == digests[1] and len(digests[0]) == 2 * 3 * 2 * 6 + 5  # PNGs + CSVs


# ----------------------------------------------------------------------------- pixels
def _path(r, channel: int, layout: str) -> str:
    return image_path(r.dataset, r.experiment, r.plate, r.well, r.site, channel, layout)


def _channel_means(root: Path, md: pd.DataFrame, layout: str) -> np.ndarray:
    return np.stack(
        [
            [
                np.asarray(
                    Image.open(
                        root
                        / image_path(r.dataset, r.experiment, r.plate, r.well, r.site, c, layout)
                    )
                ).mean()
                for c in range(1, 7)
            ]
            for r in md.itertuples()
        ]
    )


def test_pixel_statistics_are_near_the_real_means(tmp_path):
    # without class signal and batch effects the renderer hits the published means ...
    opts = SyntheticOptions.tiny(
        image_size=128, batch_effect=0.0, signal=0.0, sites=1, plates=1, layout="full"
    )
    root = generate(tmp_path / "flat", opts)
    means = _channel_means(root, read_metadata(root), "full").mean(0)
    np.testing.assert_allclose(means, TARGET_CHANNEL_MEANS, rtol=0.12)
    # ... and with them it stays in the same range
    root = generate(tmp_path / "effects", opts, signal=1.0, batch_effect=1.0, plates=2)
    means = _channel_means(root, read_metadata(root), "full").mean(0)
    np.testing.assert_allclose(means, TARGET_CHANNEL_MEANS, rtol=0.5)
    one = np.asarray(Image.open(root / image_path(None, "U2OS-01", 1, "B02", 1, 1, "full")))
    assert np.median(one) < one.mean() < np.percentile(one, 99) / 3  # dark, sparse cells


def _nearest_centroid_accuracy(features, md):
    treat = (md.well_type == "treatment").to_numpy()
    held_out = (md.dataset == "test").to_numpy()
    y = md.sirna_id.to_numpy(dtype=int)
    train, test = treat & ~held_out, treat & held_out
    classes = np.unique(y[train])
    centroids = np.stack([features[train & (y == k)].mean(0) for k in classes])
    dist = ((features[test][:, None, :] - centroids[None]) ** 2).sum(-1)
    return float((classes[dist.argmin(1)] == y[test]).mean()), 1 / len(classes)


def _plate_control_normalized(features, md):
    out = np.empty_like(features)
    for _, rows in md.groupby(["experiment", "plate"], observed=True).indices.items():
        controls = rows[(md.well_type.to_numpy()[rows] != "treatment")]
        mean, std = features[controls].mean(0), features[controls].std(0) + 1e-6
        out[rows] = (features[rows] - mean) / std
    return out


_CALIBRATED = (
    "nonlinearity",
    "vignetting",
    "well_position",
    "density",
    "focus",
    "batch_biology",
    "morphology",
)
_AFFINE_ONLY = dict.fromkeys(_CALIBRATED, 0.0)


@pytest.mark.parametrize("signal", [1.0, 0.0], ids=["signal", "no-signal"])
def test_per_plate_control_normalization_beats_global_on_held_out_experiments(tmp_path, signal):
    """The synthetic data's design: batch effects hide the class signal; controls undo them.

    Features are per-site channel means; a nearest-centroid classifier is fit on the train
    experiments and scored on held-out (test) experiments of all cell types.
    """
    opts = SyntheticOptions(
        experiments=(("HEPG2", 2, 1), ("HUVEC", 2, 1), ("RPE", 1, 0), ("U2OS", 1, 0)),
        sirnas_per_plate=6,
        positive_controls=6,
        image_size=16,  # channel means carry the signal; small images keep the test fast
        layout="full",
        workers=1,
        progress=False,
        signal=signal,
        seed=3,
        **_AFFINE_ONLY,  # the classic effects, which per-plate control statistics undo
    )
    root = generate(tmp_path, opts)
    md = read_metadata(root)
    x = _channel_means(root, md, "full")
    train = (md.dataset == "train").to_numpy()
    raw, chance = _nearest_centroid_accuracy(x, md)
    glob, _ = _nearest_centroid_accuracy((x - x[train].mean(0)) / x[train].std(0), md)
    plate, _ = _nearest_centroid_accuracy(_plate_control_normalized(x, md), md)
    if signal:
        assert plate >= 0.85, (raw, glob, plate)
        assert plate >= max(raw, glob) + 0.3, (raw, glob, plate)
        assert max(raw, glob) > chance  # the signal is there, just blurred by batches
    else:
        assert plate < 4 * chance + 0.1, (plate, chance)  # nothing to learn without signal


def test_cli_synth(tmp_path, capsys):
    rc = main(["synth", str(tmp_path), "--tiny", "--image-size", "8", "--layout", "full"])
    assert rc == 0
    assert "wrote 336 sites (6 experiments, 8 px, full layout)" in capsys.readouterr().out
    assert (tmp_path / "metadata.csv").is_file()
    assert main(["synth", str(tmp_path / "x"), "--tiny", "--plates", "7"]) == 1
    assert "--plates 7" in capsys.readouterr().err  # the CLI names its flag
    assert main(["synth", str(tmp_path / "m"), "--tiny", "--morphology", "9"]) == 1
    assert "morphology" in capsys.readouterr().err
    flat = ["--tiny", "--image-size", "8", "--layout", "full", "--morphology", "0"]
    assert main(["synth", str(tmp_path / "m0"), *flat]) == 0
    one = np.asarray(
        Image.open(tmp_path / "m0" / image_path(None, "U2OS-01", 1, "B02", 1, 2, "full"))
    )
    again = np.asarray(Image.open(tmp_path / image_path(None, "U2OS-01", 1, "B02", 1, 2, "full")))
    assert not np.array_equal(one, again)  # the option reached the generator


def _held_out_accuracies(tmp_path, **overrides):
    opts = SyntheticOptions(
        experiments=(("HEPG2", 2, 1), ("HUVEC", 2, 1), ("RPE", 1, 0), ("U2OS", 1, 0)),
        sirnas_per_plate=6,
        positive_controls=6,
        image_size=16,
        layout="full",
        workers=1,
        progress=False,
        seed=3,
        **overrides,
    )
    root = generate(tmp_path, opts)
    md = read_metadata(root)
    x = _channel_means(root, md, "full")
    train = (md.dataset == "train").to_numpy()
    glob, _ = _nearest_centroid_accuracy((x - x[train].mean(0)) / x[train].std(0), md)
    plate, _ = _nearest_centroid_accuracy(_plate_control_normalized(x, md), md)
    return glob, plate


def test_calibrated_effects_survive_control_normalization(tmp_path):
    """The calibrated defaults: controls still help, but no longer undo everything."""
    glob, plate = _held_out_accuracies(tmp_path / "calibrated")
    _, affine_plate = _held_out_accuracies(tmp_path / "affine", **_AFFINE_ONLY)
    assert plate > glob + 0.1, (glob, plate)
    assert plate < affine_plate - 0.2, (plate, affine_plate)


def _site(root, experiment="HEPG2-01", plate=1, well="B02"):
    path = root / image_path(None, experiment, plate, well, 1, 1, "full")
    return np.asarray(Image.open(path), dtype=float)


_EFFECT_OPTS = {
    "experiments": (("HEPG2", 2, 0),),
    "sirnas_per_plate": 2,
    "positive_controls": 0,
    "image_size": 32,
    "layout": "full",
    "sites": 1,
    "plates": 2,
    "workers": 1,
    "progress": False,
    "seed": 5,
}


@pytest.mark.parametrize("effect", _CALIBRATED)
def test_each_calibrated_effect_changes_pixels_and_is_off_at_zero(tmp_path, effect):
    base = dict(_EFFECT_OPTS, **_AFFINE_ONLY)
    generate(tmp_path / "off", **base)
    generate(tmp_path / "off2", **base)
    generate(tmp_path / "on", **dict(base, **{effect: 0.5}))
    md = read_metadata(tmp_path / "off")
    wells = md.drop_duplicates(["experiment", "plate", "well"])
    off = [_site(tmp_path / "off", r.experiment, r.plate, r.well) for r in wells.itertuples()]
    off2 = [_site(tmp_path / "off2", r.experiment, r.plate, r.well) for r in wells.itertuples()]
    on = [_site(tmp_path / "on", r.experiment, r.plate, r.well) for r in wells.itertuples()]
    assert all(np.array_equal(a, b) for a, b in zip(off, off2, strict=True))  # seeded
    changed = [not np.array_equal(a, b) for a, b in zip(off, on, strict=True)]
    if effect == "batch_biology":  # the untreated control has no siRNA effect to vary
        treated = (wells.well_type == "treatment").to_numpy()
        assert all(np.array(changed)[treated]) and not any(np.array(changed)[~treated])
    else:
        assert all(changed)


def test_vignetting_darkens_the_corners(tmp_path):
    opts = dict(_EFFECT_OPTS, **_AFFINE_ONLY, signal=0.0, image_size=64)
    generate(tmp_path / "flat", **opts)
    generate(tmp_path / "vig", **dict(opts, vignetting=0.5))
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    corner, centre = (yy**2 + xx**2) > 1.2, (yy**2 + xx**2) < 0.2
    flat, vig = _site(tmp_path / "flat"), _site(tmp_path / "vig")
    corner_ratio = vig[corner].mean() / flat[corner].mean()  # same cells, same offset
    centre_ratio = vig[centre].mean() / flat[centre].mean()
    assert corner_ratio < 0.95 * centre_ratio, (corner_ratio, centre_ratio)


def test_batch_biology_makes_a_class_differ_between_experiments():
    from rxdata.synthetic import _class_profile

    for field in ("gain", "size", "spread"):
        a0 = getattr(_class_profile(0, 7, 1.0, 1, biology=0.0, morphology=1.0), field)
        b0 = getattr(_class_profile(0, 7, 1.0, 2, biology=0.0, morphology=1.0), field)
        a1 = getattr(_class_profile(0, 7, 1.0, 1, biology=1.0, morphology=1.0), field)
        b1 = getattr(_class_profile(0, 7, 1.0, 2, biology=1.0, morphology=1.0), field)
        np.testing.assert_array_equal(a0, b0)
        assert not np.allclose(a1, b1), field


def _shape_features(root, md):
    """Per channel: skewness and neighbour correlation of the per-image standardized pixels.

    Neither changes under a gain or an offset, so intensity-only classes cannot be told
    apart by them.
    """
    rows = []
    for r in md.itertuples():
        feats = []
        for c in range(1, 7):
            path = root / image_path(r.dataset, r.experiment, r.plate, r.well, r.site, c, "full")
            x = np.asarray(Image.open(path), dtype=float)
            z = (x - x.mean()) / (x.std() + 1e-9)
            feats += [(z**3).mean(), (z[:, 1:] * z[:, :-1]).mean()]
        rows.append(feats)
    return np.array(rows)


def test_morphology_is_a_class_signal_that_per_image_standardization_keeps(tmp_path):
    """Intensity-only classes mostly vanish under per-image standardization; morphology stays."""
    opts = SyntheticOptions(
        experiments=(("HEPG2", 2, 1), ("HUVEC", 2, 1)),
        sirnas_per_plate=4,
        positive_controls=0,
        image_size=48,
        layout="full",
        workers=1,
        progress=False,
        seed=3,
    )
    acc = {}
    for morphology in (0.0, 3.0):
        root = generate(tmp_path / str(morphology), opts, morphology=morphology)
        md = read_metadata(root)
        x = _shape_features(root, md)
        train = (md.dataset == "train").to_numpy()
        acc[morphology], chance = _nearest_centroid_accuracy(
            (x - x[train].mean(0)) / x[train].std(0), md
        )
    # (intensity-only classes leak a little through the cells' contrast to the background)
    assert acc[3.0] >= 0.5, (acc, chance)
    assert acc[3.0] >= acc[0.0] + 0.3, (acc, chance)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("nonlinearity", -0.1),
        ("vignetting", 0.95),
        ("well_position", 2.0),
        ("density", "x"),
        ("focus", 3.0),
        ("batch_biology", 6.0),
        ("morphology", -1.0),
    ],
)
def test_calibrated_effect_parameters_are_validated(name, value):
    with pytest.raises(OptionsError, match=name):
        SyntheticOptions(**{name: value})


def _real_log_channel_means(images: Path, experiment: str, split: str) -> np.ndarray:
    """Log mean of each channel of well B02, site 1, for each plate of ``experiment``."""
    plates = sorted((images / split / experiment).glob("Plate*"))
    return np.array(
        [
            [
                np.log(np.asarray(Image.open(p / f"B02_s1_w{c}.png"), float).mean())
                for c in range(1, 7)
            ]
            for p in plates
        ]
    )


def test_the_real_figures_behind_the_calibration(real_images_dir):
    # The figures docs/batch-effects-calibration.md ("Calibration") quotes, from the files.
    train = {
        e: _real_log_channel_means(real_images_dir, e, "train")
        for e in ("HEPG2-01", "HUVEC-01", "RPE-01", "U2OS-01")
    }
    within = np.sqrt(np.mean([m.std(0, ddof=1) ** 2 for m in train.values()], axis=0))
    assert within.round(2).min() == 0.11 and within.round(2).max() == 0.19  # plates, by channel
    between = np.array([m.mean(0) for m in train.values()]).std(0, ddof=1)
    assert between.round(2).min() == 0.43 and between.round(2).max() == 1.64  # + cell type
    # the one pair of experiments of one cell type: HEPG2-08 (2 plates) against HEPG2-01
    diff = _real_log_channel_means(real_images_dir, "HEPG2-08", "test").mean(0) - train[
        "HEPG2-01"
    ].mean(0)
    assert (diff < 0).all() and round(diff.mean(), 2) == -1.06  # every channel darker
    assert np.abs(diff).round(2).min() == 0.20 and np.abs(diff).round(2).max() == 1.95
    assert round((diff - diff.mean()).std(ddof=1), 2) == 0.56  # channel by channel
