"""Small text helpers shared by the error messages of several modules (private module).

Functions here are public names of a private module: siblings may import them; users
should not.
"""

from __future__ import annotations

from collections.abc import Iterable


def preview(items: Iterable[object], limit: int = 8) -> str:
    """The first ``limit`` items as reprs, and how many there are when more are left out.

    Error messages name offending values without printing thousands of them.

    Example:
        >>> preview(["a", "b"])
        "'a', 'b'"
        >>> preview(range(10), 3)
        '0, 1, 2, ... (10 in all)'
    """
    shown = list(items)
    text = ", ".join(repr(x) for x in shown[:limit])
    if len(shown) > limit:
        text += f", ... ({len(shown)} in all)"
    return text
