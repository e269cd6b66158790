"""The batch-effect benchmark runs from a checkout: its 1-minute ``--smoke`` configuration.

The figures in docs/batch-effects.md come from the real configurations; this only checks
that every method runs end to end and the output has the documented shape.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
BENCH = BENCHMARKS / "bench_batch_effects.py"


#: A second process that claims the folder sys.argv[2], as a second run would.
_FRESH_OUTPUT = (
    "import sys; sys.path.insert(0, sys.argv[1]); import bench_batch_effects as b; "
    "from pathlib import Path; b.fresh_output(Path(sys.argv[2]))"
)


def _bench():
    """The benchmark module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_batch_effects
    finally:
        sys.path.remove(str(BENCHMARKS))
    return bench_batch_effects


@pytest.mark.subprocess
@pytest.mark.slow
def test_batch_effect_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = _bench()
    frame = pd.read_csv(tmp_path / "batch_effects.csv")
    assert list(frame.columns) == list(bench.COLUMNS)  # the columns, in order
    assert frame["method"].tolist() == list(bench.METHODS)
    assert "controls+tvn" in bench.METHODS and len(bench.METHODS) == 12
    values = frame.drop(columns=["method", "seed"])
    assert values.notna().all().all() and ((values >= 0) & (values <= 1)).all().all()
    assert (tmp_path / "batch_effects.png").stat().st_size > 10_000
    assert "global OOD/ID ratio" in proc.stdout


def test_a_rerun_replaces_the_previous_data_set_and_refuses_foreign_folders(tmp_path):
    bench = _bench()
    out = tmp_path / "out"
    bench.fresh_output(out)
    stale = out / "data" / "images" / "HEPG2-01" / "Plate1" / "D07_s1_w1.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"a previous configuration's image")
    (out / "records" / "old.tfrecord").parent.mkdir()
    (out / "records" / "old.tfrecord").write_bytes(b"")
    for name in bench.RESULTS:  # the last run's results: another configuration's
        (out / name).write_text("a previous run's results\n")
    bench.fresh_output(out)  # the next run: its data set and records start empty
    assert not (out / "data").exists() and not (out / "records").exists()
    assert not any((out / name).exists() for name in bench.RESULTS)  # none left stale
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not written by this benchmark"):
        bench.fresh_output(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


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


@pytest.mark.subprocess
def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    bench = _bench()
    out = tmp_path / "out"
    bench.fresh_output(out)  # this process is "the first run" until the test ends
    (out / "data").mkdir()
    (out / "data" / "first-run.png").write_bytes(b"in use")
    second = subprocess.run(
        [sys.executable, "-c", _FRESH_OUTPUT, str(BENCHMARKS), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    assert f"another run of this benchmark is using {out}" in second.stderr
    assert (out / "data" / "first-run.png").read_bytes() == b"in use"  # nothing deleted
    bench.fresh_output(out)  # the holder itself may start afresh
    assert not (out / "data").exists()


def test_an_out_that_is_a_file_or_has_a_strange_marker_is_refused_with_a_message(tmp_path):
    bench = _bench()
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        bench.fresh_output(a_file)
    odd = tmp_path / "odd"
    (odd / bench.MARKER).mkdir(parents=True)  # a folder where the marker file should be
    with pytest.raises(SystemExit, match="is not a file; remove it"):
        bench.fresh_output(odd)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    for path in (a_file / "sub", tmp_path / "dangling"):  # under a file; a broken link
        with pytest.raises(SystemExit, match=f"cannot use {path} as the benchmark's folder"):
            bench.fresh_output(path)


@pytest.mark.subprocess
def test_a_folder_removed_and_made_again_is_locked_again(tmp_path):
    bench = _bench()
    out = tmp_path / "out"
    bench.fresh_output(out)
    shutil.rmtree(out)  # the user clears the folder between two runs in one process
    bench.fresh_output(out)
    assert (out / bench.MARKER).is_file()
    other = subprocess.run(
        [sys.executable, "-c", _FRESH_OUTPUT, str(BENCHMARKS), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"another run of this benchmark is using {out}" in other.stderr


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--modes", "tvn:nonsense"], "unknown mode 'tvn:nonsense'"),
        (["--config", "{bad"], "--config: not JSON"),
        (["--config", '{"epochs": "1"}'], "every value must be a positive integer"),
        (["--config", '{"experiments_per_cell_type": 1}'], "at least 2"),
    ],
)
def test_the_calibration_probe_checks_its_arguments_before_building_data(tmp_path, args, message):
    out = tmp_path / "probe"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "probe_global_ratio.py"), str(out), "{}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not out.exists()  # refused before any of the minutes of work
