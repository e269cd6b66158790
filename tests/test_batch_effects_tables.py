"""docs/batch-effects.md's figures are those its CSV gives (tools/batch_effects_tables.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def _tables():
    sys.path.insert(0, str(TOOLS))  # tools/ is a folder of scripts, not a package
    try:
        import batch_effects_tables
    finally:
        sys.path.remove(str(TOOLS))
    return batch_effects_tables


def test_the_page_holds_the_tables_its_committed_csv_gives():
    tables = _tables()
    current, expected = tables.expected_doc()
    assert current == expected, "run: python tools/batch_effects_tables.py"


def _frame(gains: dict[str, list[float]]) -> pd.DataFrame:
    kinds = {"global": "inductive", "controls": "transductive", "controls+lsa": "reference"}
    rows = []
    for run, base in enumerate([0.5, 0.6, 0.4, 0.55]):
        for method, gain in gains.items():
            acc = base + gain[run]
            rows.append(
                {"method": method, "kind": kinds.get(method, "transductive"),
                 "data_seed": run // 2, "heldout": run % 2, "seed": 0, "id_site_acc": acc,
                 "val_site_acc": acc, "ood_site_acc": acc, "ood_well_acc": acc,
                 "ood_worst_cell_type_acc": acc}
            )  # fmt: skip
    return pd.DataFrame(rows)


RUN_INFO = {
    "configuration": "quick",
    "config": {"image_size": 64, "sirnas_per_plate": 12, "experiments_per_cell_type": 4,
               "epochs": 10},
    "wall_s": 100.0, "cpu_s": 80.0, "cpus": 2, "load_average_at_end": [1.0, 2.0, 3.0],
}  # fmt: skip


def test_the_tables_split_kinds_and_mark_only_established_differences():
    tables = _tables()
    frame = _frame(
        {
            "global": [-0.3, -0.31, -0.29, -0.3],  # clearly below
            "controls": [0, 0, 0, 0],
            "controls+adabn": [0.05, -0.05, 0.04, -0.03],  # noise
            "controls+lsa": [0.2, 0.21, 0.19, 0.2],
        }
    )
    text = tables.render(frame, RUN_INFO)
    inductive, rest = text.split("#### Transductive")
    transductive, reference = rest.split("#### References")
    assert "`global`" in inductive and "`controls+adabn`" in transductive
    assert "`controls+lsa`" in reference and "`global`" not in transductive
    assert "**-0.300 [" in text  # established: bold
    assert "**+0.0" not in text.split("`controls+adabn`")[1].split("\n")[0]
    assert "above it, `controls+lsa`; below it, `global`" in text
    assert "Not established (the interval includes 0): `controls+adabn`" in text
    assert "4 runs: 2 data seeds x 2 held-out choices x 1 model seed(s)" in text
    assert "100 s of wall-clock time and 80 s of CPU time" in text


def test_the_section_is_replaced_between_its_markers_only():
    tables = _tables()
    page = f"intro\n{tables.BEGIN}\nold\n{tables.END}\noutro\n"
    assert tables.replace_section(page, "NEW") == "intro\nNEW\noutro\n"


def test_the_cost_paragraph_projects_the_per_1000_figures_to_the_full_release():
    tables = _tables()
    step = {"wall_s_per_1000": 50.0, "cpu_s_per_1000": 36.0}
    cost = {
        "sites": 200, "image_size": 512, "workers": 2, "cpus": 2,
        "png_mb_per_1000": 1000.0, "records_mb_per_1000": 800.0,
        "steps": {"convert": step, "pixel statistics": step, "one read at 64 px": step},
    }  # fmt: skip
    text = tables.render_cost(cost)
    assert "800 MB per 1,000 sites (100 GB for all 125,510)" in text
    assert "36 s of CPU per 1,000 sites (1.3 CPU hours for all 125,510)" in text


def _sweep(image_ratio: dict[tuple[str, float], float], ood: float = 0.5) -> pd.DataFrame:
    """A sweep CSV: `image`'s val / held-in ratio per point; every other method at 0.9."""
    rows = []
    for (parameter, value), ratio in image_ratio.items():
        for heldout, shift in ((0, -0.02), (1, 0.02)):  # the noise: 0.02 / 0.5 each side
            for method, kind, id_, val in (
                ("image", "inductive", 0.5, 0.5 * ratio + shift),
                ("controls", "transductive", 0.9, 0.8),
                ("controls+lsa", "reference", 0.99, 0.995),  # a reference: not judged
            ):
                rows.append(
                    {"parameter": parameter, "value": value, "method": method, "kind": kind,
                     "data_seed": 0, "heldout": heldout, "seed": 0, "id_site_acc": id_,
                     "val_site_acc": val, "ood_site_acc": ood, "ood_well_acc": ood,
                     "ood_worst_cell_type_acc": ood}
                )  # fmt: skip
    return pd.DataFrame(rows)


POINTS = {
    ("batch_biology", 0.0): 0.95,
    ("batch_biology", 0.5): 0.76,  # the all-defaults point: listed once
    ("batch_biology", 1.0): 0.70,
    ("morphology", 1.5): 0.74,
    ("morphology", 4.5): 0.50,
}
SWEEP_INFO = {
    "config": {"epochs": 10, "heldouts": 2}, "wall_s": 10.0, "cpu_s": 8.0, "cpus": 2,
    "load_average_at_end": [1.0, 2.0, 3.0],
}  # fmt: skip


def test_the_generator_defaults_are_chosen_from_id_and_val_only():
    tables = _tables()
    picked = tables.choose_defaults(_sweep(POINTS))
    assert picked["noise"] == pytest.approx(0.04)
    assert picked["batch_biology"]["chosen"] == 0.5 and picked["batch_biology"]["kept"]
    # morphology 1.5 is nearer 0.75 (0.74) than the default (0.76) by less than the noise
    assert picked["morphology"]["chosen"] == 1.5 and picked["morphology"]["kept"]
    assert picked["morphology"]["values"] == [1.5, 3.0, 4.5]
    # the held-out columns never enter the choice
    assert tables.choose_defaults(_sweep(POINTS, ood=0.99)) == picked
    far = tables.choose_defaults(_sweep({**POINTS, ("morphology", 1.5): 0.75,
                                         ("batch_biology", 0.5): 0.60}))  # fmt: skip
    assert far["morphology"]["chosen"] == 1.5 and not far["morphology"]["kept"]


def test_batch_biology_must_keep_every_methods_val_below_held_in():
    tables = _tables()
    frame = _sweep(POINTS)
    # at batch_biology=1 the controls method's val reaches its held-in accuracy
    at = (frame["parameter"] == "batch_biology") & (frame["value"] == 1.0)
    frame.loc[at & (frame["method"] == "controls"), "val_site_acc"] = 0.9
    frame.loc[at & (frame["method"] == "image"), "val_site_acc"] += 0.5 * (0.75 - 0.70)
    picked = tables.choose_defaults(frame)
    assert not picked["batch_biology"]["meets"][1.0]
    assert picked["batch_biology"]["ratio"][1.0] == pytest.approx(0.75)
    assert picked["batch_biology"]["chosen"] == 0.5  # 1.0 is nearer 0.75 but fails


def test_the_sweep_section_shows_the_choice_and_every_methods_move():
    tables = _tables()
    text = tables.render_sweep(_sweep(POINTS), SWEEP_INFO)
    assert text.startswith(tables.SWEEP_BEGIN) and text.endswith(tables.SWEEP_END)
    assert "| `batch_biology=0.5` (default) | 0.72 / 0.80 | 0.76 | yes |" in text
    assert "| `morphology=3` (default) | 0.72 / 0.80 | 0.76 | yes |" in text
    assert "`morphology`: the criterion keeps today's default 3 (nearest: 1.5, by less" in text
    assert "`batch_biology`: the criterion picks today's default 0.5" in text
    assert "| `controls` | 0.500 (0.56) |" in text
    assert "| `controls+lsa` |" in text and "5 data sets" in text


def test_the_full_run_is_projected_from_the_quick_runs_cpu_time(tmp_path, monkeypatch):
    tables = _tables()
    monkeypatch.setattr(tables, "FULL_RUN_JSON", tmp_path / "none.json")  # not yet published
    frame = _frame({"controls": [0, 0, 0, 0]})  # 4 runs
    run = {**RUN_INFO, "cpu_s": 400.0,
           "config": {**RUN_INFO["config"], "sirnas_per_plate": 12}}  # fmt: skip
    text = tables.render_full_cost(run, frame)
    # 100 s per run x (32 x 4 x 20) / (12 x 2 x 10) x 12 runs = 12,800 s
    assert "projected at 4 CPU hours" in text and "100 CPU seconds per run" in text
    assert "times 10.7 (training sites x epochs per run), times 12 runs" in text


def test_an_unfinished_run_is_not_copied_into_the_docs_unless_asked(tmp_path, monkeypatch):
    tables = _tables()
    (tmp_path / "batch_effects.csv").write_text("method\n")
    (tmp_path / "choices.csv").write_text("method\n")
    (tmp_path / "run.json").write_text('{"complete": false}')
    target = tmp_path / "docs"
    target.mkdir()
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    files = tuple((name, target / name) for name in ("batch_effects.csv", "choices.csv",
                                                     "run.json"))  # fmt: skip
    with pytest.raises(SystemExit, match=r"not complete .* pass --partial"):
        tables.copy_results(tmp_path, files, partial=False)
    assert not list(target.iterdir())
    tables.copy_results(tmp_path, files, partial=True)
    assert (target / "run.json").read_text() == '{"complete": false}'
    with pytest.raises(SystemExit, match=r"lacks \['sweep.csv'\]"):
        tables.copy_results(tmp_path, (("sweep.csv", target / "s.csv"),), partial=True)


def _default_run(folder: Path, units: list[tuple[int, int, int]], complete: bool = False) -> None:
    """A default (`full`) run's folder in today's format: ``units`` finished, one session."""
    bench = _tables().bench
    rows, choices = [], []
    for d, h, s in units:
        key = {"data_seed": d, "heldout": h, "seed": s}
        for m in bench.METHODS:
            scores = dict.fromkeys(bench.COLUMNS[5:], 0.5)
            rows.append({"method": m, "kind": bench.kind(m), **key, **scores})
        for m, c in sorted(bench.RUN_CHOICES):
            choices.append({"method": m, **key, "choice": c, "value": "1", "val_site_acc": 0.5})
    folder.mkdir()
    (folder / bench.MARKER).touch()
    pd.DataFrame(rows, columns=list(bench.COLUMNS)).to_csv(
        folder / "batch_effects.csv", index=False
    )
    pd.DataFrame(choices, columns=list(bench.CHOICES)).to_csv(folder / "choices.csv", index=False)
    timed = {"session": 0, "wall_s": 1000.0, "cpu_s": 1800.0}
    session = {"started": "2026-12-06T06:00:00Z", "commit": "0123456789", "units": len(units),
               "wall_s": 1000.0 * len(units), "cpu_s": 1800.0 * len(units), "cpus": 2,
               "load_average_at_end": [1, 1, 1]}  # fmt: skip
    state = bench.Progress(
        units=[{"data_seed": d, "heldout": h, "seed": s, **timed} for d, h, s in units],
        sessions=[session],
    )
    what = bench.recorded("full", bench.FULL, None, None)
    info = bench.run_info(what, state, bench.planned_units(bench.FULL), complete)
    (folder / "run.json").write_text(json.dumps(info))


def test_status_says_how_far_a_default_run_is_without_publishing_it(tmp_path):
    tables = _tables()
    out = tmp_path / "full"
    _default_run(out, [(0, 0, 0), (0, 0, 1)])
    line = tables.status(out)
    assert "the `full` run, 2 of 12 runs done, in 1 session(s): 2000 s wall-clock, 3600 s CPU" in (
        line
    )
    assert "1800 CPU s per run (2 run(s) timed), about 5.0 CPU hours left" in line
    assert "not complete" in line and "not published" in line
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"holds no run\.json"):
        tables.status(tmp_path / "empty")


def test_the_default_runs_progress_is_recorded_without_its_rows(tmp_path, monkeypatch):
    tables = _tables()
    out = tmp_path / "full"
    _default_run(out, [(0, 0, 0)])
    monkeypatch.setattr(tables, "FULL_RUN_JSON", tmp_path / "none.json")  # not yet published
    monkeypatch.setattr(tables, "PROGRESS_JSON", tmp_path / "docs" / "progress.json")
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    tables.copy_progress(out)
    recorded = json.loads(tables.PROGRESS_JSON.read_text())
    assert recorded["units_done"] == 1 and recorded["units_planned"] == 12
    assert "rows" not in recorded and sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "progress.json"
    ]
    text = tables.render_full_cost(RUN_INFO, _frame({"controls": [0, 0, 0, 0]}), recorded)
    assert "1 of 12 runs done, in 1 session(s)" in text and "(commits 0123456)" in text
    assert "about 5.5 CPU hours left" in text
    assert "the `--quick` run's stand below" in text
    quick = tmp_path / "quick"
    quick.mkdir()
    config = tables.dataclasses.asdict(tables.bench.QUICK)
    (quick / "run.json").write_text(json.dumps({**RUN_INFO, "config": config, "data": None}))
    (quick / "batch_effects.csv").write_text(",".join(_tables().bench.COLUMNS) + "\n")
    with pytest.raises(SystemExit, match="is a `quick` run; --progress records the default"):
        tables.copy_progress(quick)


def test_a_default_run_is_published_in_its_own_section_only_when_complete(tmp_path, monkeypatch):
    tables = _tables()
    out = tmp_path / "full"
    _default_run(out, [(0, 0, 0), (0, 0, 1)])
    with pytest.raises(SystemExit, match="unfinished default run: its tables are published once"):
        tables.run_files(out, partial=True)
    files, _ = tables.run_files(out, partial=False)
    assert files == tables.FROM_FULL_RUN  # copy_results then refuses it: not complete
    assert tables.run_files(tmp_path / "quick", partial=True) == (tables.FROM_RUN, True)
    info = json.loads((out / "run.json").read_text())
    info["sessions"] *= 2  # two sessions made it
    frame = _frame({"controls": [0, 0, 0, 0], "global": [-0.3, -0.31, -0.29, -0.3]})
    frame.to_csv(tmp_path / "full.csv", index=False)
    (tmp_path / "full.json").write_text(json.dumps(info))
    monkeypatch.setattr(tables, "FULL_CSV", tmp_path / "full.csv")
    monkeypatch.setattr(tables, "FULL_RUN_JSON", tmp_path / "full.json")
    text = tables.render_full_cost(RUN_INFO, frame)
    assert text.startswith(tables.FULL_BEGIN) and text.endswith(tables.FULL_END)
    assert "The default configuration: 64 px, 32 siRNAs per plate group (128 classes)" in text
    assert "s of CPU time in 2 sessions (times summed) on a 2-core machine" in text
    assert "| `global` | 4 |" in text and "projected" not in text


def test_status_of_a_run_that_has_finished_nothing_yet(tmp_path):
    tables = _tables()
    (tmp_path / tables.bench.MARKER).touch()  # a run's folder before its first run.json
    assert tables.status(tmp_path).endswith("no finished run yet (no run.json)")
