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

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConvertError",
    "ImageDecodeError",
    "ImageNotFoundError",
    "ImageReadError",
    "IncompleteConversionError",
    "MetadataError",
    "Option",
    "OptionsError",
    "OutputExistsError",
    "ParseError",
    "RecordError",
    "RxDataError",
    "SplitError",
    "StatsError",
    "SubmissionError",
    "UnguardedMainError",
    "UnreachableError",
    "VerifyError",
    "WorkerError",
]


@dataclass(frozen=True)
class Option:
    """An option that an error message names: its field name and the value it shows.

    ``str()`` is the Python spelling (``on_error='skip'``), which library messages use.
    An error lists the options its message names in :attr:`RxDataError.options`, so that a
    front end (the ``rxdata`` command line) can respell them in its own words
    (``--on-error skip``) without the library knowing about it.

    Attributes:
        name: The option's field or keyword name, e.g. ``"on_error"``.
        value: The value the message shows; ``True`` for "pass the switch".
        placeholder: Describes the value instead of showing one, e.g. ``"PATH"``.

    Example:
        >>> str(Option("on_error", "skip")), str(Option("metadata", placeholder="PATH"))
        ("on_error='skip'", 'metadata=PATH')
    """

    name: str
    value: object = True
    placeholder: str | None = None

    def __str__(self) -> str:
        shown = self.placeholder if self.placeholder is not None else repr(self.value)
        return f"{self.name}={shown}"


class RxDataError(Exception):
    """Base class of every error rxdata raises on purpose.

    Args:
        *args: The message (as for any exception).
        options: The options the message names (:class:`Option`), in its words; a front
            end may respell them. Kept when the error is pickled (a worker process's error
            reaching the caller).

    Example:
        >>> skip = Option("on_error", "skip")
        >>> err = RxDataError(f"site x is bad; pass {skip} to go on", options=[skip])
        >>> str(err), err.options[0].name
        ("site x is bad; pass on_error='skip' to go on", 'on_error')
    """

    def __init__(self, *args: object, options: Iterable[Option] = ()) -> None:
        super().__init__(*args)
        # An attribute, so pickling keeps it (BaseException pickles args and __dict__).
        self.options: tuple[Option, ...] = tuple(options)


class OptionsError(RxDataError, ValueError):
    """An options value is out of range or of the wrong kind (names the field and the value).

    Example:
        >>> err = OptionsError("seed=-1 must be >= 0", options=[Option("seed", -1)])
        >>> err.option, err.value
        ('seed', -1)
    """

    @property
    def option(self) -> str | None:
        """The name of the option at fault (the first one the message names), if known."""
        return self.options[0].name if self.options else None

    @property
    def value(self) -> object:
        """The value of the option at fault (``None`` when :attr:`option` is)."""
        return self.options[0].value if self.options else None


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


class IncompleteConversionError(RxDataError, RuntimeError):
    """A conversion folder was read before its conversion finished (or while it runs)."""


class UnguardedMainError(RxDataError, RuntimeError):
    """Worker processes would re-run the calling script (no ``__main__`` guard)."""


class UnreachableError(RxDataError, ConnectionError):
    """A server (e.g. a tf.data service dispatcher) did not answer at its address in time."""
