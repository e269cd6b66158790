"""Command-line entry points: ``rxdata`` (subcommands) and ``rxdata-convert``.

The CLI only parses arguments and calls one library function per command; every option
maps onto a keyword of that function, so anything the CLI does can be done from Python.

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
import sys
from collections.abc import Callable, Sequence

from rxdata.errors import RxDataError
from rxdata.naming import CHANNELS, DATASETS, LAYOUTS

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 3
EXIT_SKIPPED = 4
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def _add_synth(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "synth",
        help="write a synthetic RxRx1-shaped data set",
        description="Write a synthetic RxRx1 data set (images + CSVs) with the real plate "
        "layout, a learnable per-siRNA signal and batch effects; see docs/synthetic.md. "
        "Defaults mirror the real data set (51 experiments, 512 px: about 46 GB); use "
        "--tiny for a 336-site data set of 32 px images.",
    )
    p.add_argument("root", metavar="ROOT", help="output folder")
    p.add_argument("--tiny", action="store_true", help="start from SyntheticOptions.tiny()")
    p.add_argument(
        "--experiments",
        metavar="CT:TRAIN:TEST,...",
        help="experiments per cell type, e.g. HEPG2:2:1,HUVEC:2:1 (default: the real 33+18)",
    )
    p.add_argument("--layout", choices=LAYOUTS, help="output layout (kaggle)")
    p.add_argument("--label-style", choices=("integer", "string"), help="Kaggle label style")
    for flag, kind, text in (
        ("--plates", int, "plates per experiment, 1-4"),
        ("--sirnas-per-plate", int, "treatment wells per plate, 1-277"),
        ("--positive-controls", int, "positive-control wells per plate, 0-30"),
        ("--sites", int, "sites per well, 1-2"),
        ("--image-size", int, "image side in pixels (512)"),
        ("--signal", float, "strength of the per-siRNA signal (1.0)"),
        ("--batch-effect", float, "strength of experiment/plate batch effects (1.0)"),
        ("--incomplete-fraction", float, "fraction of sites missing channels 5-6 (0)"),
        ("--seed", int, "random seed (0)"),
        ("--png-compression", int, "zlib level 0-9 (6; 1 is ~5x faster at 512 px)"),
        ("--workers", int, "worker processes (all CPUs)"),
    ):
        p.add_argument(flag, type=kind, help=text)
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, help="progress bar (on a terminal)"
    )
    p.set_defaults(func=_synth_handler)


def _synth_handler(args: argparse.Namespace) -> int:
    from rxdata.errors import OptionsError
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
        "incomplete_fraction",
        "seed",
        "png_compression",
        "workers",
        "progress",
    )
    overrides = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.experiments:
        try:
            overrides["experiments"] = tuple(
                (ct, int(tr), int(te))
                for ct, tr, te in (item.split(":") for item in args.experiments.split(","))
            )
        except ValueError:
            raise OptionsError(
                f"--experiments {args.experiments!r}: expected CELLTYPE:TRAIN:TEST items "
                "separated by commas, e.g. HEPG2:2:1,HUVEC:2:1"
            ) from None
    options = SyntheticOptions.tiny(**overrides) if args.tiny else SyntheticOptions(**overrides)
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
        help="render a site (RGB composite + channel grid) to a PNG",
        description="Render one site (RGB composite in the rxrx1-utils colours plus each "
        "channel in grayscale) or, without WELL, a montage of a whole plate. Example: "
        "rxdata show HUVEC-01 2 B02 --site 1 --root data --out site.png",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help="e.g. HUVEC-01")
    p.add_argument("plate", metavar="PLATE", type=int, help="plate number 1-4")
    p.add_argument("well", metavar="WELL", nargs="?", help="e.g. B02; omit for a plate montage")
    p.add_argument("--site", type=int, default=1, help="site number (1)")
    p.add_argument("--dataset", choices=DATASETS, help="Kaggle subset (found if omitted)")
    p.add_argument("--root", help="data root (default $RXDATA_ROOT or the current folder)")
    p.add_argument("--layout", choices=LAYOUTS, help="data layout (detected)")
    p.add_argument(
        "--channels",
        type=_channel_list,
        default=CHANNELS,
        help="channels to draw, e.g. 1,2,3 (all six)",
    )
    p.add_argument("--metadata", help="metadata folder/CSV: adds a plate map of well types")
    p.add_argument("--out", help="output PNG (default {experiment}_{plate}[_{well}_s{site}].png)")
    p.add_argument("--dpi", type=int, default=100, help="resolution (100)")
    p.set_defaults(func=_show_handler)


def _show_handler(args: argparse.Namespace) -> int:
    from rxdata.figures import render_plate, render_site

    common = {
        "base_path": args.root,
        "channels": args.channels,
        "layout": args.layout,
        "dpi": args.dpi,
    }
    if args.well is None:
        out = args.out or f"{args.experiment}_{args.plate}.png"
        metadata = None
        if args.metadata:
            from rxdata.metadata import read_metadata

            metadata = read_metadata(args.metadata)
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
    print(out)
    return EXIT_OK


def _add_stats(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "stats",
        help="compute per-site pixel statistics (pixel_stats.csv)",
        description="Compute mean, std (population), median, min and max of every channel "
        "image under ROOT, in Kaggle's pixel_stats.csv format, in parallel.",
    )
    p.add_argument("root", metavar="ROOT", help="data root (Kaggle or full-release layout)")
    p.add_argument("--out", default="pixel_stats.csv", help="output CSV (pixel_stats.csv)")
    p.add_argument(
        "--metadata",
        help="metadata folder/CSV: read exactly its sites (all six "
        "channels) instead of the images found under ROOT",
    )
    p.add_argument("--workers", type=int, help="worker processes (all CPUs)")
    p.add_argument(
        "--on-error",
        choices=("raise", "skip", "warn"),
        default="raise",
        help="a missing or corrupt image: fail, skip it, or warn and skip (raise)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar (on a terminal)",
    )
    p.set_defaults(func=_stats_handler)


def _stats_handler(args: argparse.Namespace) -> int:
    from rxdata.stats import compute_pixel_stats

    metadata = None
    if args.metadata:
        from rxdata.metadata import read_metadata

        metadata = read_metadata(args.metadata)
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
        help="re-read converted shards and check them",
        description="Re-read every shard of an rxdata-convert output and check sizes, sha256 "
        "checksums, example counts and site ids against its manifest.json (and the metadata, "
        "with --metadata). Exit code 3 and a report when anything mismatches.",
    )
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder written by rxdata-convert")
    _add_verify_options(p)
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


def _verify_handler(args: argparse.Namespace) -> int:
    from rxdata.conversion import verify

    try:
        report = verify(args.output_dir, decode=args.decode, metadata=args.metadata)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_VERIFY_FAILED


def _not_yet(args: argparse.Namespace) -> int:
    raise NotImplementedError(f"'rxdata {args.command}' is not implemented yet")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``rxdata`` argument parser with all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="rxdata",
        description="RxRx1 data tools: synthetic data, pictures, statistics, verification.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_show, _add_stats, _add_verify):
        add(sub)
    return parser


def build_convert_parser() -> argparse.ArgumentParser:
    """Build the ``rxdata-convert`` argument parser."""
    from rxdata.conversion import COMPRESSIONS, ENCODINGS, STRATEGIES, ConvertOptions

    d = ConvertOptions()
    parser = argparse.ArgumentParser(
        prog="rxdata-convert",
        usage="%(prog)s IMAGES_ROOT OUTPUT_DIR [options]\n       %(prog)s --verify OUTPUT_DIR "
        "[--decode] [--metadata PATH]",
        description="Convert RxRx1 PNGs to TFRecord shards. Re-running the same command "
        "after an interruption resumes it: complete shards are checked against their "
        "sha256 and kept, the rest are rewritten. Exit codes: 0 done, 1 bad input (the "
        "message names the file), 2 bad command line, 3 verification failed, 4 done but "
        "sites were skipped (OUTPUT_DIR/skipped.csv), 130 interrupted.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="IMAGES_ROOT OUTPUT_DIR",
        help="IMAGES_ROOT: folder with the Kaggle layout (train/, test/) or the full release "
        "(images/), local or gs://; OUTPUT_DIR: where shards, manifest.json and skipped.csv "
        "go. With --verify alone: just OUTPUT_DIR.",
    )
    parser.add_argument(
        "--metadata",
        metavar="PATH",
        default=None,
        help="metadata folder (Kaggle CSVs) or metadata.csv (default: found inside or beside "
        "IMAGES_ROOT, also in a metadata/ folder there)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=d.strategy,
        help="random: shuffled shards of --sites-per-shard sites per data set; "
        "by_exp_plate_site: one shard per experiment, plate and site; by_experiment: one "
        "shard per experiment (default: %(default)s)",
    )
    parser.add_argument(
        "--sites-per-shard",
        type=int,
        default=d.sites_per_shard,
        metavar="N",
        help="sites per shard for --strategy random (default: %(default)s, ~200 MB of PNGs)",
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, metavar="N", help="shuffle seed (default: %(default)s)"
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default=d.encoding,
        help="png: the source PNG bytes, validated without decoding (small, fast to write); "
        "raw: decoded uint8 pixels (fast to read, ~3x larger) (default: %(default)s)",
    )
    parser.add_argument(
        "--compression",
        choices=COMPRESSIONS,
        default=d.compression,
        help="TFRecord compression (default: %(default)s; PNGs are already compressed)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=list(d.datasets),
        help=f"data sets to convert (default: {' '.join(d.datasets)})",
    )
    parser.add_argument(
        "--no-controls",
        action="store_true",
        help="leave out positive and negative control wells (default: controls included)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: every core)",
    )
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default=d.on_error,
        help="raise: stop at the first bad site, naming the file; skip: convert the rest and "
        "list skipped sites in OUTPUT_DIR/skipped.csv, exit code 4 (default: %(default)s)",
    )
    parser.add_argument(
        "--runner",
        choices=("local", "beam"),
        default=d.runner,
        help="local: a process pool on this machine; beam: an Apache Beam pipeline "
        "(pip install 'rxdata[beam]'; DirectRunner unless --beam-option runner=...) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Beam pipeline option, repeatable, e.g. --beam-option runner=DataflowRunner "
        "--beam-option project=my-project (default: none)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output written with other options or metadata (default: refuse)",
    )
    parser.add_argument(
        "--no-scan",
        action="store_true",
        help="do not list IMAGES_ROOT to report images without metadata (default: scan)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="verify OUTPUT_DIR after converting (exit code 3 on a mismatch); with only "
        "OUTPUT_DIR given, verify without converting (default: off)",
    )
    parser.add_argument(
        "--decode",
        action="store_true",
        help="with --verify: also decode every image; when converting with --encoding png: "
        "fully decode every PNG instead of only validating it (default: off)",
    )
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
    if args.verify and len(args.paths) == 1:
        args.output_dir = args.paths[0]
        return _verify_handler(args)
    if len(args.paths) != 2:
        parser.error("give IMAGES_ROOT and OUTPUT_DIR (or --verify OUTPUT_DIR)")
    images_root, output_dir = args.paths
    _setup_logging()
    result = convert(
        images_root,
        output_dir,
        metadata=args.metadata,
        strategy=args.strategy,
        sites_per_shard=args.sites_per_shard,
        seed=args.seed,
        encoding=args.encoding,
        compression=args.compression,
        datasets=tuple(args.datasets),
        include_controls=not args.no_controls,
        workers=args.workers,
        on_error=args.on_error,
        runner=args.runner,
        beam_options=tuple(args.beam_option),
        overwrite=args.overwrite,
        decode=args.decode and not args.verify,
        scan=not args.no_scan,
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
        from rxdata.conversion import find_metadata

        args.output_dir = output_dir
        if args.metadata is None:
            args.metadata = find_metadata(images_root)
        code = _verify_handler(args)
        if code != EXIT_OK:
            return code
    return EXIT_SKIPPED if result.skipped else EXIT_OK


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    handler: Handler = args.func
    from rxdata._parallel import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SIGTERM (a scheduler, `kill`) exits like Ctrl-C
            return handler(args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; re-run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RxDataError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rxdata``; returns the exit code."""
    return _run(build_parser(), argv)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """Run ``rxdata-convert``; returns the exit code."""
    return _run(build_convert_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
