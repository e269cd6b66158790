"""A griffe extension that lets the API reference render rxdata's docstrings well.

rxdata's docstrings follow the Google style with an ``Example:`` section (singular) and
sometimes Sphinx roles such as ``:func:`read_metadata```. Griffe's Google parser knows only
``Examples:`` and renders an unknown section as an admonition whose ``>>>`` lines become
nested quotes; Sphinx roles come out as literal ``:func:`` text. This extension rewrites
both before parsing, on the documentation side only: the source and its doctests are
unchanged. mkdocs.yml loads it (plugins > mkdocstrings > python > options > extensions).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj|const):`~?(?P<name>[^`]+)`")


def rewrite(text: str) -> str:
    """Return ``text`` with ``Example:`` sections renamed and Sphinx roles made code spans.

    Example:
        >>> rewrite("Summary.\\n\\nExample:\\n    >>> f()\\n")
        'Summary.\\n\\nExamples:\\n    >>> f()\\n'
        >>> rewrite("See :func:`~rxdata.metadata.read_metadata`.")
        'See `rxdata.metadata.read_metadata`.'
    """
    text = _EXAMPLE.sub(r"\g<indent>Examples:", text)
    return _ROLE.sub(r"`\g<name>`", text)


class RxdataDocstrings(griffe.Extension):
    """Rewrite each docstring with `rewrite` once the object tree is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of one loaded object."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
