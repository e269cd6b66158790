"""``rxdata convert`` (and ``rxdata-convert``) and ``rxdata verify``: PNGs to checked shards.

Each command parses its arguments and calls one library function:
:func:`rxdata.conversion.convert` or :func:`rxdata.conversion.verify` (``convert --verify``
calls both, in that order). Every conversion option is a keyword of
:class:`rxdata.conversion.ConvertOptions`, whose defaults the help text shows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rxdata.cli.common import (
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_VERIFY_FAILED,
    InputNotFoundError,
    must_exist,
    progress_flag,
    version,
)
from rxdata.errors import RxDataError
from rxdata.naming import DATASETS, normalize_experiment

if TYPE_CHECKING:
    from rxdata.conversion import ConvertOptions


def add_verify(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rxdata verify``, which calls :func:`rxdata.conversion.verify`."""
    p = sub.add_parser(
        "verify",
        help="re-read converted shards and check them against their manifest",
        description="Re-read every shard of an `rxdata convert` output and check sizes, "
        "checksums, example counts and site ids against its manifest.json (and the "
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
    progress_flag(p)
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

    must_exist(args.output_dir, "OUTPUT_DIR")
    metadata = args.metadata and must_exist(args.metadata, "--metadata")
    try:
        with _site_progress(args.output_dir, getattr(args, "progress", None)) as progress:
            report = verify(
                args.output_dir,
                decode=args.decode,
                metadata=metadata,
                progress=progress,
                inputs=getattr(args, "inputs", None) and must_exist(args.inputs, "--inputs"),
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
    progress_flag(parser)


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
    "interruption resumes it: complete shards are checked against their checksum and kept, "
    "the rest are rewritten. Exit codes: 0 done, 1 bad input (the message names the file), "
    "2 bad command line, 3 verification failed, 4 done but sites were skipped "
    "(OUTPUT_DIR/skipped.csv), 130 interrupted."
)


def add_convert(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rxdata convert``, which calls :func:`rxdata.conversion.convert`."""
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


def build_convert_parser() -> argparse.ArgumentParser:
    """Build the ``rxdata-convert`` argument parser (an alias of ``rxdata convert``)."""
    parser = argparse.ArgumentParser(
        prog="rxdata-convert",
        usage="%(prog)s IMAGES_ROOT OUTPUT_DIR [options]",
        description=_CONVERT_DESCRIPTION + " The same as `rxdata convert`.",
    )
    parser.add_argument("--version", action="version", version=version())
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
    must_exist(images_root, "IMAGES_ROOT")
    if args.metadata is not None:
        must_exist(args.metadata, "--metadata")
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
