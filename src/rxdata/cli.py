"""Command-line entry points: ``rxdata`` (subcommands) and ``rxdata-convert``.

The CLI only parses arguments and calls one library function per command; every option
maps onto a keyword of that function, so anything the CLI does can be done from Python.
``rxdata-convert`` is an alias of ``rxdata convert``.

Exit codes (shared by both scripts):

| code | meaning |
|---|---|
| 0 | success |
| 1 | the command failed on bad input or data (an ``RxDataError``; the message names the file/row) |
| 2 | the command line itself is wrong (argparse usage error) |
| 3 | ``verify`` ran and found mismatches (a report is printed) |
| 4 | ``convert --on-error skip`` finished but skipped sites (see the report CSV) |
| 130 | interrupted (Ctrl-C); re-running the same command resumes |
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rxdata.errors import Option, OptionsError, ParseError, RxDataError
from rxdata.naming import CHANNELS, DATASETS, LAYOUTS, normalize_experiment

if TYPE_CHECKING:
    from rxdata.conversion import ConvertOptions

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 3
EXIT_SKIPPED = 4
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]

# Library option fields whose flag is not ``--field-name`` (messages name the flag).
_FLAGS = {
    "beam_options": "--beam-option",
    "include_controls": "--no-controls",
}
# Flags that take several values as separate words (nargs="+"), not "A,B".
_SPACED = frozenset({"datasets"})


def flag_text(option: Option) -> str:
    """How the command line names an option a library message names (``--on-error skip``).

    Example:
        >>> flag_text(Option("on_error", "skip")), flag_text(Option("overwrite"))
        ('--on-error skip', '--overwrite')
        >>> flag_text(Option("image_shape", (512, 512)))
        '--image-shape 512,512'
    """
    flag = _FLAGS.get(option.name, "--" + option.name.replace("_", "-"))
    value = option.value
    if option.placeholder is not None:
        return f"{flag} {option.placeholder}"
    if isinstance(value, bool):
        return flag
    if isinstance(value, (tuple, list)):
        return f"{flag} {(' ' if option.name in _SPACED else ',').join(str(v) for v in value)}"
    return f"{flag} {value}"


def cli_message(err: BaseException) -> str:
    """``err``'s message in command-line words: each option it names becomes its flag.

    The library's messages name options as Python keywords and list them in
    ``err.options`` (:class:`rxdata.errors.Option`); an error that wraps another keeps the
    wrapped one as its cause, whose options are respelled too.

    Example:
        >>> skip = Option("on_error", "skip")
        >>> cli_message(RxDataError(f"bad site; pass {skip}", options=[skip]))
        'bad site; pass --on-error skip'
    """
    text = str(err)
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        for option in getattr(cause, "options", ()):
            text = text.replace(str(option), flag_text(option))
        cause = cause.__cause__ or cause.__context__
    return text


class InputNotFoundError(RxDataError, FileNotFoundError):
    """A path given on the command line does not exist."""


def _must_exist(path: str, what: str) -> str:
    """``path`` (a local path; ``gs://`` is left to the library) or an error naming it."""
    if "://" not in path and not os.path.exists(path):
        raise InputNotFoundError(f"{what} {path} does not exist; check the path")
    return path


def _version() -> str:
    from rxdata import __version__

    return f"rxdata {__version__}"


def _progress_flag(p: argparse.ArgumentParser, default: bool | None = None) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="a progress bar (default: a bar on a terminal, a log line every 30 s otherwise)",
    )


def _synthetic_estimate(n_sites: int, image_size: int, workers: int) -> str:
    # Calibrated on the full default data set: 125,510 sites of 6 PNGs at 512 px make
    # ~46 GB and took ~17 hours on 2 cores (rxdata 0.1). Size and time scale with pixels.
    pixels = n_sites * 6 * image_size**2
    gigabytes = pixels * 0.233 / 1e9
    hours = pixels / (125_510 * 6 * 512**2) * 17 * 2 / max(workers, 1)
    return (
        f"{n_sites:,} sites, about {gigabytes:,.1f} GB, roughly {hours:,.1f} h on {workers} core(s)"
    )


def _add_synth(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    _progress_flag(p)
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


def _add_show(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
        _must_exist(args.root, "--root")
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

                metadata = read_metadata(_must_exist(args.metadata, "--metadata"))
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


def _add_stats(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    _progress_flag(p, default=True)  # stats: True = bar or log lines
    p.set_defaults(func=_stats_handler)


def _stats_handler(args: argparse.Namespace) -> int:
    from rxdata.stats import compute_pixel_stats

    _must_exist(args.root, "ROOT")
    metadata = None
    if args.metadata:
        from rxdata.metadata import read_metadata

        metadata = read_metadata(_must_exist(args.metadata, "--metadata"))
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


def _add_verify(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify",
        help="re-read converted shards and check them against their manifest",
        description="Re-read every shard of an `rxdata convert` output and check sizes, "
        "sha256 checksums, example counts and site ids against its manifest.json (and the "
        "metadata, with --metadata). Exit code 3 and a report when anything mismatches.",
    )
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder written by rxdata convert")
    _add_verify_options(p)
    p.add_argument(
        "--inputs",
        metavar="IMAGES_ROOT",
        default=None,
        help="also read every input image under IMAGES_ROOT again and compare it with the "
        "content hash recorded at conversion: finds a same-size replacement whose "
        "modification time was restored (cp -p, rsync -t), which a resume cannot see "
        "(reads all the images; default: off)",
    )
    _progress_flag(p)
    p.set_defaults(func=_verify_handler)


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--decode",
        action="store_true",
        help="also decode every image and check its size (slow; default: off)",
    )
    p.add_argument(
        "--metadata",
        metavar="PATH",
        default=None,
        help="metadata folder or metadata.csv: check that every selected site is written or "
        "reported skipped (default: no metadata check when verifying alone; with a "
        "conversion, the conversion's metadata)",
    )


@contextmanager
def _site_progress(output_dir: str, enabled: bool | None) -> Iterator[Callable[[int], None]]:
    """A progress bar over the sites a manifest lists (verify reports each shard's)."""
    from rxdata._parallel import Progress
    from rxdata.records import read_manifest

    try:
        total = sum(int(s.get("count", 0)) for s in read_manifest(output_dir).get("shards", []))
    except (FileNotFoundError, RxDataError):
        total = 0  # verify itself reports the missing or bad manifest
    bar = Progress(total, enabled, desc="verify", unit="site")
    try:
        yield bar.update
    finally:
        bar.close()


def _verify_handler(args: argparse.Namespace) -> int:
    from rxdata.conversion import verify

    _must_exist(args.output_dir, "OUTPUT_DIR")
    metadata = args.metadata and _must_exist(args.metadata, "--metadata")
    try:
        with _site_progress(args.output_dir, getattr(args, "progress", None)) as progress:
            report = verify(
                args.output_dir,
                decode=args.decode,
                metadata=metadata,
                progress=progress,
                inputs=getattr(args, "inputs", None) and _must_exist(args.inputs, "--inputs"),
            )
    except FileNotFoundError as err:
        if isinstance(err, RxDataError):
            raise
        raise InputNotFoundError(str(err)) from err  # "rxdata: error: ...", exit 1
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_VERIFY_FAILED


def _image_shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    if len(shape) != 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected HEIGHT,WIDTH in pixels (or one number for a square), e.g. 512,512"
        )
    return shape[0], shape[1]


def _experiment_list(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    try:
        return tuple(normalize_experiment(n) for n in names) or _no_experiments(text)
    except RxDataError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _no_experiments(text: str) -> tuple[str, ...]:
    raise argparse.ArgumentTypeError(f"{text!r}: expected experiments like HUVEC-01,HEPG2-1")


def _add_convert_options(parser: argparse.ArgumentParser) -> None:
    """The conversion options shared by ``rxdata convert`` and ``rxdata-convert``."""
    from rxdata.conversion import ConvertOptions

    defaults = ConvertOptions()
    _add_selection_options(parser, defaults)
    _add_format_options(parser, defaults)
    _add_runner_options(parser, defaults)
    _add_output_options(parser)
    _progress_flag(parser)


def _add_selection_options(parser: argparse.ArgumentParser, d: ConvertOptions) -> None:
    """Which sites a conversion reads: ``--metadata``, ``--experiments``, data sets, controls."""
    group = parser.add_argument_group("which sites")
    group.add_argument(
        "--metadata",
        metavar="PATH",
        default=None,
        help="metadata folder (Kaggle CSVs) or metadata.csv (default: found inside or beside "
        "IMAGES_ROOT, also in a metadata/ folder there)",
    )
    group.add_argument(
        "--experiments",
        type=_experiment_list,
        metavar="EXP,...",
        default=None,
        help="convert only these experiments, e.g. HUVEC-01,HEPG2-1 (either spelling); "
        "recorded in the manifest (default: every experiment)",
    )
    group.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=list(d.datasets),
        help=f"data sets to convert (default: {' '.join(d.datasets)})",
    )
    group.add_argument(
        "--no-controls",
        action="store_true",
        help="leave out positive and negative control wells (default: controls included)",
    )


def _add_format_options(parser: argparse.ArgumentParser, d: ConvertOptions) -> None:
    """What the shards hold: grouping into shards, encoding, compression, image size."""
    group = parser.add_argument_group("what the shards hold")
    from rxdata.conversion import COMPRESSIONS, ENCODINGS, STRATEGIES

    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=d.strategy,
        help="random: shuffled shards of --sites-per-shard sites per data set; "
        "by_exp_plate_site: one shard per experiment, plate and site; by_experiment: one "
        "shard per experiment (default: %(default)s)",
    )
    group.add_argument(
        "--sites-per-shard",
        type=int,
        default=None,
        metavar="N",
        help=f"sites per shard, --strategy random only (default: {d.sites_per_shard}, "
        "~200 MB of PNGs)",
    )
    group.add_argument(
        "--seed", type=int, default=d.seed, metavar="N", help="shuffle seed (default: %(default)s)"
    )
    group.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default=d.encoding,
        help="png: the source PNG bytes, validated without decoding (small, fast to write); "
        "raw: decoded uint8 pixels (fast to read, ~3x larger) (default: %(default)s)",
    )
    group.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default=d.compression,
        help="TFRecord compression (default: %(default)s; PNGs are already compressed)",
    )
    group.add_argument(
        "--image-shape",
        type=_image_shape,
        metavar="HEIGHT,WIDTH",
        default=None,
        help="the size every image must have, e.g. 512,512 (default: the most common size "
        "among the first images read)",
    )


def _add_runner_options(parser: argparse.ArgumentParser, d: ConvertOptions) -> None:
    """How the shards are written: runner, workers, bad sites, Beam and Dask settings."""
    group = parser.add_argument_group("how the shards are written")
    from rxdata.conversion import RUNNERS

    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: every core)",
    )
    group.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default=d.on_error,
        help="raise: stop at the first bad site, naming the file; skip: convert the rest and "
        "list skipped sites in OUTPUT_DIR/skipped.csv, exit code 4 (default: %(default)s)",
    )
    group.add_argument(
        "--runner",
        choices=RUNNERS,
        default=d.runner,
        help="local: a process pool on this machine; beam: an Apache Beam pipeline "
        "(pip install 'rxdata[beam]'; DirectRunner unless --beam-option runner=...); dask: "
        "a Dask cluster (pip install 'rxdata[dask]'; see --dask-address) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Beam pipeline option, repeatable, e.g. --beam-option runner=DataflowRunner "
        "--beam-option project=my-project (default: none)",
    )
    group.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        default=None,
        help="with --runner dask: the scheduler to connect to, e.g. tcp://10.0.0.1:8786 "
        "(default: a local cluster)",
    )
    group.add_argument(
        "--dask-timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help="with --dask-address: how long to wait for the scheduler before failing "
        f"(default: {d.dask_timeout:g})",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """The output folder: replacing it, scanning for orphans, verifying it afterwards."""
    group = parser.add_argument_group("the output folder")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output written with other options or metadata (default: refuse)",
    )
    group.add_argument(
        "--no-scan",
        action="store_true",
        help="do not list IMAGES_ROOT to report images without metadata (default: scan)",
    )
    group.add_argument(
        "--verify",
        action="store_true",
        help="verify OUTPUT_DIR after converting (exit code 3 on a mismatch) (default: off)",
    )
    group.add_argument(
        "--decode",
        action="store_true",
        help="with --verify: also decode every image; when converting with --encoding png: "
        "fully decode every PNG instead of only validating it (default: off)",
    )


_CONVERT_DESCRIPTION = (
    "Convert RxRx1 PNGs to TFRecord shards. Re-running the same command after an "
    "interruption resumes it: complete shards are checked against their sha256 and kept, "
    "the rest are rewritten. Exit codes: 0 done, 1 bad input (the message names the file), "
    "2 bad command line, 3 verification failed, 4 done but sites were skipped "
    "(OUTPUT_DIR/skipped.csv), 130 interrupted."
)


def _add_convert(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "convert",
        help="convert RxRx1 PNGs to TFRecord shards (resumable; also: rxdata-convert)",
        description=_CONVERT_DESCRIPTION,
    )
    p.add_argument(
        "images_root",
        metavar="IMAGES_ROOT",
        help="folder with the Kaggle layout (train/, test/) or the full release (images/), "
        "local or gs://",
    )
    p.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        help="where shards, manifest.json and skipped.csv go",
    )
    _add_convert_options(p)
    p.set_defaults(func=_convert_handler, parser=p)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``rxdata`` argument parser with all its subcommands.

    Example:
        >>> build_parser().parse_args(["convert", "data", "records"]).encoding
        'png'
    """
    parser = argparse.ArgumentParser(
        prog="rxdata",
        description="RxRx1 data tools. From nothing to training records: "
        "`rxdata synth --tiny data` then `rxdata convert data records`. "
        "`rxdata COMMAND --help` explains a command.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_convert, _add_verify, _add_stats, _add_show):
        add(sub)
    return parser


def build_convert_parser() -> argparse.ArgumentParser:
    """Build the ``rxdata-convert`` argument parser (an alias of ``rxdata convert``)."""
    parser = argparse.ArgumentParser(
        prog="rxdata-convert",
        usage="%(prog)s IMAGES_ROOT OUTPUT_DIR [options]",
        description=_CONVERT_DESCRIPTION + " The same as `rxdata convert`.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "images_root",
        metavar="IMAGES_ROOT",
        help="folder with the Kaggle layout (train/, test/) or the full release (images/), "
        "local or gs://",
    )
    parser.add_argument(
        "output_dir",
        metavar="OUTPUT_DIR",
        help="where shards, manifest.json and skipped.csv go",
    )
    _add_convert_options(parser)
    parser.set_defaults(func=_convert_handler, command="convert", parser=parser)
    return parser


def _setup_logging() -> None:
    import logging

    class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
        """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

        @property
        def stream(self) -> object:
            return sys.stderr

        @stream.setter
        def stream(self, value: object) -> None:
            pass

    logger = logging.getLogger("rxdata")
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _convert_handler(args: argparse.Namespace) -> int:
    from rxdata.conversion import convert

    parser: argparse.ArgumentParser = args.parser
    if args.sites_per_shard is not None and args.strategy != "random":
        parser.error(
            f"--sites-per-shard applies to --strategy random only; --strategy "
            f"{args.strategy} writes one shard per "
            + ("experiment" if args.strategy == "by_experiment" else "experiment, plate and site")
        )
    images_root, output_dir = args.images_root, args.output_dir
    _must_exist(images_root, "IMAGES_ROOT")
    if args.metadata is not None:
        _must_exist(args.metadata, "--metadata")
    # Passed only when given, so that the library's defaults and rules apply.
    optional = ("dask_address", "dask_timeout", "sites_per_shard")
    extra: dict[str, Any] = {n: getattr(args, n) for n in optional if getattr(args, n) is not None}
    result = convert(
        images_root,
        output_dir,
        metadata=args.metadata,
        experiments=args.experiments,
        strategy=args.strategy,
        seed=args.seed,
        encoding=args.encoding,
        compression=args.compression,
        datasets=tuple(args.datasets),
        include_controls=not args.no_controls,
        image_shape=args.image_shape,
        workers=args.workers,
        on_error=args.on_error,
        runner=args.runner,
        beam_options=tuple(args.beam_option),
        overwrite=args.overwrite,
        decode=args.decode and not args.verify,
        scan=not args.no_scan,
        progress=args.progress,
        **extra,
    )
    print(
        f"wrote {result.n_sites} sites in {len(result.shards)} shards to {result.output_dir} "
        f"({result.n_reused} kept from a previous run, {result.n_changed} rewritten because "
        f"their input changed) in {result.elapsed_s:.1f} s"
    )
    if result.skipped:
        print(
            f"skipped {len(result.skipped)} sites or images; see {result.report_path}",
            file=sys.stderr,
        )
    if args.verify:
        from rxdata.metadata import find_metadata

        if args.metadata is None:
            args.metadata = find_metadata(images_root)
        code = _verify_handler(args)
        if code != EXIT_OK:
            return code
    return EXIT_SKIPPED if result.skipped else EXIT_OK


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    handler: Handler = args.func
    # No TensorFlow C++ start-up lines (TF_CPP_MIN_LOG_LEVEL no longer silences them);
    # the worker processes of the command do the same (rxdata._parallel).
    from rxdata.tflog import quiet_tensorflow_startup

    quiet_tensorflow_startup()
    _setup_logging()  # progress log lines when stderr is not a terminal
    from rxdata._parallel import sigterm_as_interrupt

    try:
        # SIGTERM (a scheduler, `kill`) exits like Ctrl-C
        with sigterm_as_interrupt():
            return handler(args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RxDataError as err:
        print(f"{parser.prog}: error: {cli_message(err)}", file=sys.stderr)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rxdata``; returns the exit code."""
    return _run(build_parser(), argv)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """Run ``rxdata-convert`` (the same as ``rxdata convert``); returns the exit code."""
    return _run(build_convert_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
