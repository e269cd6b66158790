"""The batch-effect benchmark continues a stopped run, and never mixes configurations.

The default configuration takes more CPU hours than one session has: a run is made
unit by unit, ``(data_seed, heldout, seed)``, over several sessions. These tests build
the folder a stopped run leaves (by the code before resuming, which wrote ``run.json``
without ``units``, and by today's) and check what a resumed run keeps, drops and
refuses; the slow test kills a real run after its first unit and resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import benchmark_module

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
BENCH = BENCHMARKS / "bench_batch_effects.py"


def _bench():
    return benchmark_module("bench_batch_effects")


bench = _bench()
SMOKE2 = bench.dataclasses.replace(bench.SMOKE, model_seeds=2)  # two units: (0, 0, 0/1)


def _unit_rows(unit, value=0.5):
    d, h, s = unit
    rows = [
        {"method": m, "kind": bench.kind(m), "data_seed": d, "heldout": h, "seed": s,
         "id_site_acc": value, "val_site_acc": value, "ood_site_acc": value,
         "ood_well_acc": value, "ood_worst_cell_type_acc": value}
        for m in bench.METHODS
    ]  # fmt: skip
    choices = [
        {"method": m, "data_seed": d, "heldout": h, "seed": s, "choice": c,
         "value": "plate" if c == "batch" else "1", "val_site_acc": value}
        for m, c in sorted(bench.RUN_CHOICES)
    ]  # fmt: skip
    return rows, choices


def _write(out: Path, units, info: dict, *, extra_rows=(), extra_choices=()) -> None:
    """A run's folder: the rows and choices of ``units``, then ``run.json``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / bench.MARKER).touch()
    rows, choices = [], []
    for unit in units:
        r, c = _unit_rows(unit)
        rows += r
        choices += c
    rows += list(extra_rows)
    choices += list(extra_choices)
    pd.DataFrame(rows, columns=list(bench.COLUMNS)).to_csv(
        out / "batch_effects.csv", index=False, float_format="%.4f"
    )
    pd.DataFrame(choices, columns=list(bench.CHOICES)).to_csv(
        out / "choices.csv", index=False, float_format="%.4f"
    )
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")


def _legacy_info(cfg, name="smoke", cpu_s=120.0):
    """``run.json`` as the code before resuming wrote it (3c6fb5a: no units, no sessions)."""
    return {
        "configuration": name, "config": bench.dataclasses.asdict(cfg), "data": None,
        "complete": False, "wall_s": 100.0, "cpu_s": cpu_s, "cpus": 2,
        "load_average_at_end": [1.0, 1.0, 1.0],
    }  # fmt: skip


def _what(cfg, name="smoke"):
    return bench.recorded(name, cfg, None, None)


def test_the_planned_units_are_every_data_seed_held_out_choice_and_model_seed():
    assert bench.planned_units(bench.SMOKE) == [(0, 0, 0)]
    full = bench.planned_units(bench.FULL)
    assert len(full) == 12 and full[:3] == [(0, 0, 0), (0, 0, 1), (0, 1, 0)]
    assert bench.planned_units(bench.FULL, real=True) == [
        (0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)
    ]  # fmt: skip


def test_a_run_from_before_resuming_keeps_its_finished_units_and_drops_a_partial_one(tmp_path):
    # The background run's format: run.json without units; a unit is finished when every
    # method's row and every choice are in the CSVs (the old code saved after each unit).
    out = tmp_path / "out"
    partial_rows, partial_choices = _unit_rows((0, 0, 1))
    _write(out, [(0, 0, 0)], _legacy_info(SMOKE2), extra_rows=partial_rows[:5],
           extra_choices=partial_choices)  # fmt: skip
    progress = bench.read_progress(out, _what(SMOKE2))
    assert progress.done == {(0, 0, 0)}
    assert progress.dropped == {(0, 0, 1)}
    assert len(progress.rows) == len(bench.METHODS) and len(progress.choices) == 10
    assert {r["seed"] for r in progress.rows} == {0}
    (legacy,) = progress.sessions
    assert legacy["cpu_s"] == 120.0 and legacy["units"] == 1 and legacy["started"] is None
    assert progress.units == [
        {"data_seed": 0, "heldout": 0, "seed": 0, "session": 0, "wall_s": None, "cpu_s": None}
    ]
    assert not progress.complete
    line = bench.describe(progress, bench.planned_units(SMOKE2))
    assert line.startswith("1 of 2 runs done, in 1 session(s)")
    assert "120 CPU s per run (the sessions' totals), about 0.0 CPU hours left" in line


def test_a_line_cut_off_by_a_killed_write_is_dropped_with_its_unit(tmp_path):
    out = tmp_path / "out"
    _write(out, [(0, 0, 0), (0, 0, 1)], _legacy_info(SMOKE2))
    text = (out / "batch_effects.csv").read_text()
    (out / "batch_effects.csv").write_text(text[:-20])  # the last row cut mid-number
    progress = bench.read_progress(out, _what(SMOKE2))
    assert progress.done == {(0, 0, 0)} and progress.dropped == {(0, 0, 1)}


def test_run_json_says_which_units_are_finished_in_todays_format(tmp_path):
    # Killed between writing the CSVs and run.json: the CSVs hold a unit run.json does
    # not list; it is run again.
    out = tmp_path / "out"
    info = {
        **_what(SMOKE2), "complete": False, "wall_s": 10.0, "cpu_s": 20.0,
        "sessions": [{"started": "2026-12-06T06:00:00Z", "commit": "abc", "units": 1,
                      "wall_s": 10.0, "cpu_s": 20.0, "cpus": 2,
                      "load_average_at_end": [1, 1, 1]}],
        "units": [{"data_seed": 0, "heldout": 0, "seed": 0, "session": 0, "wall_s": 9.0,
                   "cpu_s": 18.0}],
        "fingerprints": {"0": "f" * 64},
    }  # fmt: skip
    _write(out, [(0, 0, 0), (0, 0, 1)], info)
    progress = bench.read_progress(out, _what(SMOKE2))
    assert progress.done == {(0, 0, 0)} and progress.dropped == {(0, 0, 1)}
    assert progress.fingerprints == {"0": "f" * 64}
    assert "18 CPU s per run (1 run(s) timed)" in bench.describe(
        progress, bench.planned_units(SMOKE2)
    )
    info["units"].append({**info["units"][0], "seed": 1})
    info["units"].append({**info["units"][0], "heldout": 1})  # listed, but no rows
    (out / "run.json").write_text(json.dumps(info))
    with pytest.raises(SystemExit, match=r"lists the finished runs \[\(0, 1, 0\)\]"):
        bench.read_progress(out, _what(SMOKE2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_seeds": 3}, "config.model_seeds: 2 there, 3 now"),
        ({"epochs": 20}, "config.epochs: 1 there, 20 now"),
    ],
    ids=["seeds", "epochs"],
)
def test_another_configuration_is_refused_with_the_file_and_the_fix(tmp_path, change, message):
    out = tmp_path / "out"
    _write(out, [(0, 0, 0)], _legacy_info(SMOKE2))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cfg = bench.dataclasses.replace(SMOKE2, **change)
    with pytest.raises(SystemExit) as err:
        bench.read_progress(out, _what(cfg))
    text = str(err.value)
    assert str(out / "run.json") in text and message in text
    assert "choose another --out, or --restart" in text
    with pytest.raises(SystemExit, match="configuration: 'smoke' there, 'quick' now"):
        bench.read_progress(out, _what(SMOKE2, name="quick"))
    with pytest.raises(SystemExit, match="data: None there, '/data/rxrx1' now"):
        bench.read_progress(out, bench.recorded("smoke", SMOKE2, "/data/rxrx1", None))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched


def test_results_without_run_json_or_a_broken_one_are_refused(tmp_path):
    out = tmp_path / "out"
    _write(out, [(0, 0, 0)], _legacy_info(SMOKE2))
    (out / "run.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"run.json cannot be read .*--restart"):
        bench.read_progress(out, _what(SMOKE2))
    (out / "run.json").unlink()
    with pytest.raises(SystemExit, match=r"results without run\.json, so their configuration"):
        bench.read_progress(out, _what(SMOKE2))
    (out / "batch_effects.csv").write_text("a,b\n1,2\n")
    (out / "choices.csv").unlink()
    (out / "run.json").write_text(json.dumps(_legacy_info(SMOKE2)))
    with pytest.raises(SystemExit, match=r"has the columns \['a', 'b'\], not a run's"):
        bench.read_progress(out, _what(SMOKE2))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert bench.read_progress(empty, _what(SMOKE2)).done == set()


def test_a_complete_run_is_recognised_as_complete(tmp_path):
    out = tmp_path / "out"
    _write(out, [(0, 0, 0), (0, 0, 1)], {**_legacy_info(SMOKE2), "complete": True})
    assert bench.read_progress(out, _what(SMOKE2)).complete
    _write(out, [(0, 0, 0)], {**_legacy_info(SMOKE2), "complete": True})  # a unit short
    assert not bench.read_progress(out, _what(SMOKE2)).complete


def test_a_data_seed_made_again_must_match_its_fingerprint():
    meta = pd.DataFrame({"id_code": ["HEPG2-01_1_B02"], "site": [1]})
    stats = pd.DataFrame({"id_code": ["HEPG2-01_1_B02"], "site": [1], "mean": [0.25]})
    data = bench.Data(3, [], meta, stats, [1, 2])
    fingerprints: dict[str, str] = {}
    bench.check_fingerprint(data, fingerprints)
    assert list(fingerprints) == ["3"] and len(fingerprints["3"]) == 64
    bench.check_fingerprint(data, fingerprints)  # the same data: accepted
    other = bench.Data(3, [], meta, stats.assign(mean=[0.2500001]), [1, 2])
    with pytest.raises(SystemExit, match=r"data seed 3 made again differs .* --restart"):
        bench.check_fingerprint(other, fingerprints)


def test_the_files_are_replaced_whole(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    bench.write_atomic(path, "new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def _files(out: Path) -> dict[str, bytes]:
    """The folder's files and their bytes (the lock file aside: a run takes it)."""
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and "lock" not in p.name}


def _run(out: Path, *args: str, **popen):
    return subprocess.Popen(
        [sys.executable, str(BENCH), "--smoke", "--seeds", "2", "--out", str(out), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def _finish(proc, timeout=1800) -> str:
    stdout, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stdout[-4000:]
    return stdout


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_killed_run_resumes_with_what_is_missing_and_a_complete_one_is_kept(tmp_path):
    out = tmp_path / "out"
    first = _run(out, start_new_session=True)
    info_path = out / "run.json"
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and first.poll() is None:  # kill it in its 2nd unit
        if info_path.is_file() and json.loads(info_path.read_text())["units_done"] == 1:
            break
        time.sleep(0.5)
    assert first.poll() is None, first.communicate()[0][-4000:]
    os.killpg(first.pid, signal.SIGKILL)  # the run and its workers, as a lost machine
    first.communicate()
    killed = json.loads(info_path.read_text())
    assert killed["complete"] is False and killed["units_done"] == 1
    kept = pd.read_csv(out / "batch_effects.csv")
    assert set(kept["seed"]) == {0}

    stdout = _finish(_run(out))
    assert "resuming the smoke run" in stdout and "1 of 2 runs done" in stdout
    assert "'seed': 0}" not in stdout and "'seed': 1}" in stdout  # only the missing unit
    frame = pd.read_csv(out / "batch_effects.csv")
    assert frame.groupby(["data_seed", "heldout", "seed"]).size().to_dict() == {
        (0, 0, 0): 14, (0, 0, 1): 14
    }  # fmt: skip
    pd.testing.assert_frame_equal(frame[frame["seed"] == 0].reset_index(drop=True), kept)
    info = json.loads(info_path.read_text())
    assert info["complete"] is True and info["units_done"] == info["units_planned"] == 2
    assert len(info["sessions"]) == 2 and [u["session"] for u in info["units"]] == [0, 1]
    assert info["cpu_s"] == round(sum(s["cpu_s"] for s in info["sessions"]), 1)
    assert info["sessions"][0]["cpu_s"] == killed["cpu_s"]  # the killed session's time
    assert info["fingerprints"] == killed["fingerprints"]  # the data made again: the same
    assert not list(out.glob("data-*")) and not list(out.glob("records-*"))

    before = _files(out)
    stdout = _finish(_run(out))  # complete: said, not recomputed
    assert "holds a complete smoke run (2 of 2 runs done" in stdout
    assert "generating" not in stdout
    assert _files(out) == before

    refused = _run(out, "--epochs", "2")
    stdout, _ = refused.communicate(timeout=600)
    assert refused.returncode != 0
    assert "config.epochs: 1 there, 2 now" in stdout and "--restart" in stdout
    assert _files(out) == before


def test_the_embedding_head_fits_on_one_blas_thread_with_the_same_result():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(4), 40)
    x = np.maximum(rng.normal(size=(160, 64)) + np.eye(4)[y] @ rng.normal(size=(4, 64)), 0)
    with bench.one_blas_thread():
        inside = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()}
    assert inside and set(inside.values()) == {1}
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        free = bench.fit_head(x, y, 4, {"t": x}, 0.1, 1e-2)["t"]
    np.testing.assert_allclose(bench.softmax_head(x, y, 4, {"t": x})["t"], free, atol=1e-12)


def test_a_stopped_runs_data_and_cut_writes_are_cleared_and_its_results_kept(tmp_path):
    out = tmp_path / "out"
    _write(out, [(0, 0, 0)], _legacy_info(SMOKE2))
    kept = _files(out)
    (out / "data-0" / "images").mkdir(parents=True)
    (out / "records-0").mkdir()
    from rxdata import _io

    Path(_io.temporary_name(out / "run.json")).write_text("{half")  # what a kill leaves
    bench.clear_data(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(kept)
    assert _files(out) == kept
    assert bench.build_parser().parse_args(["--restart"]).restart
    assert not bench.build_parser().parse_args([]).restart  # continuing is the default


def test_the_compiled_inference_call_gives_the_eager_outputs_with_current_weights():
    cfg = bench.dataclasses.replace(bench.SMOKE, image_size=64)
    model = bench.build_model(cfg, 3, seed=0)
    x = np.random.default_rng(3).normal(size=(5, 64, 64, 6)).astype("float32")
    call = bench.compiled(model)
    assert bench.compiled(model) is call  # traced once per model
    same = {"rtol": 1e-5, "atol": 1e-7}  # equal bit for bit here; rounding may differ elsewhere
    np.testing.assert_allclose(np.asarray(call(x)), np.asarray(model(x, training=False)), **same)
    model.set_weights([w * 0.5 for w in model.get_weights()])  # as training moves them
    np.testing.assert_allclose(np.asarray(call(x[:2])), np.asarray(model(x[:2])), **same)
