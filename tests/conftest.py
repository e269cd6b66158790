"""Shared pytest fixtures for the rxdata suite.

Fixtures (use them instead of writing data sets by hand):

* ``real_root`` -> ``Path`` of the real RxRx1 sample files (``../shared/rxrx1-real``
  relative to the repository, or ``$RXDATA_REAL_ROOT``). Tests using it are skipped
  cleanly when the folder is absent (a user's checkout does not have it). It holds
  ``metadata/`` (the real Kaggle CSVs: 125,510 sites, 51 experiments) and ``images/``
  (180 real 512x512 PNGs in the Kaggle layout; the site-2 images have only channels 1-4).
* ``real_metadata_dir`` -> ``real_root / "metadata"`` (skips when absent).
* ``real_images_dir`` -> ``real_root / "images"`` (skips when absent).
* ``tiny_kaggle`` -> ``Path`` of a session-wide synthetic data set in the Kaggle layout
  (``train/``, ``test/``, ``train.csv``, ``test.csv``, ``train_controls.csv``,
  ``test_controls.csv``, ``sample_submission.csv``), written once by
  :func:`rxdata.synthetic.generate` with :data:`TINY_OPTIONS`:
  4 train experiments (HEPG2-01, HUVEC-01, RPE-01, U2OS-01) and 2 test experiments
  (HEPG2-02, HUVEC-02), 4 plates each, 7 wells per plate (4 siRNAs of the plate's group,
  2 positive controls, the untreated ``B02``), 2 sites, 32x32 px, all 6 channels:
  336 sites, 2,016 PNGs, written in about a second (a few on a busy machine).
* ``tiny_full`` -> the same data set in the full-release layout (``images/`` +
  ``metadata.csv``; test wells are labelled there).

Treat the session fixtures as read-only: copy them (``shutil.copytree``) before
modifying anything, or generate your own with ``generate(tmp_path, TINY_OPTIONS, ...)``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rxdata.synthetic import SyntheticOptions, generate

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Let the suite's child processes receive Ctrl-C even when it runs in the background.

    A shell starts a background job (``make test &``, ``nohup ... &``) with SIGINT
    ignored, and every process it starts inherits that: the Ctrl-C tests' commands then
    never see the SIGINT they are sent and the tests fail. With a handler installed here,
    ``exec`` resets SIGINT to its default in each child.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


#: Options of the ``tiny_kaggle`` / ``tiny_full`` fixtures (see the module docstring).
TINY_OPTIONS = SyntheticOptions.tiny(seed=7)


def _real_root() -> Path | None:
    candidates = [os.environ.get("RXDATA_REAL_ROOT"), REPO.parent / "shared" / "rxrx1-real"]
    for candidate in candidates:
        if candidate and Path(candidate, "metadata").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real RxRx1 sample files; skips the test when they are absent."""
    root = _real_root()
    if root is None:
        pytest.skip("real RxRx1 files not found (../shared/rxrx1-real or $RXDATA_REAL_ROOT)")
    return root


@pytest.fixture(scope="session")
def real_metadata_dir(real_root: Path) -> Path:
    """The real Kaggle CSVs (train.csv, test.csv, *_controls.csv, sample_submission.csv)."""
    path = real_root / "metadata"
    if not (path / "train.csv").is_file():
        pytest.skip(f"{path}/train.csv not found")
    return path


@pytest.fixture(scope="session")
def real_images_dir(real_root: Path) -> Path:
    """The 180 real PNGs in the Kaggle layout (train/ and test/)."""
    path = real_root / "images"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def tiny_kaggle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic data set in the Kaggle layout (read-only; see module docstring)."""
    return generate(tmp_path_factory.mktemp("tiny_kaggle"), TINY_OPTIONS)


@pytest.fixture(scope="session")
def tiny_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny data set in the full-release layout (images/ + metadata.csv)."""
    return generate(tmp_path_factory.mktemp("tiny_full"), TINY_OPTIONS, layout="full")
