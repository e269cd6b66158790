"""Root pytest configuration shared by the tests and the docstring examples.

Every ``Example:`` in ``src/rxdata`` runs as a doctest (``--doctest-modules`` in
``pyproject.toml``). This file makes those runs hermetic: each doctest starts in its own
empty temporary directory, so an example may write files (``write_split("fold.csv")``)
without touching the checkout, and matplotlib draws off-screen. Fixtures for the unit tests
live in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ logging quiet
os.environ.setdefault("MPLBACKEND", "Agg")  # no display on CI machines

# Hypothesis: no per-example deadline. The suite runs two workers on small shared CI machines,
# where a slow example means a busy machine, not a bug; tests that set their own deadline
# keep it. `HYPOTHESIS_PROFILE=dev` restores Hypothesis' defaults.
settings.register_profile("rxdata", deadline=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "rxdata"))

@pytest.fixture(autouse=True)
def _doctest_in_tmp_cwd(request: pytest.FixtureRequest) -> None:
    """Run each doctest in a fresh temporary working directory (other tests are untouched)."""
    if isinstance(request.node, pytest.DoctestItem):
        tmp_path: Path = request.getfixturevalue("tmp_path")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.chdir(tmp_path)
