"""What every command shares: exit codes, error wording, path checks, the progress flag.

Library errors name options as Python keywords (:class:`rxdata.errors.Option`);
:func:`cli_message` respells them as the flags a user typed, at the CLI's edge.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from rxdata.errors import Option, RxDataError

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


def must_exist(path: str, what: str) -> str:
    """``path`` (a local path; ``gs://`` is left to the library) or an error naming it."""
    if "://" not in path and not os.path.exists(path):
        raise InputNotFoundError(f"{what} {path} does not exist; check the path")
    return path


def version() -> str:
    """What ``--version`` prints: ``rxdata X.Y.Z``."""
    from rxdata import __version__

    return f"rxdata {__version__}"


def progress_flag(p: argparse.ArgumentParser, default: bool | None = None) -> None:
    """Add ``--progress``/``--no-progress`` to ``p`` (``default``: ``None`` = bar on a terminal)."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="a progress bar (default: a bar on a terminal, a log line every 30 s otherwise)",
    )
