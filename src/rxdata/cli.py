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

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 3
EXIT_SKIPPED = 4
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def _add_synth(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("synth", help="write a synthetic RxRx1-shaped data set")
    p.add_argument("root", help="output folder")
    p.set_defaults(func=_not_yet)


def _add_show(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("show", help="render a site (RGB composite + channel grid) to a PNG")
    p.set_defaults(func=_not_yet)


def _add_stats(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("stats", help="compute per-site pixel statistics (pixel_stats.csv)")
    p.set_defaults(func=_not_yet)


def _add_verify(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("verify", help="re-read converted shards and check them")
    p.set_defaults(func=_not_yet)


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
    parser = argparse.ArgumentParser(
        prog="rxdata-convert",
        description="Convert RxRx1 PNGs to TFRecord shards.",
    )
    parser.set_defaults(func=_not_yet, command="convert")
    return parser


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
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
