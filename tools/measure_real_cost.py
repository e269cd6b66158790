#!/usr/bin/env python
"""What ``bench_batch_effects.py --data`` costs per 1,000 real-sized sites.

Generates 200 full-release-layout sites at 512 x 512 px (the real image size; one
experiment, 4 plates of 25 wells, 2 sites), then measures what a ``--data`` run does
before training: the conversion to TFRecords (PNG bytes kept), the pixel statistics,
and one read of every site through ``make_dataset`` resized to 64 px. Prints wall-clock
and CPU seconds (this process and its workers) and the disk the records take, per 1,000
sites (scaled from the 200) and projected to RxRx1's 125,510. The generation is not
measured.

Usage: ``python tools/measure_real_cost.py OUT [--workers 2] [--docs]``; writes
``OUT/cost.json`` and, with ``--docs``, docs/batch-effects-cost.json too, from which
``tools/batch_effects_tables.py`` writes the page's cost paragraph.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SITES = 1000
DOCS_JSON = Path(__file__).resolve().parent.parent / "docs" / "batch-effects-cost.json"
FULL_RELEASE = 125_510


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("out", help="an empty or missing folder for the data and records")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--docs", action="store_true", help=f"also write {DOCS_JSON.name} in docs/")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        p.error(f"{out} is not empty")
    from rxdata import (
        ConvertOptions,
        Normalizer,
        PipelineOptions,
        compute_pixel_stats,
        convert,
        make_dataset,
        read_metadata,
    )
    from rxdata.synthetic import SyntheticOptions, generate

    root = out / "rxrx1"
    options = SyntheticOptions(
        experiments=(("HEPG2", 1, 0),),
        sirnas_per_plate=24,  # + 1 negative control = 25 wells x 4 plates x 2 sites
        positive_controls=0,
        image_size=512,
        layout="full",
        workers=args.workers,
        progress=False,
    )
    generate(root, options)
    metadata = read_metadata(root)
    n = len(metadata)
    png_bytes = sum(f.stat().st_size for f in root.rglob("*.png"))
    results = {}
    t, c = time.perf_counter(), _cpu()
    convert(
        root,
        out / "records",
        metadata=metadata,
        options=ConvertOptions(strategy="by_experiment", workers=args.workers, progress=False),
    )
    results["convert"] = (time.perf_counter() - t, _cpu() - c)
    escaped = glob.escape(str(out / "records"))  # OUT may hold "[", "*" or "?"
    written = glob.glob(f"{escaped}/**/*", recursive=True)
    record_bytes = sum(os.path.getsize(f) for f in written if os.path.isfile(f))
    t, c = time.perf_counter(), _cpu()
    stats = compute_pixel_stats(root, metadata, workers=args.workers, progress=False)
    results["pixel statistics"] = (time.perf_counter() - t, _cpu() - c)
    files = sorted(glob.glob(f"{escaped}/**/*.tfrecord", recursive=True))
    ds = make_dataset(
        files,
        batch_size=32,
        training=False,
        options=PipelineOptions(resize_to=64),
        normalizer=Normalizer.from_pixel_stats(stats, metadata, mode="controls"),
        label=None,
    )
    t, c = time.perf_counter(), _cpu()
    read = sum(int(x.shape[0]) for x, _ in ds)
    results["one read at 64 px"] = (time.perf_counter() - t, _cpu() - c)
    scale = SITES / n
    cost = {
        "sites": n,
        "image_size": 512,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "png_mb_per_1000": round(png_bytes / 1e6 * scale, 1),
        "records_mb_per_1000": round(record_bytes / 1e6 * scale, 1),
        "steps": {k: {"wall_s_per_1000": round(w * scale, 1), "cpu_s_per_1000": round(c * scale, 1)}
                  for k, (w, c) in results.items()},
    }  # fmt: skip
    text = json.dumps(cost, indent=2) + "\n"
    (out / "cost.json").write_text(text)
    if args.docs:
        DOCS_JSON.write_text(text)
        print(f"wrote {DOCS_JSON}")
    print(f"{n} sites of 512 x 512 x 6 ({read} read); PNGs {png_bytes / 1e6:.0f} MB")
    print(f"records: {record_bytes / 1e6 * scale:.0f} MB per 1,000 sites, "
          f"{record_bytes * FULL_RELEASE / n / 1e9:.0f} GB for {FULL_RELEASE:,}")  # fmt: skip
    for step, (wall, cpu) in results.items():
        print(
            f"{step}: {wall * scale:.0f} s wall, {cpu * scale:.0f} s CPU per 1,000 sites; "
            f"{cpu * FULL_RELEASE / n / 3600:.1f} CPU hours for {FULL_RELEASE:,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
