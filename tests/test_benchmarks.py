"""The batch-effect benchmark runs from a checkout: protocol, locking, real-data planning.

The figures in docs/batch-effects.md come from the real configurations (and
tests/test_batch_effects_tables.py checks the page against its CSV); this checks that
every method runs end to end, the output has the documented shape, and the parts of the
protocol that decide what a method may see.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import benchmark_module

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
BENCH = BENCHMARKS / "bench_batch_effects.py"
PROBE = ROOT / "tools" / "probe_global_ratio.py"

#: A second process that claims the folder sys.argv[2] and holds it, as a second run would.
_CLAIM = (
    "import sys; sys.path.insert(0, sys.argv[1]); import bench_batch_effects as b; "
    "from pathlib import Path\nwith b.claim(Path(sys.argv[2])): pass"
)


def _bench():
    return benchmark_module("bench_batch_effects")


def _check_results(out: Path, bench, methods=None) -> pd.DataFrame:
    frame = pd.read_csv(out / "batch_effects.csv")
    assert list(frame.columns) == list(bench.COLUMNS)
    assert frame["method"].drop_duplicates().tolist() == list(methods or bench.METHODS)
    assert set(frame["kind"]) <= {"inductive", "transductive", "reference"}
    assert frame.groupby("method")["kind"].first().to_dict() == {
        m: bench.kind(m) for m in frame["method"].unique()
    }
    values = frame[["val_site_acc", "ood_site_acc", "ood_well_acc", "ood_worst_cell_type_acc"]]
    assert values.notna().all().all() and ((values >= 0) & (values <= 1)).all().all()
    choices = pd.read_csv(out / "choices.csv")
    assert list(choices.columns) == list(bench.CHOICES)
    assert {"epoch", "sd_floor", "l2", "batch"} == set(choices["choice"])
    run = json.loads((out / "run.json").read_text())
    assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["complete"] is True
    assert (out / "batch_effects.png").stat().st_size > 10_000
    return frame


@pytest.mark.subprocess
@pytest.mark.slow
def test_batch_effect_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = _bench()
    frame = _check_results(tmp_path, bench)
    assert frame["id_site_acc"].notna().all()
    assert len(bench.METHODS) == 14 and "controls_all" in bench.METHODS
    assert "the interval excludes 0" in proc.stdout
    assert not list(tmp_path.glob("data-*")) and not list(tmp_path.glob("records-*"))


def test_the_held_out_choices_keep_val_and_test_apart_from_training():
    bench = _bench()
    meta = pd.DataFrame(
        {"experiment": [f"{ct}-{i:02d}" for ct in bench.CELL_TYPES for i in range(1, 5)]}
    )
    seen = []
    for heldout in (0, 1):
        split = bench.heldout_split(meta, 4, heldout)
        exps = {p: {e for e, _ in keys} for p, keys in split.parts.items()}
        assert exps["train"] == exps["id"]  # site 1 trains, site 2 is held-in
        assert not (exps["train"] & exps["val"]) and not (exps["train"] & exps["ood"])
        assert not (exps["val"] & exps["ood"])
        assert {e.split("-")[0] for e in exps["val"]} == set(bench.CELL_TYPES)
        assert {s for _, s in split.parts["train"]} == {"1"}
        seen.append(exps["ood"])
    assert not (seen[0] & seen[1])  # two different held-out choices


def test_global_statistics_come_from_the_training_sites_only():
    """Held-out pixels must not leak into `global` (the issue's second finding)."""
    bench = _bench()
    rows = []
    for exp, value in (("HEPG2-01", 1.0), ("HEPG2-02", 1.0), ("HEPG2-03", 50.0)):
        for site in (1, 2):
            rows.append(
                {"id_code": f"{exp}_1_B02", "experiment": exp, "plate": 1, "well": "B02",
                 "site": site, "channel": 1, "mean": value * site, "std": 1.0}
            )  # fmt: skip
    stats = pd.DataFrame(rows)
    meta = stats.drop(columns=["channel", "mean", "std"]).assign(
        well_type="negative_control", sirna_id=1138, cell_type="HEPG2"
    )
    data = bench.Data(0, [], meta, stats, [1])
    from rxdata import Split

    split = Split(
        {"train": {("HEPG2-01", "1"), ("HEPG2-02", "1")}, "ood": {("HEPG2-03", "1")}},
        by=("experiment", "site"),
    )
    run = bench.make_run(data, bench.SMOKE, 0, split)
    assert run.normalizers["global"].global_stats.mean.tolist() == [1.0]  # site 1 of 01, 02
    assert run.normalizers["controls"].controls == "negative"
    assert run.normalizers["controls_all"].controls == "all"


def test_the_embedding_head_is_not_ruled_by_a_unit_that_barely_fires_in_training():
    # A ReLU unit that fired on one training row (value 1e-3) and fires strongly on the
    # test rows: dividing by its tiny training sd made it outweigh the real signal.
    bench = _bench()
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    signal = y[:, None] * 2.0 + rng.normal(0, 0.5, (100, 3))
    dead = np.zeros((100, 1))
    dead[0] = 1e-3  # the one training row it fired on is of class 0
    x_train = np.hstack([signal, dead])
    y_test = np.repeat([0, 1], 20)
    x_test = np.hstack([y_test[:, None] * 2.0 + rng.normal(0, 0.5, (40, 3)), np.ones((40, 1))])
    probs = bench.softmax_head(x_train, y, 2, {"test": x_test})["test"]
    assert np.isfinite(probs).all()
    assert (probs.argmax(1) == y_test).mean() > 0.9


def test_the_embedding_heads_l2_penalty_is_applied():
    # The penalty is chosen on val from L2S: each value must give another head.
    bench = _bench()
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 30)
    x = y[:, None] * 1.0 + rng.normal(0, 1.0, (60, 5))
    weak, strong = (
        bench.softmax_head(x, y, 2, {"t": x}, l2=l2)["t"] for l2 in (bench.L2S[0], 10.0)
    )
    assert np.abs(strong - 0.5).max() < np.abs(weak - 0.5).max()  # pulled towards 1/2
    assert len(bench.L2S) >= 3 and len(set(bench.L2S)) == len(bench.L2S)


def test_a_rerun_replaces_the_previous_data_and_refuses_foreign_folders(tmp_path):
    bench = _bench()
    out = tmp_path / "out"
    with bench.claim(out):
        bench.fresh_output(out)
    stale = out / "data-0" / "images" / "HEPG2-01" / "Plate1" / "D07_s1_w1.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a previous configuration's image")
    (out / "records-0").mkdir()
    for name in bench.RESULTS:  # the last run's results: another configuration's
        (out / name).write_text("a previous run's results\n")
    with bench.claim(out):
        bench.fresh_output(out)
    assert not (out / "data-0").exists() and not (out / "records-0").exists()
    assert not any((out / name).exists() for name in bench.RESULTS)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not written by this benchmark"), bench.claim(foreign):
        pass
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.subprocess
def test_a_second_run_into_the_same_folder_is_refused_by_the_conversion_lock(tmp_path):
    bench = _bench()
    out = tmp_path / "out"
    with bench.claim(out):  # this process is "the first run"
        second = subprocess.run(
            [sys.executable, "-c", _CLAIM, str(BENCHMARKS), str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode != 0
        assert "in use by another run" in second.stderr, second.stderr
    again = subprocess.run(  # released when the first run ends
        [sys.executable, "-c", _CLAIM, str(BENCHMARKS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr


def test_an_out_that_is_a_file_or_has_a_strange_marker_is_refused_with_a_message(tmp_path):
    bench = _bench()
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match="is a file, not a folder"), bench.claim(a_file):
        pass
    odd = tmp_path / "odd"
    (odd / bench.MARKER).mkdir(parents=True)  # a folder where the marker file should be
    with pytest.raises(SystemExit, match="is not a file; remove it"), bench.claim(odd):
        pass
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    for path in (a_file / "sub", tmp_path / "dangling"):  # under a file; a broken link
        with pytest.raises(SystemExit, match=f"{path}"), bench.claim(path):
            pass


@pytest.mark.subprocess
@pytest.mark.real
def test_the_real_sample_is_planned_read_and_refused_with_the_counts(real_root, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--data", str(real_root / "images"), "--metadata",
         str(real_root / "metadata"), "--out", str(out), "--image-size", "64"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "too few sites to train and score (18 of 125510 sites have all 6 images)" in (
        proc.stderr
    )
    assert "use the full RxRx1 release's metadata.csv" in proc.stderr
    assert not out.exists()  # refused before any work


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_full_release_root_runs_with_the_wilds_split(tmp_path):
    from rxdata.synthetic import SyntheticOptions, generate

    root = tmp_path / "rxrx1"
    generate(
        root,
        SyntheticOptions(
            sirnas_per_plate=1, positive_controls=0, image_size=16, layout="full", plates=1,
            workers=1, progress=False,
        ),
    )  # fmt: skip
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--data", str(root), "--out", str(out),
         "--image-size", "64"],
        capture_output=True,
        text=True,
        timeout=2400,  # the 51 experiments' plates are adapted and assigned one by one
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "splits: WILDS official and mixed-to-test" in proc.stdout
    _check_results(out, _bench())


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--modes", "tvn:nonsense"], "unknown mode 'tvn:nonsense'"),
        (["--config", "{bad"], "--config: not JSON"),
        (["--config", '{"epochs": "1"}'], "every value must be a positive integer"),
        (["--config", '{"experiments_per_cell_type": 2}'], "at least 3"),
    ],
)
def test_the_calibration_probe_checks_its_arguments_before_building_data(tmp_path, args, message):
    out = tmp_path / "probe"
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(out), "{}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not out.exists()  # refused before any of the minutes of work


#: One training experiment too few to train would leave the plan short: two per cell
#: type, WILDS' val experiment and one of its test experiments.
_CONVERTED = (
    "HEPG2-01", "HEPG2-02", "HEPG2-08", "HEPG2-09", "HUVEC-01", "HUVEC-02", "HUVEC-17",
    "HUVEC-18", "RPE-01", "RPE-02", "RPE-08", "RPE-09", "U2OS-01", "U2OS-02", "U2OS-04",
    "U2OS-05",
)  # fmt: skip


@pytest.fixture(scope="module")
def full_release(tmp_path_factory):
    """A full-release-layout root (51 experiments of 4 plates, 4 siRNAs) and its metadata."""
    from rxdata import read_metadata
    from rxdata.synthetic import SyntheticOptions, generate

    root = tmp_path_factory.mktemp("bench-real") / "rxrx1"
    generate(
        root,
        SyntheticOptions(
            sirnas_per_plate=1, positive_controls=1, image_size=16, layout="full",
            workers=1, progress=False,
        ),
    )  # fmt: skip
    return root, read_metadata(root)


def _convert(root, metadata, out, experiments=_CONVERTED, **options):
    from rxdata import ConvertOptions, convert

    convert(
        root,
        out,
        metadata=metadata,
        options=ConvertOptions(
            workers=1, progress=False, experiments=tuple(experiments), **options
        ),
    )
    return out


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_a_conversion_is_planned_from_its_records(full_release, tmp_path, encoding):
    from rxdata import compute_pixel_stats

    bench = _bench()
    root, metadata = full_release
    conv = _convert(root, metadata, tmp_path / "conv", encoding=encoding)
    cfg = bench.dataclasses.replace(bench.SMOKE, classes=2)
    plan = bench.plan_real(conv, cfg)
    assert plan.records is not None and plan.records.root == str(conv)
    # the records' metadata and statistics are those of the images they came from
    converted = metadata[metadata["experiment"].astype(str).isin(_CONVERTED)]
    expected = compute_pixel_stats(root, plan.metadata, workers=0, progress=False)
    key = ["id_code", "site", "channel"]
    got = plan.stats.sort_values(key).reset_index(drop=True)
    want = expected.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert len(plan.classes) == 2 and metadata["sirna_id"].lt(1108).sum() > 0
    assert len(set(converted.loc[converted["well_type"] == "treatment", "sirna_id"])) == 4
    kept = plan.metadata
    assert set(kept.loc[kept["well_type"] == "treatment", "sirna_id"]) == set(plan.classes)
    assert (kept["well_type"] == "negative_control").any()  # controls kept for statistics
    # the splits name the chosen sites only: the other siRNAs are never read
    for _, split in plan.splits:
        assert split.by == ("id_code", "site")
        named = set().union(*split.parts.values())
        assert named <= set(zip(kept["id_code"], kept["site"].astype(str), strict=True))
    official = plan.splits[0][1].parts
    assert {i.split("_")[0] for i, _ in official["val"]} == {
        "HEPG2-08", "HUVEC-17", "RPE-08", "U2OS-04"
    }  # fmt: skip
    assert {s for _, s in official["train"]} == {"1"} and {s for _, s in official["id"]} == {"2"}
    # --metadata: the labels come from it, for the converted sites only
    labeled = bench.plan_real(conv, cfg, metadata_path=root)
    assert labeled.classes == plan.classes
    assert set(labeled.metadata["site_id"]) == set(plan.metadata["site_id"])


def test_records_without_labels_and_no_metadata_are_refused():
    from types import SimpleNamespace

    bench = _bench()
    records = SimpleNamespace(root="conv", label_release=None, check_complete=lambda: None)
    with pytest.raises(SystemExit, match=r"hold no labels.*--metadata"):
        bench.read_conversion(records, None)


def test_a_conversion_that_cannot_fill_the_split_is_refused_with_the_fix(full_release, tmp_path):
    bench = _bench()
    root, metadata = full_release
    test_only = ("HEPG2-09", "HUVEC-18", "RPE-09", "U2OS-05")
    conv = _convert(root, metadata, tmp_path / "conv", experiments=test_only)
    with pytest.raises(SystemExit, match="too few sites to train and score") as err:
        bench.plan_real(conv, bench.SMOKE)
    message = str(err.value)
    assert "train: HEPG2 0, HUVEC 0, RPE 0, U2OS 0" in message
    assert "of 4 experiments (splits: " in message and "convert them all" in message


def test_an_unfinished_conversion_is_refused_with_how_to_finish_it(full_release, tmp_path):
    bench = _bench()
    root, metadata = full_release
    conv = _convert(root, metadata, tmp_path / "conv")
    manifest = json.loads((conv / "manifest.json").read_text())
    (conv / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(SystemExit, match="is not a complete conversion") as err:
        bench.plan_real(conv, bench.SMOKE)
    assert "re-run the same `rxdata convert` command" in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_conversion_runs_with_the_wilds_split(full_release, tmp_path):
    root, metadata = full_release
    conv = _convert(root, metadata, tmp_path / "conv")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--data", str(conv), "--out", str(out),
         "--image-size", "64", "--classes", "2"],
        capture_output=True,
        text=True,
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(conversion): " in proc.stdout and "(2 classes)" in proc.stdout
    assert not (out / "records-real").exists()  # read where it is, not converted again
    _check_results(out, _bench())


@pytest.mark.real
@pytest.mark.slow
def test_a_conversion_of_the_real_sample_is_read_and_refused_with_the_counts(real_root, tmp_path):
    from rxdata import ConvertOptions, convert, read_metadata
    from rxdata.metadata import scan_images

    bench = _bench()
    metadata = read_metadata(real_root / "metadata")
    found = scan_images(real_root / "images").sites
    complete = set(found.loc[found["complete"], "site_id"].astype(str))
    conv = tmp_path / "conv"
    convert(
        real_root / "images",
        conv,
        metadata=metadata[metadata["site_id"].astype(str).isin(complete)],
        options=ConvertOptions(workers=1, progress=False, scan=False),
    )
    with pytest.raises(SystemExit, match="too few sites to train and score") as err:
        bench.plan_real(conv, bench.SMOKE, metadata_path=real_root / "metadata")
    message = str(err.value)
    assert "(18 of 18 sites have all 6 images)" in message
    assert "The conversion holds 18 sites of 5 experiments" in message
    assert "convert them all" in message
