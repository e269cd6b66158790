"""A griffe extension that lets the API reference render rxdata's docstrings well.

rxdata's docstrings follow the Google style with an ``Example:`` section (singular) and
use Sphinx roles such as ``:func:`read_metadata```. Griffe's Google parser knows only
``Examples:`` and renders an unknown section as an admonition whose ``>>>`` lines become
nested quotes; Sphinx roles come out as literal ``:func:`` text. Once the package is
loaded, this extension rewrites every docstring, on the documentation side only (the
source and its doctests are unchanged):

* ``Example:`` becomes ``Examples:``, so examples render as highlighted code;
* a Sphinx role becomes a link to the object's entry in the API reference when the name
  resolves to an object that the reference renders (public, documented, on a module page
  in ``docs/api/``), and a code span otherwise (external names such as
  ``scipy.optimize.linear_sum_assignment``). Only resolvable links are made, so the strict
  build never fails on a role.

mkdocs.yml loads it (plugins > mkdocstrings > python > options > extensions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(
    r":(?:py:)?(?:func|class|meth|attr|data|mod|exc|obj|const):`(?P<tilde>~?)(?P<name>[^`]+)`"
)
API_PAGES = Path(__file__).resolve().parents[1] / "docs" / "api"

try:  # public name -> module of rxdata's lazy top-level API (rxdata.read_metadata etc.)
    from rxdata import _EXPORTS
except ImportError:  # pragma: no cover - building the docs without the package installed
    _EXPORTS = {}


def rewrite(text: str, resolve: Callable[[str], str | None] = lambda name: None) -> str:
    """Return ``text`` with ``Example:`` sections renamed and Sphinx roles rewritten.

    Args:
        text: A docstring.
        resolve: Maps a name written in a role to the identifier of its API reference
            entry, or None when it has none (the role then becomes a code span).

    Example:
        >>> rewrite("Summary.\\n\\nExample:\\n    >>> f()\\n")
        'Summary.\\n\\nExamples:\\n    >>> f()\\n'
        >>> rewrite("See :func:`~rxdata.metadata.read_metadata`.")
        'See `read_metadata`.'
        >>> rewrite("See :func:`f`.", {"f": "pkg.mod.f"}.get)
        'See [`f`][pkg.mod.f].'
    """
    text = _EXAMPLE.sub(r"\g<indent>Examples:", text)

    def role(match: re.Match[str]) -> str:
        name = match["name"].strip()
        shown = name.rsplit(".", 1)[-1] if match["tilde"] else name
        target = resolve(name)
        return f"[`{shown}`][{target}]" if target else f"`{shown}`"

    return _ROLE.sub(role, text)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _documented_pages() -> set[str]:
    return {f"rxdata.{page.stem}" for page in API_PAGES.glob("*.md") if page.stem != "index"}


def _rendered(obj: griffe.Object, pages: set[str]) -> bool:
    """Whether the API reference renders ``obj`` (so a link to it resolves)."""
    if obj.module.path not in pages or obj.is_module:
        return False
    node: griffe.Object = obj
    while not node.is_module:
        if node.name.startswith("_") or not node.docstring:
            return False
        node = node.parent  # type: ignore[assignment]
    return True


def _resolver(package: griffe.Object, context: griffe.Object, pages: set[str]) -> Any:
    scopes = [context.path]
    parent = context
    while not parent.is_module:
        parent = parent.parent  # type: ignore[assignment]
        scopes.append(parent.path)
    scopes.append(package.path)

    def resolve(name: str) -> str | None:
        candidates = [name] if name.startswith(f"{package.path}.") else []
        top, _, rest = name.removeprefix(f"{package.path}.").partition(".")
        if name.startswith(f"{package.path}.") and top in _EXPORTS:  # rxdata.read_metadata
            candidates.append(".".join(filter(None, [package.path, _EXPORTS[top], top, rest])))
        candidates += [f"{scope}.{name}" for scope in scopes]
        for candidate in candidates:
            relative = candidate.removeprefix(f"{package.path}.")
            try:
                found = package[relative]
                target = found.final_target if found.is_alias else found
            except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
            return target.path if _rendered(target, pages) else None
        return None

    return resolve


class RxdataDocstrings(griffe.Extension):
    """Rewrite every docstring of the package with `rewrite` once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of the whole package (the tree is complete here)."""
        pages = _documented_pages()
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, _resolver(pkg, obj, pages))
