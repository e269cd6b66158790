"""``rxdata synth``, ``rxdata show`` and ``rxdata stats``: make, look at and measure images.

Each command parses its arguments and calls one library function:
:func:`rxdata.synthetic.generate`, :func:`rxdata.figures.render_site` (or
:func:`~rxdata.figures.render_plate` without WELL) and
:func:`rxdata.stats.compute_pixel_stats`.
"""

from __future__ import annotations

import argparse
import os
import sys

from rxdata.cli.common import EXIT_OK, InputNotFoundError, must_exist, progress_flag
from rxdata.errors import OptionsError, ParseError, RxDataError
from rxdata.naming import CHANNELS, DATASETS, LAYOUTS


def _synthetic_estimate(n_sites: int, image_size: int, workers: int) -> str:
    # Calibrated on the full default data set: 125,510 sites of 6 PNGs at 512 px make
    # ~46 GB and took ~17 hours on 2 cores (rxdata 0.1). Size and time scale with pixels.
    pixels = n_sites * 6 * image_size**2
    gigabytes = pixels * 0.233 / 1e9
    hours = pixels / (125_510 * 6 * 512**2) * 17 * 2 / max(workers, 1)
    return (
        f"{n_sites:,} sites, about {gigabytes:,.1f} GB, roughly {hours:,.1f} h on {workers} core(s)"
    )


def add_synth(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rxdata synth``, which calls :func:`rxdata.synthetic.generate`."""
    from rxdata.synthetic import SyntheticOptions

    d, t = SyntheticOptions(), SyntheticOptions.tiny()
    p = sub.add_parser(
        "synth",
        help="write a synthetic RxRx1-shaped data set (--tiny: 336 sites in seconds)",
        description="Write a synthetic RxRx1 data set (images + CSVs) with the real plate "
        "layout, a learnable per-siRNA signal and batch effects; see docs/synthetic.md. "
        "Choose a size: --tiny (336 sites of 32 px images, seconds) or --full (the real "
        f"data set's shape: {_synthetic_estimate(d.n_sites, d.image_size, 2)}); the "
        "options below change either.",
    )
    p.add_argument("root", metavar="ROOT", help="output folder (must be empty or new)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--tiny",
        action="store_true",
        help="start from SyntheticOptions.tiny(): 336 sites of 32 px, seconds (--tiny or "
        "--full is required)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="start from SyntheticOptions(): the real data set's shape, a long job (--tiny "
        "or --full is required)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty ROOT, replacing files of the same names; other files "
        "stay (default: refuse)",
    )
    p.add_argument(
        "--experiments",
        metavar="CT:TRAIN:TEST,...",
        help="experiments per cell type, e.g. HEPG2:2:1,HUVEC:2:1 (default: --full the real "
        "33+18, --tiny HEPG2:1:1,HUVEC:1:1,RPE:1:0,U2OS:1:0)",
    )
    p.add_argument("--layout", choices=LAYOUTS, help=f"output layout (default: {d.layout})")
    p.add_argument(
        "--label-style",
        choices=("integer", "string"),
        help=f"Kaggle label style (default: {d.label_style})",
    )
    for flag, kind, text in (
        ("--plates", int, f"plates per experiment, 1-4 (default: {d.plates})"),
        (
            "--sirnas-per-plate",
            int,
            f"treatment wells per plate, 1-277 (default: {d.sirnas_per_plate}; --tiny "
            f"{t.sirnas_per_plate})",
        ),
        (
            "--positive-controls",
            int,
            f"positive-control wells per plate, 0-30 (default: {d.positive_controls}; "
            f"--tiny {t.positive_controls})",
        ),
        ("--sites", int, f"sites per well, 1-2 (default: {d.sites})"),
        (
            "--image-size",
            int,
            f"image side in pixels (default: {d.image_size}; --tiny {t.image_size})",
        ),
        ("--signal", float, f"strength of the per-siRNA signal (default: {d.signal})"),
        (
            "--batch-effect",
            float,
            f"strength of experiment/plate batch effects (default: {d.batch_effect})",
        ),
        (
            "--morphology",
            float,
            f"strength of the per-siRNA cell size and spread signal, 0-5 (default: "
            f"{d.morphology}; 0 = intensity-only classes)",
        ),
        (
            "--incomplete-fraction",
            float,
            f"fraction of sites missing channels 5-6 (default: {d.incomplete_fraction})",
        ),
        ("--seed", int, f"random seed (default: {d.seed})"),
        (
            "--png-compression",
            int,
            f"zlib level 0-9 (default: {d.png_compression}; 1 is ~5x faster at 512 px)",
        ),
        ("--workers", int, "worker processes (default: every core; --tiny 1)"),
    ):
        p.add_argument(flag, type=kind, metavar="N" if kind is int else "X", help=text)
    progress_flag(p)
    p.set_defaults(func=_synth_handler)


def _synth_experiments(text: str) -> tuple[tuple[str, int, int], ...]:
    try:
        return tuple(
            (ct, int(tr), int(te)) for ct, tr, te in (item.split(":") for item in text.split(","))
        )
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected CELLTYPE:TRAIN:TEST items separated by commas, e.g. "
            "HEPG2:2:1,HUVEC:2:1"
        ) from None


def _synth_handler(args: argparse.Namespace) -> int:
    from rxdata.metadata import read_metadata
    from rxdata.synthetic import SyntheticOptions, generate

    names = (
        "layout",
        "label_style",
        "plates",
        "sirnas_per_plate",
        "positive_controls",
        "sites",
        "image_size",
        "signal",
        "batch_effect",
        "morphology",
        "incomplete_fraction",
        "seed",
        "png_compression",
        "workers",
        "progress",
    )
    overrides = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.experiments:
        try:
            overrides["experiments"] = _synth_experiments(args.experiments)
        except argparse.ArgumentTypeError as err:
            raise OptionsError(f"--experiments {err}") from None
    options = SyntheticOptions.tiny(**overrides) if args.tiny else SyntheticOptions(**overrides)
    if os.path.isdir(args.root) and os.listdir(args.root) and not args.overwrite:
        raise OptionsError(
            f"{args.root} is not empty; choose a new or empty folder, or pass --overwrite to "
            "write into it (files of the same names are replaced, others stay)"
        )
    if not args.tiny:
        workers = options.workers or os.cpu_count() or 1
        print(
            f"writing {_synthetic_estimate(options.n_sites, options.image_size, workers)}"
            " to {args.root}; Ctrl-C stops it",
            file=sys.stderr,
        )
    root = generate(args.root, options)
    md = read_metadata(root if options.layout == "kaggle" else root / "metadata.csv")
    print(
        f"wrote {len(md)} sites ({md.experiment.nunique()} experiments, "
        f"{options.image_size} px, {options.layout} layout) to {root}"
    )
    return EXIT_OK


def _channel_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected channel numbers like 1,2,3; got {text!r}"
        ) from None


def add_show(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rxdata show``, which calls :func:`rxdata.figures.render_site` or ``render_plate``."""
    p = sub.add_parser(
        "show",
        help="render a site (RGB composite + channel grid) or a whole plate to a PNG",
        description="Render one site (RGB composite in the rxrx1-utils colours plus each "
        "channel in grayscale) or, without WELL, a montage of a whole 384-well plate. "
        "Example: rxdata show HUVEC-01 2 B02 --site 1 --root data --out site.png",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help="e.g. HUVEC-01 (or HUVEC-1)")
    p.add_argument("plate", metavar="PLATE", type=int, help="plate number 1-4")
    p.add_argument("well", metavar="WELL", nargs="?", help="e.g. B02; omit for a plate montage")
    p.add_argument("--site", type=int, default=1, help="site number (default: %(default)s)")
    p.add_argument(
        "--dataset", choices=DATASETS, help="Kaggle subset (default: found from the folders)"
    )
    p.add_argument(
        "--root", help="data root (default: $RXDATA_ROOT if set, else the current folder)"
    )
    p.add_argument("--layout", choices=LAYOUTS, help="data layout (default: detected)")
    p.add_argument(
        "--channels",
        type=_channel_list,
        default=CHANNELS,
        help="channels to draw, e.g. 1,2,3 (default: all six)",
    )
    p.add_argument(
        "--metadata", help="metadata folder/CSV: adds a plate map of well types (default: none)"
    )
    p.add_argument(
        "--out",
        help="output PNG (default: {experiment}_{plate}.png, or "
        "{experiment}_{plate}_{well}_s{site}.png with WELL)",
    )
    p.add_argument("--dpi", type=int, default=100, help="resolution (default: %(default)s)")
    p.set_defaults(func=_show_handler)


def _show_handler(args: argparse.Namespace) -> int:
    from rxdata.figures import render_plate, render_site

    if args.root is not None:
        must_exist(args.root, "--root")
    common = {
        "base_path": args.root,
        "channels": args.channels,
        "layout": args.layout,
        "dpi": args.dpi,
    }
    try:
        if args.well is None:
            out = args.out or f"{args.experiment}_{args.plate}.png"
            metadata = None
            if args.metadata:
                from rxdata.metadata import read_metadata

                metadata = read_metadata(must_exist(args.metadata, "--metadata"))
            render_plate(
                args.dataset,
                args.experiment,
                args.plate,
                site=args.site,
                metadata=metadata,
                out=out,
                **common,
            )
        else:
            out = args.out or f"{args.experiment}_{args.plate}_{args.well}_s{args.site}.png"
            render_site(
                args.dataset, args.experiment, args.plate, args.well, args.site, out=out, **common
            )
    except (FileNotFoundError, RxDataError) as err:
        better = _show_problem(args)
        if better is not None:
            raise InputNotFoundError(better) from err
        if (
            args.root is not None
            or os.environ.get("RXDATA_ROOT")
            or isinstance(err, (InputNotFoundError, OptionsError, ParseError))
        ):  # only "nothing found here" errors get the hint
            raise
        raise InputNotFoundError(
            f"{err}\nhint: no --root was given and RXDATA_ROOT is not set, so the current "
            "folder was searched; pass --root DATA_ROOT or set RXDATA_ROOT"
        ) from err
    print(out)
    return EXIT_OK


def _show_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with `rxdata show`'s EXPERIMENT, --dataset or --channels, or ``None``.

    In the command's words: its flags, and the experiments or channels on disk.
    """
    from rxdata import _io
    from rxdata.naming import experiment_spellings, image_path
    from rxdata.roots import find_root

    root = args.root or os.environ.get("RXDATA_ROOT") or "."
    try:
        data = find_root(root, layout=args.layout)
        spellings = experiment_spellings(args.experiment)
    except (RxDataError, FileNotFoundError, ValueError):
        return None
    datasets = (None,) if data.layout == "full" else DATASETS
    on_disk = {}
    for ds in datasets:
        folder = data.folder(ds)
        names = _io.listdir(folder) if _io.isdir(folder) else []
        on_disk[ds] = sorted(n.rstrip("/") for n in names if _io.isdir(_io.join(folder, n)))
    where = [ds for ds in datasets for name in spellings if name in on_disk[ds]]
    if not where:
        listing = "; ".join(
            f"{ds or 'images'}: {', '.join(names) if names else '(none)'}"
            for ds, names in on_disk.items()
        )
        return (
            f"experiment {args.experiment!r} is not on disk under {data.base}; the "
            f"experiments there are {listing}"
        )
    if args.dataset is not None and data.layout == "kaggle" and args.dataset not in where:
        return (
            f"experiment {args.experiment!r} is under {_io.join(data.base, where[0] or '')}, "
            f"not {_io.join(data.base, args.dataset)}: pass --dataset {where[0]} (or leave "
            "--dataset out to find it)"
        )
    if args.well is None:
        return None
    ds = args.dataset or where[0]
    experiment = next(n for n in spellings if n in on_disk[ds])
    present = [
        c
        for c in CHANNELS
        if _io.exists(
            data.join(image_path(ds, experiment, args.plate, args.well, args.site, c, data.layout))
        )
    ]
    missing = [c for c in args.channels if c not in present]
    if not missing:
        return None
    if not present:
        return (
            f"no channel image of {experiment} plate {args.plate} well {args.well} site "
            f"{args.site} under {data.base}; check PLATE, WELL and --site"
        )
    return (
        f"{experiment} plate {args.plate} well {args.well} site {args.site} has no image of "
        f"channel(s) {','.join(map(str, missing))} under {data.base}; draw the channels it "
        f"has with --channels {','.join(map(str, present))}"
    )


def add_stats(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rxdata stats``, which calls :func:`rxdata.stats.compute_pixel_stats`."""
    p = sub.add_parser(
        "stats",
        help="compute per-site pixel statistics (pixel_stats.csv)",
        description="Compute mean, std (population), median, min and max of every channel "
        "image under ROOT, in Kaggle's pixel_stats.csv format, in parallel.",
    )
    p.add_argument("root", metavar="ROOT", help="data root (Kaggle or full-release layout)")
    p.add_argument("--out", default="pixel_stats.csv", help="output CSV (default: %(default)s)")
    p.add_argument(
        "--metadata",
        help="metadata folder/CSV: read exactly its sites (all six channels) instead of the "
        "images found under ROOT (default: the images found)",
    )
    p.add_argument("--workers", type=int, help="worker processes (default: every core)")
    p.add_argument(
        "--on-error",
        choices=("raise", "skip", "warn"),
        default="raise",
        help="a missing or corrupt image: fail, skip it, or warn and skip (default: %(default)s)",
    )
    progress_flag(p, default=True)  # stats: True = bar or log lines
    p.set_defaults(func=_stats_handler)


def _stats_handler(args: argparse.Namespace) -> int:
    from rxdata.stats import compute_pixel_stats

    must_exist(args.root, "ROOT")
    metadata = None
    if args.metadata:
        from rxdata.metadata import read_metadata

        metadata = read_metadata(must_exist(args.metadata, "--metadata"))
    table = compute_pixel_stats(
        args.root,
        metadata,
        out_csv=args.out,
        workers=args.workers,
        progress=args.progress,
        on_error=args.on_error,
    )
    print(f"{args.out}: {len(table)} rows")
    return EXIT_OK
