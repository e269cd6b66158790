"""The top-level API: a small ``rxdata.__all__``, every public module an attribute, and the
names typed for type checkers (the ``if TYPE_CHECKING:`` block mirrors the lazy tables; mypy
checks the types themselves on tests/type_probe.py in ``make lint``)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import rxdata

INIT = Path(rxdata.__file__)


def test_top_level_is_small_and_has_one_error_class():
    names = set(rxdata.__all__) - {"__version__"}
    assert 25 <= len(names) <= 35, sorted(names)
    errors = importlib.import_module("rxdata.errors")
    error_names = {n for n in names if isinstance(getattr(rxdata, n), type)} & set(errors.__all__)
    assert error_names == {"RxDataError"}


@pytest.mark.parametrize("name", sorted(rxdata._EXPORTS))
def test_each_exported_name_is_its_modules_object(name):
    module = importlib.import_module(f"rxdata.{rxdata._EXPORTS[name]}")
    assert getattr(rxdata, name) is getattr(module, name)
    assert name in module.__all__, f"rxdata.{module.__name__}.__all__ lacks {name}"


def test_errors_stay_importable_from_rxdata_errors():
    from rxdata.errors import ImageNotFoundError, ParseError, RxDataError

    assert issubclass(ParseError, RxDataError) and issubclass(ImageNotFoundError, RxDataError)
    assert rxdata.errors.ParseError is ParseError  # submodules load on attribute access


@pytest.mark.parametrize("name", ["nope", "WellKey", "ParseError", "write_tfrecords", "_MOVED"])
def test_unknown_or_removed_name_is_an_attribute_error(name):
    with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
        getattr(rxdata, name)


def test_dir_lists_the_public_modules_and_names():
    listed = set(dir(rxdata))
    assert set(rxdata.__all__) <= listed and listed >= rxdata._SUBMODULES


def _type_checking_imports() -> dict[str, str]:
    """``name -> module`` of the imports under ``if TYPE_CHECKING:`` in rxdata/__init__.py."""
    tree = ast.parse(INIT.read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    ]
    out: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.dump(node)
        for alias in node.names:
            # `import x as x` is the re-export form type checkers honour
            assert alias.asname == alias.name, f"write `{alias.name} as {alias.name}`"
            out[alias.name] = node.module
    return out


def test_type_checking_block_mirrors_the_lazy_tables():
    """mypy reads the TYPE_CHECKING imports; the run time reads _EXPORTS/_SUBMODULES."""
    typed = _type_checking_imports()
    expected = {name: f"rxdata.{module}" for name, module in rxdata._EXPORTS.items()}
    expected |= dict.fromkeys(rxdata._SUBMODULES, "rxdata")
    assert typed == expected


@pytest.mark.subprocess
def test_import_rxdata_is_cheap_and_every_public_module_is_reachable():
    code = (
        "import sys, rxdata\n"
        "assert 'tensorflow' not in sys.modules, 'import rxdata imported TensorFlow'\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('rxdata.'))\n"
        "assert loaded == [], loaded\n"
        "for name in sorted(rxdata._SUBMODULES):\n"
        "    assert getattr(rxdata, name).__name__ == 'rxdata.' + name\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
