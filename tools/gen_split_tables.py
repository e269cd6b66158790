"""Regenerate the count tables of docs/splits.md from the real Kaggle metadata.

Every table in ``docs/splits.md`` between ``<!-- begin: NAME -->`` and ``<!-- end: NAME -->``
is the output of :func:`tables`, computed by rxdata's own functions (``experiment_folds``,
``holdout_experiments``, ``wilds_split``, ``plate_groups``). ``tests/test_splits.py``
recomputes them when the real files are present and fails when the page is stale.

Usage::

    .venv/bin/python tools/gen_split_tables.py [METADATA_DIR]         # print the tables
    .venv/bin/python tools/gen_split_tables.py [METADATA_DIR] --write  # update splits.md
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import rxdata  # noqa: E402  (after the path set-up so a source checkout works too)

PAGE = ROOT / "docs" / "splits.md"
DEFAULT_METADATA = ROOT.parent / "shared" / "rxrx1-real" / "metadata"
CELLS = ["HEPG2", "HUVEC", "RPE", "U2OS"]


def _markdown(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _per_cell(counts: pd.DataFrame, parts: Sequence[str], cell_value: str) -> str:
    rows = []
    for part in parts:
        sub = counts.xs(part, level="part")
        row: list[object] = [f"`{part}`"]
        for cell in [*CELLS, "all"]:
            if cell in sub.index:
                exps, sites = sub.loc[cell, "experiments"], sub.loc[cell, cell_value]
                row.append(f"{exps} ({sites:,})")
            else:
                row.append("-")
        rows.append(row)
    return _markdown(["part", *CELLS, "all"], rows)


def tables(metadata: pd.DataFrame) -> dict[str, str]:
    """The named markdown tables of docs/splits.md for this metadata table."""
    out: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "U2OS ... missing from some folds"
        folds = rxdata.experiment_folds(metadata, 6, seed=0)
    out["folds"] = _per_cell(folds.counts(metadata), folds.names, "sites")

    holdout = rxdata.holdout_experiments(metadata, per_cell_type=1, seed=0)
    held = ", ".join(sorted(k[0] for k in holdout.keys("val")))
    out["holdout"] = (
        _per_cell(holdout.counts(metadata), holdout.names, "sites")
        + f"\n\nHeld out (`val`): {held}."
    )

    wilds = rxdata.wilds_split(metadata)
    counts = wilds.counts(metadata)
    rows = []
    for part in wilds.names:
        sub = counts.xs(part, level="part")
        rows.append(
            [
                f"`{part}`",
                *(f"{sub.loc[c, 'sites']:,}" for c in CELLS),
                f"{sub.loc['all', 'experiments']}",
                f"{sub.loc['all', 'sites']:,}",
                f"{sub.loc['all', 'labeled_sites']:,}",
            ]
        )
    out["wilds"] = _markdown(
        ["part", *CELLS, "experiments", "sites", "labeled (Kaggle CSVs)"], rows
    )

    groups = rxdata.plate_groups(metadata)
    table = groups.plate_table()
    patterns = (
        table.sort_values(["experiment", "plate"])
        .groupby("experiment")["group"]
        .apply(lambda g: ", ".join(str(x) for x in g))
    )
    rows = [
        [f"{pattern}", str(len(exps)), ", ".join(sorted(exps.index))]
        for pattern, exps in sorted(
            patterns.groupby(patterns), key=lambda item: (-len(item[1]), item[0])
        )
    ]
    sizes = ", ".join(str(s) for s in groups.sizes)
    out["groups"] = (
        f"Group sizes: {sizes} (siRNAs 0..1107, each in one group); "
        f"{len(groups.plates)} labeled plates.\n\n"
        + _markdown(["groups of plates 1, 2, 3, 4", "experiments", "which"], rows)
    )
    return out


def render(page: str, generated: dict[str, str]) -> str:
    """``page`` with each ``begin/end`` block replaced by its generated table."""
    for name, text in generated.items():
        pattern = re.compile(
            rf"(<!-- begin: {name} -->\n).*?(\n<!-- end: {name} -->)", flags=re.DOTALL
        )
        found = pattern.search(page)
        if found is None:
            raise SystemExit(f"{PAGE}: no <!-- begin: {name} --> ... <!-- end: {name} --> block")
        page = page[: found.end(1)] + text + page[found.start(2) :]
    return page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metadata", nargs="?", default=str(DEFAULT_METADATA))
    parser.add_argument("--write", action="store_true", help="update docs/splits.md in place")
    args = parser.parse_args(argv)
    generated = tables(rxdata.read_metadata(args.metadata))
    if args.write:
        PAGE.write_text(render(PAGE.read_text(encoding="utf-8"), generated), encoding="utf-8")
        print(f"updated {PAGE}")
    else:
        for name, text in generated.items():
            print(f"<!-- {name} -->\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
