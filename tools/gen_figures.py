"""Regenerate the documentation's pictures from the library itself.

Run from the repository root::

    .venv/bin/python tools/gen_figures.py [--real-root ../shared/rxrx1-real] [--out docs/img]

Each picture is computed by rxdata's own functions, not drawn by hand:

* ``plate-map.png``: the four plates of one training experiment from the real metadata
  (``rxdata.read_metadata``), coloured by well type and, for treatment wells, by the siRNA
  group that ``rxdata.plate_groups`` derives.
* ``plate-groups.png``: which of the four siRNA groups each plate of every training
  experiment holds (``PlateGroups.plate_table``).
* ``split-counts.png``: sites per fold and cell type of ``rxdata.experiment_folds`` with
  k=6 on the 33 training experiments (``Split.counts``).
* ``throughput-*.png``: one bar chart per benchmark result file (``bench-output/*.json``,
  written by ``make bench``), when present: sites/s against the rxrx1-utils-style
  baseline, or milliseconds per call and the speed-up against the reference.

Pictures that need the real metadata are skipped, with a message, when it is absent. The
picture of a real site (``real-site.png``) is made by ``rxdata show`` (see images.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

import rxdata
from rxdata.naming import COLUMNS, ROWS

ROOT = Path(__file__).resolve().parents[1]
# PNG metadata without the matplotlib version, so regenerating gives identical files.
SAVE: dict[str, Any] = {"dpi": 110, "bbox_inches": "tight", "metadata": {"Software": None}}
GROUP_COLOURS = ["#8dd3c7", "#fdb462", "#bebada", "#80b1d3"]  # one per siRNA group
POSITIVE, NEGATIVE, MISSING, UNUSED = "#e31a1c", "#000000", "#ffffff", "#d9d9d9"


def _wells(metadata: pd.DataFrame) -> pd.DataFrame:
    """One row per well (the site table has two)."""
    return metadata.drop_duplicates("id_code").reset_index(drop=True)


def plate_map(metadata: pd.DataFrame, experiment: str, out: Path) -> Path:
    """Draw the 4 plates of ``experiment``: well types and the siRNA group of each plate."""
    groups = rxdata.plate_groups(metadata)
    wells = _wells(metadata[metadata["experiment"] == experiment])
    all_rows = [chr(c) for c in range(ord("A"), ord("P") + 1)]  # a 384-well plate: A-P x 1-24
    # Codes: 0-3 siRNA group, 4 positive control, 5 negative control, 6 no data, 7 unused.
    cmap = ListedColormap([*GROUP_COLOURS, POSITIVE, NEGATIVE, MISSING, UNUSED])
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, plate in zip(axes, sorted(wells["plate"].unique()), strict=True):
        grid = np.full((16, 24), 7)
        for r in ROWS:
            for c in COLUMNS:
                grid[all_rows.index(r), c - 1] = 6
        group = groups.plate_group(experiment, int(plate))
        for row in wells[wells["plate"] == plate].itertuples():
            code = {"positive_control": 4, "negative_control": 5}.get(str(row.well_type))
            if code is None:
                code = groups.group_of(int(row.sirna_id)) if pd.notna(row.sirna_id) else 6
            grid[all_rows.index(str(row.row)), int(row.column) - 1] = code
        ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=7.5)
        ax.set_xticks(range(0, 24, 2), [str(c) for c in range(1, 25, 2)], fontsize=7)
        ax.set_yticks(range(16), all_rows, fontsize=7)
        ax.set_xticks(np.arange(-0.5, 24), minor=True)
        ax.set_yticks(np.arange(-0.5, 16), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
        ax.set_title(f"Plate {plate}: siRNA group {group}", fontsize=10)
    legend = [Patch(color=c, label=f"treatment, group {g}") for g, c in enumerate(GROUP_COLOURS)]
    legend += [
        Patch(color=POSITIVE, label="positive control (1108-1137)"),
        Patch(color=NEGATIVE, label="negative control (1138)"),
        Patch(facecolor=MISSING, edgecolor="grey", label="no data (failed QC)"),
        Patch(color=UNUSED, label="unused outer wells"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"{experiment}: well types and siRNA groups (real metadata)", fontsize=12)
    fig.subplots_adjust(bottom=0.22, wspace=0.08)
    path = out / "plate-map.png"
    fig.savefig(path, **SAVE)
    plt.close(fig)
    return path


def plate_group_grid(metadata: pd.DataFrame, out: Path) -> Path:
    """Draw the group of every labeled plate: experiments across, plates down."""
    table = rxdata.plate_groups(metadata).plate_table()
    grid = table.pivot(index="plate", columns="experiment", values="group")
    fig, ax = plt.subplots(figsize=(14, 2.4))
    ax.imshow(grid.to_numpy(dtype=float), cmap=ListedColormap(GROUP_COLOURS), vmin=-0.5, vmax=3.5)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(grid.shape[1]), list(grid.columns), rotation=90, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [f"Plate {p}" for p in grid.index], fontsize=8)
    ax.set_title(
        "siRNA group held by each plate of the 33 training experiments "
        "(rxdata.plate_groups: 4 groups of 277)",
        fontsize=10,
    )
    path = out / "plate-groups.png"
    fig.savefig(path, **SAVE)
    plt.close(fig)
    return path


def split_counts(metadata: pd.DataFrame, out: Path, k: int = 6, seed: int = 0) -> Path:
    """Draw sites per fold and cell type of ``experiment_folds(k, seed)``, with experiments."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "U2OS is not in every fold": shown
        split = rxdata.experiment_folds(metadata, k, seed=seed)
    counts = split.counts(metadata).reset_index()
    counts = counts[counts["cell_type"] != "all"]
    sites = counts.pivot(index="part", columns="cell_type", values="sites").fillna(0)
    exps = counts.pivot(index="part", columns="cell_type", values="experiments").fillna(0)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.imshow(sites.to_numpy(dtype=float), cmap="Blues", vmin=0, aspect="auto")
    for (i, j), value in np.ndenumerate(sites.to_numpy()):
        n = int(exps.to_numpy()[i, j])
        label = f"{int(value):,} sites\n{n} exp." if n else "none"
        colour = "white" if value > sites.to_numpy().max() * 0.6 else "black"
        ax.text(j, i, label, ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(sites.shape[1]), list(sites.columns))
    ax.set_yticks(range(sites.shape[0]), list(sites.index))
    ax.set_title(f"experiment_folds(metadata, k={k}, seed={seed}): training sites", fontsize=10)
    path = out / "split-counts.png"
    fig.savefig(path, **SAVE)
    plt.close(fig)
    return path


def throughput_charts(bench_dir: Path, out: Path) -> list[Path]:
    """One horizontal bar chart per benchmark JSON file.

    A file holds ``{"title": str, "unit": str, "results": [{"name": str, "value": float,
    "baseline": bool, "set": str (optional)}]}``. Results with a ``set`` (e.g. synthetic and
    real images) get one panel per set, each compared with the baseline of its own set;
    bars are labelled with the value and the ratio to that baseline.
    """
    paths = []
    for source in sorted(bench_dir.glob("*.json")):
        data = json.loads(source.read_text(encoding="utf-8"))
        results = data.get("results") or []
        if not results:
            path = _timing_chart(data, source.stem, out)
            paths += [path] if path else []
            continue
        sets: dict[str, list[dict[str, Any]]] = {}
        for result in results:
            sets.setdefault(str(result.get("set", "")), []).append(result)
        heights = [0.42 * len(rows) + 0.9 for rows in sets.values()]
        fig, axes = plt.subplots(
            len(sets), 1, figsize=(8.5, sum(heights) + 0.6), height_ratios=heights, squeeze=False
        )
        for ax, (set_name, rows) in zip(axes[:, 0], sets.items(), strict=True):
            prefix = f"{set_name}: " if set_name else ""
            names = [str(r["name"]).removeprefix(prefix) for r in rows]
            values = np.array([float(r["value"]) for r in rows])
            base = next((float(r["value"]) for r in rows if r.get("baseline")), None)
            colours = ["#bdbdbd" if r.get("baseline") else "#3182bd" for r in rows]
            ax.barh(range(len(values)), values, color=colours)
            for i, value in enumerate(values):
                ratio = f"  ({value / base:.1f}x baseline)" if base else ""
                ax.text(value, i, f" {value:,.0f}{ratio}", va="center", fontsize=8)
            ax.set_yticks(range(len(names)), names, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, values.max() * 1.45)
            if set_name:
                ax.set_title(set_name, fontsize=9, loc="left")
        axes[-1, 0].set_xlabel(data.get("unit", ""))
        fig.suptitle(data.get("title", source.stem), fontsize=11)
        fig.tight_layout()
        path = out / f"throughput-{source.stem}.png"
        fig.savefig(path, **SAVE)
        plt.close(fig)
        paths.append(path)
    return paths


def _timing_chart(data: dict[str, Any], stem: str, out: Path) -> Path | None:
    """Chart a ``{"<what>_ms": {name: milliseconds}}`` benchmark file (lower is better).

    Each section gets a panel; its baseline is the entry named after rxrx1-utils, a
    reference or a baseline (else the first), and bars show the speed-up against it.
    """
    sections = {
        key: {str(n): float(v) for n, v in value.items() if isinstance(v, int | float)}
        for key, value in data.items()
        if key.endswith("_ms") and isinstance(value, dict) and value
    }
    if not sections:
        return None
    heights = [0.42 * len(rows) + 0.9 for rows in sections.values()]
    fig, axes = plt.subplots(
        len(sections), 1, figsize=(8.5, sum(heights) + 0.6), height_ratios=heights, squeeze=False
    )
    for ax, (key, rows) in zip(axes[:, 0], sections.items(), strict=True):
        names = list(rows)
        values = np.array(list(rows.values()))
        marks = ("rxrx1-utils", "reference", "baseline")
        base_name = next((n for n in names if any(m in n for m in marks)), names[0])
        base = rows[base_name]
        colours = ["#bdbdbd" if n == base_name else "#3182bd" for n in names]
        ax.barh(range(len(values)), values, color=colours)
        for i, value in enumerate(values):
            ratio = base / value if value > 0 else float("inf")
            speed = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
            speed = f"  ({speed})" if names[i] != base_name else ""
            ax.text(value, i, f" {value:,.2f} ms{speed}", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, values.max() * 1.5)
        title = key.removesuffix("_ms").replace("_", " ")
        ax.set_title(f"{title}: milliseconds per call (lower is better)", fontsize=9, loc="left")
    fig.suptitle(f"{stem} benchmark", fontsize=11)
    fig.tight_layout()
    path = out / f"throughput-{stem}.png"
    fig.savefig(path, **SAVE)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Regenerate every picture that the available inputs allow."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-root", type=Path, default=ROOT.parent / "shared" / "rxrx1-real")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / "bench-output")
    parser.add_argument("--experiment", default="HEPG2-01", help="experiment of the plate map")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    metadata_dir = args.real_root / "metadata"
    if metadata_dir.is_dir():
        metadata = rxdata.read_metadata(metadata_dir)
        made.append(plate_map(metadata, args.experiment, args.out))
        made.append(plate_group_grid(metadata, args.out))
        made.append(split_counts(metadata, args.out))
    else:
        print(f"skipped plate and split pictures: no real metadata in {metadata_dir}")
    if args.bench_dir.is_dir():
        made += throughput_charts(args.bench_dir, args.out)
    else:
        print(f"skipped throughput charts: no benchmark results in {args.bench_dir}")
    for path in made:
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
