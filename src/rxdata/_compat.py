"""Deprecation aliases: old public names that still work and say where they moved.

A private module with public function names: siblings call :func:`moved` from their
module-level ``__getattr__`` (PEP 562).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved(module: str, aliases: Mapping[str, tuple[str, Callable[[], Any]]], name: str) -> Any:
    """Resolve a deprecated name of ``module``, warning with its new location.

    Args:
        module: The module the old name was looked up in, e.g. ``"rxdata.pipeline"``.
        aliases: old name -> (new location, e.g. ``"rxdata.pipeline.LABEL_SPACES"``, a
            function returning the value).
        name: The name being looked up.

    Raises:
        AttributeError: ``name`` is not a deprecated alias (the normal message).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     moved("m", {"OLD": ("m.NEW", lambda: 1)}, "OLD")
        1
        >>> str(caught[0].message)
        'm.OLD is deprecated; use m.NEW'
    """
    entry = aliases.get(name)
    if entry is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new, value = entry
    warnings.warn(f"{module}.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=3)
    return value()
