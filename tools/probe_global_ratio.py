#!/usr/bin/env python
"""Calibration probe: held-in and held-out accuracy with generator options changed.

Generates the ``--quick`` data set of ``benchmarks/bench_batch_effects.py`` (with
``--full``, the default configuration's; data seed 0, held-out choice 0) with the given
:class:`rxdata.synthetic.SyntheticOptions` overrides (and, with ``--positive-controls``,
another number of positive-control wells per plate), trains the benchmark's models for
the given normalization modes (default: ``global``) with each given model seed, and
prints their held-in, validation and held-out site accuracy and ratio. The mode ``tvn``
trains the ``controls`` model and prints the benchmark's embedding rows
(``controls+embedding_head``, ``controls+tvn`` and ``controls+tvn_all``); ``tvn:global``
does the same with the ``global`` model (any normalization after the colon). The
calibration probes in docs/batch-effects-calibration.md were made with its earlier
version (one held-out experiment per cell type, no validation split). It holds the same
lock on ``OUT`` as the benchmark (the conversion's lock).

Usage: ``python tools/probe_global_ratio.py OUT '{"morphology": 2.0}' [--seeds 0,1,2]
[--modes global,image,tvn] [--positive-controls 4] [--full]
[--config '{"experiments_per_cell_type": 10}']``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

# the benchmark is a script in benchmarks/, not a package: its folder goes on the path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_batch_effects as bench


def _line(label: str, s: dict[str, float]) -> str:
    return (
        f"{label}: held-in {s['id_site_acc']:.3f} held-out {s['ood_site_acc']:.3f} "
        f"OOD/ID {s['ood_site_acc'] / max(s['id_site_acc'], 1e-9):.2f}"
    )


def _json_object(p: argparse.ArgumentParser, what: str, text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        p.error(f"{what}: not JSON ({err}): {text}")
    if not isinstance(value, dict):
        p.error(f"{what}: expected a JSON object such as '{{\"morphology\": 2.0}}': {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="output folder")
    p.add_argument("overrides", help="SyntheticOptions overrides as a JSON object")
    p.add_argument("--seeds", default="0", help="comma-separated model seeds")
    p.add_argument("--modes", default="global", help="comma-separated modes (or 'tvn')")
    p.add_argument(
        "--positive-controls",
        type=int,
        default=bench.QUICK.positive_controls,
        help="positive-control wells per plate",
    )
    p.add_argument("--full", action="store_true", help="the default (larger) configuration")
    p.add_argument("--config", default="{}", help="Config overrides as a JSON object")
    args = p.parse_args(argv)
    import rxdata.synthetic as synthetic

    # every argument is checked before the data set is built (minutes of work)
    normalizations = list(bench.NORMALIZATIONS)
    runs = []  # (mode as given, the model's normalization, embedding rows or not)
    for mode in args.modes.split(","):
        trained = mode.split(":", 1)[1] if mode.startswith("tvn:") else mode
        trained = "controls" if mode == "tvn" else trained
        if trained not in normalizations:
            p.error(f"--modes: unknown mode {mode!r}; use {normalizations}, 'tvn' or 'tvn:MODE'")
        runs.append((mode, trained, mode.startswith("tvn")))
    if not all(s.strip().isdigit() for s in args.seeds.split(",")):
        p.error(f"--seeds: expected comma-separated whole numbers, got {args.seeds!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = _json_object(p, "overrides", args.overrides)
    config = _json_object(p, "--config", args.config)
    try:
        synthetic.SyntheticOptions(**overrides)
        cfg = dataclasses.replace(
            bench.FULL if args.full else bench.QUICK,
            **{"positive_controls": args.positive_controls, **config},
        )
    except (TypeError, ValueError) as err:
        p.error(str(err))
    if cfg.experiments_per_cell_type < 3 or not all(
        isinstance(v, int) and v > 0 for v in dataclasses.astuple(cfg) if v is not None
    ):
        p.error(
            f"--config: every value must be a positive integer, and at least 3 "
            f"experiments per cell type (train, val, test): {cfg}"
        )
    out = Path(args.out)
    with bench.claim(out):
        bench.fresh_output(out)
        data = bench.synthetic_data(cfg, out, 0, **overrides)
        split = bench.heldout_split(data.metadata, cfg.experiments_per_cell_type, 0)
        run = bench.make_run(data, cfg, 0, split)
        label = (
            f"{'full' if args.full else 'quick'} {config} {overrides} "
            f"positive_controls={cfg.positive_controls}"
        )
        _probe(run, runs, seeds, label)
    return 0


def _probe(run: bench.Run, runs: list[tuple[str, str, bool]], seeds: list[int], label: str) -> None:
    parts = bench.eval_parts(run)
    for mode, trained, embedding_rows in runs:
        for seed in seeds:
            model, epoch, _ = bench.train(run, trained, seed, None)
            if embedding_rows:
                rows, _ = bench.embedding_rows(model, run, trained)
                for name, preds in rows.items():
                    s = bench.scores(run, preds)
                    method = name.replace("controls", trained, 1)
                    print(_line(f"{label} {method} seed {seed}", s), flush=True)
                continue
            preds = {p: bench.predict_part(model, run, p, mode) for p in parts}
            s = bench.scores(run, preds)
            print(_line(f"{label} {mode} seed {seed} (epoch {epoch})", s), flush=True)


if __name__ == "__main__":
    sys.exit(main())
