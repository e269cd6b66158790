"""docs/batch-effects.md's figures are those its CSV gives (tools/batch_effects_tables.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

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
