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

Layout:
    :mod:`rxdata.cli.common` holds the exit codes, the error wording and the argument
    helpers every command shares; :mod:`rxdata.cli.convert` the ``convert`` and
    ``verify`` commands (and ``rxdata-convert``); :mod:`rxdata.cli.data` ``synth``,
    ``show`` and ``stats``. This module builds the ``rxdata`` parser from them and runs a
    command: errors become ``rxdata: error: ...`` and an exit code. ``python -m
    rxdata.cli`` runs ``rxdata``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rxdata.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    Handler,
    InputNotFoundError,
    cli_message,
    flag_text,
    version,
)
from rxdata.cli.convert import add_convert, add_verify, build_convert_parser
from rxdata.cli.data import add_show, add_stats, add_synth
from rxdata.errors import RxDataError

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_USAGE",
    "EXIT_VERIFY_FAILED",
    "InputNotFoundError",
    "build_convert_parser",
    "build_parser",
    "cli_message",
    "convert_main",
    "flag_text",
    "main",
]


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
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_synth, add_convert, add_verify, add_stats, add_show):
        add(sub)
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
