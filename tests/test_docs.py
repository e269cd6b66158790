"""The documentation is tested like code.

What this file checks:

* Every runnable code block in ``docs/**/*.md``, ``examples/*.md`` and ``README.md`` runs.
  The blocks of one page run in order in one shared namespace (like a notebook), in a fresh
  temporary working directory. A block runs when its fence says ``python`` or ``py``; a
  block whose first line starts with ``>>>`` (or a ``pycon`` block) runs as a doctest, so
  its printed output is compared too. Blocks in other languages (``bash``, ``text``,
  ``yaml``) are not run.
* To show code that cannot run in the suite (it needs a GPU/TPU, ``gs://`` or the real
  data set), put an HTML comment on the line before its fence, naming the reason; the
  comment is invisible on the site::

      <!-- skip: needs a TPU -->
      ```python
      strategy = tf.distribute.TPUStrategy(resolver)
      ```

  Keep such blocks few and short, and show a runnable synthetic-data version next to them.
* Every public name in ``rxdata.__all__`` imports, has a docstring and appears in the API
  reference (``docs/api/``); ``mkdocs.yml``'s nav lists every page and only pages that
  exist; the version is written in one place.

Docstring examples in ``src/rxdata`` run separately, as doctests (``--doctest-modules``).
"""

from __future__ import annotations

import doctest
import importlib.metadata
import importlib.util
import json
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rxdata

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_DIR = DOCS / "api"
TOOLS = ROOT / "tools"
RUNNABLE = {"python", "py", "pycon"}

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_SKIP = re.compile(r"^\s*<!--\s*skip\b\s*:?\s*(?P<reason>.*?)\s*-->\s*$")


class MarkdownError(ValueError):
    """A markdown page whose fences cannot be parsed (e.g. an unclosed code block)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown page.

    Attributes:
        lang: First word of the fence's info string, lower-cased ("" when absent).
        code: The block's text with the fence's indentation removed.
        line: 1-based line number of the block's first code line in the page.
        skip: The reason given by a ``<!-- skip: ... -->`` marker, or None.
    """

    lang: str
    code: str
    line: int
    skip: str | None

    @property
    def runnable(self) -> bool:
        """Whether the suite runs this block."""
        return self.lang in RUNNABLE and self.skip is None

    @property
    def is_doctest(self) -> bool:
        """Whether the block is an interactive session (``>>>``) checked like a doctest."""
        return self.lang == "pycon" or self.code.lstrip().startswith(">>>")


def extract_blocks(text: str, source: str = "<markdown>") -> list[Block]:
    """Return the fenced code blocks of a CommonMark page, in order.

    Args:
        text: The page's markdown.
        source: Name of the page, for error messages.

    Raises:
        MarkdownError: A fence is opened and never closed.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        words = match["info"].strip().split()
        lang = words[0].lower().lstrip("{.").rstrip("}") if words else ""
        previous = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        skip_match = _SKIP.match(previous)
        skip = (skip_match["reason"] or "no reason given") if skip_match else None
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        if j == len(lines):
            raise MarkdownError(f"{source}:{i + 1}: code fence {fence!r} is never closed")
        blocks.append(Block(lang, "\n".join(body) + "\n", i + 2, skip))
        i = j + 1
    return blocks


def _markdown_pages() -> list[Path]:
    pages = [*sorted(DOCS.rglob("*.md")), *sorted((ROOT / "examples").glob("*.md"))]
    readme = ROOT / "README.md"
    return [*pages, readme] if readme.exists() else pages


def _pages_with_runnable_blocks() -> Iterator[Any]:
    for page in _markdown_pages():
        blocks = extract_blocks(page.read_text(encoding="utf-8"), str(page))
        if any(block.runnable for block in blocks):
            yield pytest.param(page, id=str(page.relative_to(ROOT)))


def run_page(page: Path) -> None:
    """Run the runnable blocks of ``page`` in order, in one namespace."""
    rel = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for block in extract_blocks(page.read_text(encoding="utf-8"), str(rel)):
        if not block.runnable:
            continue
        where = f"{rel}:{block.line}"
        if block.is_doctest:
            test = doctest.DocTestParser().get_doctest(
                block.code, namespace, where, str(rel), block.line - 1
            )
            report: list[str] = []
            runner = doctest.DocTestRunner(optionflags=flags)
            result = runner.run(test, out=report.append, clear_globs=False)
            if result.failed:
                pytest.fail(f"example at {where} failed:\n{''.join(report)}", pytrace=False)
            continue
        # Pad with blank lines so tracebacks point at the line in the markdown page.
        code = compile("\n" * (block.line - 1) + block.code, str(rel), "exec")
        try:
            exec(code, namespace)
        except Exception:
            pytest.fail(f"example at {where} failed:\n{traceback.format_exc()}", pytrace=False)


@pytest.mark.parametrize("page", list(_pages_with_runnable_blocks()))
def test_markdown_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        run_page(page)
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


# --- the block extractor itself -------------------------------------------------------------


def test_extract_blocks_languages_lines_and_skip_markers() -> None:
    text = (
        "# Title\n"  # 1
        "```python\n"  # 2
        "x = 1\n"  # 3
        "```\n"  # 4
        "<!-- skip: needs a TPU -->\n"  # 5
        "\n"  # 6
        "```py title='tpu.py'\n"  # 7
        "tpu()\n"  # 8
        "```\n"  # 9
        "~~~~bash\n"  # 10
        "make test\n"  # 11
        "```\n"  # 12  (a shorter/other fence does not close a ~~~~ fence)
        "~~~~\n"  # 13
        "!!! note\n"  # 14
        "    ```pycon\n"  # 15
        "    >>> 1 + 1\n"  # 16
        "    2\n"  # 17
        "    ```\n"  # 18
        "```\n"  # 19
        "plain\n"  # 20
        "```\n"  # 21
        "<!-- skip -->\n"  # 22
        "```python\n"  # 23
        "y = 2\n"  # 24
        "```\n"  # 25
    )
    blocks = extract_blocks(text)
    assert [(b.lang, b.line, b.skip) for b in blocks] == [
        ("python", 3, None),
        ("py", 8, "needs a TPU"),
        ("bash", 11, None),
        ("pycon", 16, None),
        ("", 20, None),
        ("python", 24, "no reason given"),
    ]
    assert blocks[2].code == "make test\n```\n"
    assert blocks[3].code == ">>> 1 + 1\n2\n"
    assert [b.runnable for b in blocks] == [True, False, False, True, False, False]
    assert blocks[3].is_doctest and not blocks[0].is_doctest


def test_extract_blocks_rejects_an_unclosed_fence() -> None:
    with pytest.raises(MarkdownError, match=r"page\.md:3: code fence '```' is never closed"):
        extract_blocks("text\n\n```python\nx = 1\n", "page.md")


_code_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=30
).filter(lambda s: not _FENCE_OPEN.match(s))


@given(
    code=st.lists(_code_line, min_size=1, max_size=6),
    indent=st.sampled_from(["", "  ", "    "]),
    fence=st.sampled_from(["```", "````", "~~~"]),
    lead=st.lists(st.sampled_from(["text", "", "# heading", "- item"]), max_size=4),
)
def test_extract_blocks_round_trips_any_code(
    code: list[str], indent: str, fence: str, lead: list[str]
) -> None:
    page = [*lead, f"{indent}{fence}python", *(f"{indent}{c}" for c in code), f"{indent}{fence}"]
    (block,) = extract_blocks("\n".join(page) + "\n")
    assert block.code == "\n".join(code) + "\n"
    assert block.line == len(lead) + 2
    assert block.lang == "python"


def test_run_page_reports_the_failing_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\n```\n\n```python\ny = x\nraise RuntimeError(y)\n```\n")
    with pytest.raises(pytest.fail.Exception, match=r"page\.md:6 failed") as info:
        run_page(page)
    assert 'page.md", line 7' in str(info.value)  # the traceback names the markdown line


def test_run_page_checks_doctest_output(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 2\n```\n\n```pycon\n>>> x * 2\n5\n```\n")
    with pytest.raises(pytest.fail.Exception, match=r"Expected:\s+5\s+Got:\s+4"):
        run_page(page)


# --- public API, reference pages, nav and version -------------------------------------------


def _public_names() -> list[str]:
    return [name for name in rxdata.__all__ if name != "__version__"]


def test_every_public_name_imports() -> None:
    missing = []
    for name in _public_names():
        try:
            getattr(rxdata, name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{name} (rxdata.{rxdata._EXPORTS[name]}): {exc}")
    assert not missing, "public names that do not import:\n" + "\n".join(missing)


def test_every_public_name_has_a_docstring() -> None:
    # Read statically, like the API reference does: constants such as RGB_MAP are documented
    # by a string literal under their assignment, which only the source shows.
    griffe = pytest.importorskip("griffe")
    package = griffe.load("rxdata", search_paths=[str(ROOT / "src")], allow_inspection=False)
    undocumented = []
    for name in _public_names():
        module = rxdata._EXPORTS[name]
        try:
            obj = package[f"{module}.{name}"]
            docstring = obj.docstring.value.strip() if obj.docstring else ""
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            docstring = ""
        if not docstring:
            undocumented.append(f"rxdata.{module}.{name}")
    assert not undocumented, "public names without a docstring:\n" + "\n".join(undocumented)


def test_every_public_function_and_class_shows_a_runnable_example() -> None:
    # CONTRIBUTING: every public function and class has an ``Example:`` that runs (as a
    # doctest). Constants and the error classes are exempt.
    griffe = pytest.importorskip("griffe")
    package = griffe.load("rxdata", search_paths=[str(ROOT / "src")], allow_inspection=False)
    without = []
    for name in _public_names():
        module = rxdata._EXPORTS[name]
        try:
            obj = package[f"{module}.{name}"]
        except KeyError:
            continue  # reported by test_every_public_name_has_a_docstring
        if obj.is_attribute or module == "errors":
            continue
        if ">>>" not in (obj.docstring.value if obj.docstring else ""):
            without.append(f"rxdata.{module}.{name}")
    assert not without, "public names whose docstring has no >>> example:\n" + "\n".join(without)


def test_no_docstring_example_is_skipped() -> None:
    # An example marked "doctest: +SKIP" is shown on the site but never run, so it can rot.
    # Run it on synthetic data instead (conftest.py gives every doctest a temp cwd).
    skipped = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "src" / "rxdata").glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"doctest:.*\+SKIP", line)
    ]
    assert not skipped, "docstring examples that never run:\n" + "\n".join(skipped)


def test_every_public_name_is_in_the_api_reference() -> None:
    index = (API_DIR / "index.md").read_text(encoding="utf-8")
    problems = []
    for name in _public_names():
        module = rxdata._EXPORTS[name]
        if f"[{name}][rxdata.{module}.{name}]" not in index:
            problems.append(f"docs/api/index.md lacks [{name}][rxdata.{module}.{name}]")
    for module in sorted(set(rxdata._EXPORTS.values())):
        page = API_DIR / f"{module}.md"
        if not page.exists() or f"::: rxdata.{module}" not in page.read_text(encoding="utf-8"):
            problems.append(f"docs/api/{module}.md should render ::: rxdata.{module}")
    assert not problems, "\n".join(problems)


def _nav_files(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        if not re.match(r"^[a-z][a-z0-9+.-]*://", node):
            yield node
    elif isinstance(node, list):
        for item in node:
            yield from _nav_files(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _nav_files(value)


def test_nav_lists_every_page_and_only_existing_ones() -> None:
    yaml = pytest.importorskip("yaml")  # installed with the docs extra (mkdocs)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = list(_nav_files(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(set(nav) - pages) == [], "nav entries without a page"
    assert sorted(pages - set(nav)) == [], "pages missing from the nav in mkdocs.yml"
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav"


def test_version_is_written_in_one_place() -> None:
    installed = importlib.metadata.version("rxdata")
    assert rxdata.__version__ == installed
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert project["project"]["version"] == installed, "reinstall: pip install -e ."
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[{re.escape(installed)}\]", changelog, re.M), (
        f"CHANGELOG.md has no '## [{installed}]' section"
    )


def test_docs_figures_exist() -> None:
    # Every picture a page shows is committed (tools/gen_figures.py regenerates them).
    missing = []
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, "\n".join(missing)


# --- the documentation's own tools and facts ------------------------------------------------


def _load_tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_griffe_extension_renders_example_sections_and_sphinx_roles() -> None:
    ext = _load_tool("griffe_rxdata")
    assert doctest.testmod(ext, optionflags=doctest.ELLIPSIS).failed == 0
    text = "Do it.\n\n    Example:\n        >>> 1\n\nSee :class:`~rxdata.Split` and :func:`f`."
    assert ext.rewrite(text) == "Do it.\n\n    Examples:\n        >>> 1\n\nSee `Split` and `f`."
    assert ext.rewrite("An example: of prose.") == "An example: of prose."


def test_griffe_extension_links_only_to_rendered_objects() -> None:
    griffe = pytest.importorskip("griffe")
    ext = _load_tool("griffe_rxdata")
    package = griffe.load(
        "rxdata",
        search_paths=[str(ROOT / "src")],
        allow_inspection=False,
        extensions=griffe.load_extensions(ext.RxdataDocstrings()),
    )
    pages = ext._documented_pages()
    links, leftovers = [], []
    for obj in ext._objects(package):
        text = obj.docstring.value if obj.docstring else ""
        leftovers += [obj.path for _ in ext._ROLE.finditer(text)]
        leftovers += [obj.path for _ in ext._EXAMPLE.finditer(text)]
        links += re.findall(r"\]\[(rxdata\.[\w.]+)\]", text)
    assert not leftovers, f"docstrings not rewritten: {sorted(set(leftovers))}"
    assert len(links) > 50, "roles such as :func:`read_metadata` should become links"
    for path in set(links):
        target = package[path.removeprefix("rxdata.")]
        assert ext._rendered(target, pages), f"link to {path}, which the reference does not show"


def test_dataset_card_counts_match_the_real_metadata(real_root: Path) -> None:
    sites = rxdata.read_metadata(real_root / "metadata")
    wells = sites.drop_duplicates("id_code")
    card = (DOCS / "dataset.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \**(train|test|all)\** \|\s*(\w*)\s*\|(.*)\|$", card, re.M)
    assert len(rows) == 11, "the counts table in docs/dataset.md changed shape"
    for dataset, cell_type, rest in rows:
        stated = [int(v.strip(" *").replace(",", "")) for v in rest.split("|")]
        part = wells if dataset == "all" else wells[wells["dataset"] == dataset]
        part = part[part["cell_type"] == cell_type] if cell_type else part
        treatment = int((part["well_type"] == "treatment").sum())
        actual = [part["experiment"].nunique(), treatment, len(part) - treatment, 2 * len(part)]
        assert stated == actual, f"docs/dataset.md row {dataset} {cell_type or 'total'}"


@pytest.mark.slow
def test_gen_figures_draws_from_the_library(real_root: Path, tmp_path: Path) -> None:
    gen = _load_tool("gen_figures")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "pipeline.json").write_text(
        json.dumps(
            {
                "title": "sites/s",
                "unit": "sites/s",
                "results": [
                    {"name": "rxrx1-utils input_fn", "value": 150, "baseline": True},
                    {"name": "rxdata", "value": 900},
                ],
            }
        )
    )
    timings = {"rgb_ms": {"reference formula (rxrx1-utils)": 40.0, "rxdata": 2.5}}
    (bench / "images.json").write_text(json.dumps(timings))
    out = tmp_path / "img"
    args = ["--real-root", str(real_root), "--out", str(out), "--bench-dir", str(bench)]
    assert gen.main(args) == 0
    figures = ["plate-groups.png", "plate-map.png", "split-counts.png"]
    charts = ["throughput-images.png", "throughput-pipeline.png"]
    assert sorted(p.name for p in out.glob("*.png")) == [*figures, *charts]
    for name in figures:
        assert (DOCS / "img" / name).exists(), f"run tools/gen_figures.py and commit {name}"
