"""The rxdata error hierarchy.

Every error rxdata raises on bad input derives from :class:`RxDataError` and also from the
built-in exception a caller would catch without knowing rxdata (``ValueError``,
``FileNotFoundError``, ...). Messages name the offending file, row or value and say what
was expected, so that a failure on the 753,060th PNG of a conversion is actionable.

Example:
    >>> import rxdata
    >>> try:
    ...     rxdata.parse_id_code("not-an-id")
    ... except ValueError as err:  # also an rxdata.RxDataError
    ...     isinstance(err, rxdata.RxDataError)
    True
"""

from __future__ import annotations

import json
import os
from typing import Final

__all__ = [
    "ConvertError",
    "ImageDecodeError",
    "ImageNotFoundError",
    "ImageReadError",
    "MetadataError",
    "OptionsError",
    "OutputExistsError",
    "ParseError",
    "RecordError",
    "RxDataError",
    "SplitError",
    "StatsError",
    "SubmissionError",
    "UnreachableError",
    "VerifyError",
    "WorkerError",
    "option_flags",
    "option_text",
]

OPTION_FLAGS_ENV = "RXDATA_OPTION_FLAGS"
"""Set by the ``rxdata`` command line to a JSON object ``{field: flag}``: messages then
name options by their flags (spawned workers inherit it). Unset: Python keywords."""


def option_flags() -> str | None:
    """The command line's ``{field: flag}`` table as set now (JSON), or None in Python.

    A conversion plan records it in each task, so that a message raised on a remote
    (Beam or Dask) worker, which does not share this process's environment, names options
    the way the user gave them.

    Example:
        >>> option_flags() is None  # not under the rxdata command line
        True
    """
    return os.environ.get(OPTION_FLAGS_ENV)


_FROM_ENVIRONMENT: Final = "<environment>"


def option_text(
    name: str,
    value: object = True,
    *,
    placeholder: str | None = None,
    flags: str | None = _FROM_ENVIRONMENT,
) -> str:
    """How an error message names an option: ``name=value`` in Python, else its CLI flag.

    The one rule for naming options in messages, so that a CLI user reads
    ``--on-error skip`` and a Python user ``on_error='skip'`` from the same ``raise``.
    Under the CLI (:data:`OPTION_FLAGS_ENV` set), a field the CLI's table does not list
    is spelled ``--field-name``; ``True`` is the bare flag.

    Args:
        name: The option's field or keyword name, e.g. ``"on_error"``.
        value: Its value; ``True`` means "pass the switch".
        placeholder: Describes the value instead, e.g. ``"PATH"``.
        flags: The flag table to use (:func:`option_flags` as recorded elsewhere, None for
            Python names); default: this process's environment.

    Example:
        >>> option_text("on_error", "skip"), option_text("metadata", placeholder="PATH")
        ("on_error='skip'", 'metadata=PATH')
    """
    raw = option_flags() if flags == _FROM_ENVIRONMENT else flags
    if raw is None:
        return f"{name}={placeholder if placeholder is not None else repr(value)}"
    try:
        table = json.loads(raw)
    except ValueError:
        table = {}
    flag = str(table.get(name) if isinstance(table, dict) and name in table else "")
    flag = flag or "--" + name.replace("_", "-")
    if placeholder is not None:
        return f"{flag} {placeholder}"
    if value is True:
        return flag
    if isinstance(value, (tuple, list)):
        return f"{flag} {','.join(str(v) for v in value)}"
    return f"{flag} {value}"


class RxDataError(Exception):
    """Base class of every error rxdata raises on purpose."""


class OptionsError(RxDataError, ValueError):
    """An options value is out of range or of the wrong kind (names the field and the value)."""


class ParseError(RxDataError, ValueError):
    """A path, ``id_code`` or ``site_id`` does not follow the RxRx1 naming scheme."""


class MetadataError(RxDataError, ValueError):
    """A metadata table or CSV is malformed: missing columns, duplicate ids, bad values."""


class ImageNotFoundError(RxDataError, FileNotFoundError):
    """A channel image that should exist is missing (names the path)."""


class ImageReadError(RxDataError, OSError):
    """A channel image exists but cannot be read: no permission, a symlink loop, an I/O error."""


class ImageDecodeError(RxDataError, ValueError):
    """A channel image is corrupt, not 8-bit grayscale, or of the wrong size (names the file)."""


class StatsError(RxDataError, ValueError):
    """Normalization statistics are missing for a group, or have the wrong shape."""


class RecordError(RxDataError, ValueError):
    """A TFRecord shard is truncated or corrupt, or an example does not match the schema."""


class ConvertError(RxDataError, RuntimeError):
    """A conversion could not complete (the message says which site and why)."""


class OutputExistsError(RxDataError, FileExistsError):
    """An output directory holds a conversion made with different options."""


class VerifyError(RxDataError, ValueError):
    """Verification of converted shards found a mismatch against the manifest or metadata."""


class SplitError(RxDataError, ValueError):
    """A split cannot be made as asked (too many folds, unknown experiment, overlap)."""


class SubmissionError(RxDataError, ValueError):
    """Predictions cannot become a valid submission (missing, duplicate or bad wells)."""


class WorkerError(RxDataError, RuntimeError):
    """A worker process died (killed, or out of memory) while running a task."""


class UnreachableError(RxDataError, ConnectionError):
    """A server (e.g. a tf.data service dispatcher) did not answer at its address in time."""
