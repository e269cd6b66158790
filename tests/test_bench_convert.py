"""benchmarks/bench_convert.py's step breakdown runs and times every step it names.

The figures themselves (docs/performance.md) are not checked: timings are not tests.
"""

from __future__ import annotations

from pathlib import Path

from helpers import benchmark_module

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _bench():
    return benchmark_module("bench_convert")


def test_the_breakdown_times_each_step_of_a_real_png_site(real_root, tmp_path, capsys, monkeypatch):
    bench = _bench()
    monkeypatch.setattr(bench, "REAL", real_root)
    images, md = bench.real_sites(tmp_path / "real", 4)
    bench.breakdown(images, md, tmp_path, 1)
    lines = [line for line in capsys.readouterr().out.splitlines() if "ms/site" in line]
    names = [line.rsplit(None, 2)[0].strip() for line in lines]
    assert "PNG check, inspect_png (all of it)" in names
    assert "IDAT inflate alone, ISA-L (used)" in names and "content hash, XXH3-64 (used)" in names
    assert all(float(line.split()[-2]) > 0 for line in lines)


def test_the_inflate_helper_counts_what_the_png_check_counts() -> None:
    import zlib

    from isal import isal_zlib

    raw = bytes(range(256)) * 1000
    for module in (zlib, isal_zlib):
        assert _bench()._inflate(module, zlib.compress(raw)) == len(raw)
