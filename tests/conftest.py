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
* ``small_kaggle`` -> ``Path`` of a session-wide, smaller synthetic data set in the Kaggle
  layout, written with :data:`SMALL_OPTIONS`, for tests that convert it (often on a private
  copy they damage): 2 train experiments (HEPG2-01, U2OS-01) and 1 test experiment
  (HEPG2-02), 1 plate each, 3 wells per plate (the untreated ``B02``, 1 positive control,
  1 siRNA; the test siRNA well is unlabelled), 2 sites, all 6 channels: 18 sites (12
  train, 6 test), 108 PNGs. Its images are 12 px high and 10 px wide: not square, so a
  swapped height and width fails a test. Find a site in it with ``helpers.find_site``.
* ``small_full`` -> the same data set in the full-release layout.
* ``small_copy`` -> a private copy of ``small_kaggle`` under ``tmp_path / "data"``, to damage.

Treat the session fixtures as read-only: copy them (``shutil.copytree``, or ``small_copy``)
before modifying anything, or generate your own with ``generate(tmp_path, TINY_OPTIONS,
...)``. Tests derive the ids and counts they expect from the data's metadata
(``read_metadata(root)``), never from a hand-written list of the sites.
"""

from __future__ import annotations

import os
import shutil
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
#: Options of the ``small_kaggle`` / ``small_full`` fixtures (see the module docstring).
SMALL_OPTIONS = SyntheticOptions.tiny(
    experiments=(("HEPG2", 1, 1), ("U2OS", 1, 0)),
    plates=1,
    sirnas_per_plate=1,
    positive_controls=1,
    image_size=12,
    image_width=10,
    seed=7,
)


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


@pytest.fixture(scope="session")
def small_kaggle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller synthetic data set in the Kaggle layout (read-only; see module docstring)."""
    return generate(tmp_path_factory.mktemp("small_kaggle"), SMALL_OPTIONS)


@pytest.fixture(scope="session")
def small_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``small_kaggle`` data set in the full-release layout (images/ + metadata.csv)."""
    return generate(tmp_path_factory.mktemp("small_full"), SMALL_OPTIONS, layout="full")


@pytest.fixture
def small_copy(small_kaggle: Path, tmp_path: Path) -> Path:
    """A private copy of ``small_kaggle`` (``tmp_path / "data"``) for a test to damage."""
    return Path(shutil.copytree(small_kaggle, tmp_path / "data"))
