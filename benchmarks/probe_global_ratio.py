#!/usr/bin/env python
"""Single-seed probe: the ``global`` model's OOD/ID ratio with one generator option changed.

Generates the ``--quick`` data set of ``bench_batch_effects.py`` with the given
:class:`rxdata.synthetic.SyntheticOptions` overrides, trains the benchmark's models for
the given normalization modes (default: ``global``) with one model seed, and prints
their held-in and held-out site accuracy and ratio. The calibration probes in
docs/batch-effects.md were made with it.

Usage: ``python benchmarks/probe_global_ratio.py OUT '{"batch_biology": 1.0}' [--seed N]
[--modes global,controls]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_batch_effects as bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="output folder")
    p.add_argument("overrides", help="SyntheticOptions overrides as a JSON object")
    p.add_argument("--seed", type=int, default=0, help="model seed")
    p.add_argument("--modes", default="global", help="comma-separated normalization modes")
    args = p.parse_args(argv)
    import rxdata.synthetic as synthetic

    overrides = json.loads(args.overrides)
    synthetic.SyntheticOptions(**overrides)  # validate before the long work
    original = synthetic.SyntheticOptions
    synthetic.SyntheticOptions = functools.partial(original, **overrides)  # type: ignore[misc]
    try:
        data = bench.make_data(bench.QUICK, Path(args.out))
    finally:
        synthetic.SyntheticOptions = original  # type: ignore[misc]
    for mode in args.modes.split(","):
        model = bench.train(data, mode, bench.QUICK, args.seed, None)
        preds = {p: bench.predict_part(model, data, p, mode, bench.QUICK) for p in ("id", "ood")}
        s = bench.scores(data, preds["id"], preds["ood"])
        print(
            f"{overrides} {mode} seed {args.seed}: held-in {s['id_site_acc']:.3f} "
            f"held-out {s['ood_site_acc']:.3f} OOD/ID {s['ood_site_acc'] / s['id_site_acc']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
