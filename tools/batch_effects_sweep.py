#!/usr/bin/env python
"""Sensitivity sweep: every benchmark method with the unmeasured generator settings moved.

``batch_biology`` and ``morphology`` are the two settings of
:class:`rxdata.synthetic.SyntheticOptions` that no real image measures
(docs/batch-effects-calibration.md). This runs every method of
``benchmarks/bench_batch_effects.py`` (its :func:`run_seed`, unchanged) on data sets
generated with one of them moved at a time, the other at its default, at the ``--quick``
configuration (optionally with fewer epochs), data seed 0, both held-out choices, model
seed 0. It writes ``OUT/sweep.csv``: the benchmark's columns (``method, kind, data_seed,
heldout, seed, id_site_acc, val_site_acc, ood_site_acc, ...``) with ``parameter`` and
``value`` in front, after every point, and ``OUT/sweep.json`` (configuration, values,
wall-clock and CPU time, load average). A point already in ``OUT/sweep.csv`` is kept and
not run again, so a stopped sweep resumes where it was.

``tools/batch_effects_tables.py`` makes docs/batch-effects.md's sweep table from the CSV
(copied to docs/batch-effects-sweep.csv) and applies the criterion the page states for
choosing the generator's defaults: it reads the ``id`` and ``val`` columns only.

Usage: ``python tools/batch_effects_sweep.py OUT [--epochs N] [--heldouts 1]
[--batch-biology 0,0.5,1] [--morphology 1.5,3,4.5]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

# the benchmark is a script in benchmarks/, not a package: its folder goes on the path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_batch_effects as bench

#: The generator settings swept, and their values by default (today's default included).
PARAMETERS = {"batch_biology": (0.0, 0.5, 1.0), "morphology": (1.5, 3.0, 4.5)}
COLUMNS = ("parameter", "value", *bench.COLUMNS)
CSV, JSON = "sweep.csv", "sweep.json"


def points(values: dict[str, tuple[float, ...]]) -> list[tuple[str, float, dict[str, float]]]:
    """``(parameter, value, SyntheticOptions overrides)`` of each point, defaults once.

    The point with every setting at its default is listed once, under the first
    parameter, and stands for that value of every parameter (the tables reuse it).

    Example:
        >>> [(p, v) for p, v, _ in points({"batch_biology": (0.0, 0.5), "morphology": (3.0,)})]
        [('batch_biology', 0.0), ('batch_biology', 0.5)]
    """
    from rxdata.synthetic import SyntheticOptions

    defaults = SyntheticOptions()
    out, seen_default = [], False
    for parameter, vals in values.items():
        for value in vals:
            is_default = value == getattr(defaults, parameter)
            if is_default and seen_default:
                continue
            seen_default = seen_default or is_default
            out.append((parameter, value, {parameter: value}))
    return out


def _values(text: str, name: str, p: argparse.ArgumentParser) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        p.error(f"--{name.replace('_', '-')}: expected comma-separated numbers, got {text!r}")
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        p.error(f"--{name.replace('_', '-')}: expected distinct numbers >= 0, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("out", help="output folder (empty, or a sweep's folder to resume it)")
    p.add_argument("--epochs", type=bench._positive, help="at most N epochs (default: --quick's)")
    p.add_argument("--heldouts", type=int, choices=(1, 2), default=2, help="held-out choices")
    for name, default in PARAMETERS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            default=",".join(f"{v:g}" for v in default),
            help=f"values of {name} (default: %(default)s)",
        )
    args = p.parse_args(argv)
    values = {name: _values(getattr(args, name), name, p) for name in PARAMETERS}
    cfg = dataclasses.replace(
        bench.QUICK, epochs=args.epochs or bench.QUICK.epochs, heldouts=args.heldouts
    )
    out = Path(args.out)
    with bench.claim(out):
        done = pd.read_csv(out / CSV) if (out / CSV).is_file() else None
        if done is not None and list(done.columns) != list(COLUMNS):
            raise SystemExit(f"error: {out / CSV} is not a sweep's CSV; choose another OUT")
        info = {"config": dataclasses.asdict(cfg), "values": values}
        if (out / JSON).is_file() and done is not None:
            before = json.loads((out / JSON).read_text())
            if before.get("config") != json.loads(json.dumps(info["config"])):
                raise SystemExit(
                    f"error: {out} holds a sweep of another configuration "
                    f"({before.get('config')}); choose another OUT"
                )
        rows: list[dict[str, Any]] = [] if done is None else done.to_dict("records")
        spent = json.loads((out / JSON).read_text()) if (out / JSON).is_file() else {}
        start, cpu0 = time.perf_counter(), bench.cpu_seconds()
        wall0, cpu_before = spent.get("wall_s", 0.0), spent.get("cpu_s", 0.0)
        for parameter, value, overrides in points(values):
            if any(r["parameter"] == parameter and r["value"] == value for r in rows):
                bench.log(f"{parameter}={value:g}: in {out / CSV}, kept")
                continue
            for path in out.glob("data-*"):  # a stopped point's data
                shutil.rmtree(path)
            for path in out.glob("records-*"):
                shutil.rmtree(path)
            bench.log(f"{parameter}={value:g}")
            data = bench.synthetic_data(cfg, out, 0, **overrides)
            for heldout in range(cfg.heldouts):
                split = bench.heldout_split(data.metadata, cfg.experiments_per_cell_type, heldout)
                result, _ = bench.run_seed(bench.make_run(data, cfg, heldout, split), 0)
                rows += [{"parameter": parameter, "value": value, **r} for r in result]
            shutil.rmtree(out / "records-0", ignore_errors=True)
            pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(
                out / CSV, index=False, float_format="%.4f"
            )
            info.update(
                wall_s=round(wall0 + time.perf_counter() - start, 1),
                cpu_s=round(cpu_before + bench.cpu_seconds() - cpu0, 1),
                cpus=os.cpu_count(),
                load_average_at_end=list(os.getloadavg()),
            )
            (out / JSON).write_text(json.dumps(info, indent=2) + "\n")
        bench.log(f"wrote {out / CSV}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
