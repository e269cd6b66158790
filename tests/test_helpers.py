"""The shared test data is the same in every process (shards compared across runs rely on it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import pixels

TESTS = Path(__file__).resolve().parent


@pytest.mark.subprocess
def test_pixels_are_the_same_in_a_fresh_process_with_another_hash_seed() -> None:
    code = "from helpers import pixels; print(pixels('HEPG2-01_1_B03_1', 4).tobytes().hex())"
    env = {**os.environ, "PYTHONHASHSEED": "4321", "PYTHONPATH": str(TESTS)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert bytes.fromhex(out) == pixels("HEPG2-01_1_B03_1", 4).tobytes()


def test_pixels_differ_by_site_and_channel() -> None:
    a, b, c = pixels("A-01_1_B03_1", 1), pixels("A-01_1_B03_1", 2), pixels("A-01_1_B03_2", 1)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
