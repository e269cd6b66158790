# Two commands matter: `make demo` and `make test`. Both work on a fresh machine with only
# Python 3 and make: they create .venv, install the project and its extras, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test check lint format docs bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,beam,examples,lint,docs,dask]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py --out demo-output

test: $(STAMP) lint docs
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The edit-test loop: unit tests and doctests, without the tests marked `cluster` (Beam,
# Dask) or `subprocess` (CLI scripts, examples, benchmarks run as programs) or `slow`.
# `make test` (what CI runs) still runs everything.
check: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not cluster and not subprocess and not slow"

lint: $(STAMP)
	$(BIN)/ruff check --no-cache src tests examples benchmarks tools
	$(BIN)/ruff format --no-cache --check src tests examples benchmarks tools README.md
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests examples benchmarks tools
	$(BIN)/ruff format src tests examples benchmarks tools

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) site demo-output bench-output .pytest_cache .mypy_cache .ruff_cache
