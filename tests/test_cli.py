"""Tests for the ``rxdata-convert`` and ``rxdata verify`` command lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import SITE_ID, make_data, shard_bytes, site_png
from rxdata.cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    convert_main,
    main,
)
from rxdata.conversion import MANIFEST_NAME, REPORT_NAME, ConvertOptions


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("cli"), "kaggle")


def test_help_explains_every_option_with_its_default(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        convert_main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    options = [
        "--metadata",
        "--strategy",
        "--sites-per-shard",
        "--seed",
        "--encoding",
        "--compression",
        "--datasets",
        "--no-controls",
        "--workers",
        "--on-error",
        "--runner",
        "--beam-option",
        "--overwrite",
        "--verify",
        "--decode",
        "--no-scan",
    ]
    for option in options:
        assert option in text
    d = ConvertOptions()
    assert f"(default: {d.sites_per_shard}," in text and f"(default: {d.seed})" in text
    assert "(default: random)" in text and "(default: png)" in text
    assert "(default: none;" in text and "(default: raise)" in text
    assert text.count("default") >= len(options)


def test_usage_errors_exit_2(capsys) -> None:
    for argv in (["only-one-path"], ["a", "b", "--encoding", "jpeg"], ["a", "b", "c"]):
        with pytest.raises(SystemExit) as exit_:
            convert_main(argv)
        assert exit_.value.code == EXIT_USAGE


def test_convert_then_verify_ok(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = [str(root), str(out), "--workers", "1", "--sites-per-shard", "4", "--verify"]
    assert convert_main(argv) == EXIT_OK
    captured = capsys.readouterr().out
    assert "wrote 14 sites in 4 shards" in captured and ": OK, 4 shards, 14 sites" in captured
    assert main(["verify", str(out), "--decode"]) == EXIT_OK
    assert convert_main(["--verify", str(out)]) == EXIT_OK


def test_options_reach_the_library(root, tmp_path) -> None:
    out = tmp_path / "out"
    argv = [
        str(root),
        str(out),
        "--workers",
        "1",
        "--strategy",
        "by_experiment",
        "--seed",
        "7",
        "--encoding",
        "raw",
        "--compression",
        "gzip",
        "--datasets",
        "train",
        "--no-controls",
        "--no-scan",
    ]
    assert convert_main(argv) == EXIT_OK
    assert sorted(shard_bytes(out)) == [
        "by_experiment-7/train/HEPG2-01.tfrecord",
        "by_experiment-7/train/U2OS-01.tfrecord",
    ]
    import json

    options = json.loads((out / MANIFEST_NAME).read_text())["options"]
    assert options["encoding"] == "raw" and options["compression"] == "gzip"
    assert options["include_controls"] is False and options["datasets"] == ["train"]


def test_verify_mismatch_exits_3(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert convert_main([str(root), str(out), "--workers", "1"]) == EXIT_OK
    shard = sorted(out.rglob("*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes() + b"junk")
    capsys.readouterr()
    assert main(["verify", str(out)]) == EXIT_VERIFY_FAILED
    report = capsys.readouterr().out
    assert "problem(s)" in report and shard.name in report and "sha256" in report
    assert convert_main(["--verify", str(out)]) == EXIT_VERIFY_FAILED
    assert main(["verify", str(tmp_path / "none")]) == EXIT_ERROR


def test_bad_input_exit_codes(tmp_path, capsys) -> None:
    data = make_data(tmp_path / "data", "kaggle")
    site_png(data, 2).unlink()
    assert convert_main([str(data), str(tmp_path / "a"), "--workers", "1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "rxdata-convert: error:" in err and "C04_s1_w2.png" in err
    out = tmp_path / "b"
    argv = [str(data), str(out), "--workers", "1", "--on-error", "skip"]
    assert convert_main(argv) == EXIT_SKIPPED
    assert SITE_ID in (out / REPORT_NAME).read_text()
    assert "skipped 1" in capsys.readouterr().err
    # a different sites-per-shard is refused: exit 1 and a message naming --overwrite
    assert convert_main([*argv, "--sites-per-shard", "2"]) == EXIT_ERROR
    assert "--overwrite" in capsys.readouterr().err
    assert convert_main([*argv, "--sites-per-shard", "2", "--overwrite"]) == EXIT_SKIPPED


# --- interruption: kill -9 the command (or one of its workers) and re-run it ----------------

# Loaded by every process of the run (the command and its spawned workers) through
# PYTHONPATH: each site takes 0.15 s longer, so the test can kill the run part-way.
SLOW_SITECUSTOMIZE = textwrap.dedent(
    """
    import time
    import rxdata.conversion.shard as conv
    _real = conv.load_site
    def _slow(ctx, row):
        time.sleep(0.15)
        return _real(ctx, row)
    conv.load_site = _slow
    """
)
CLI = "import sys; from rxdata.cli import convert_main; sys.exit(convert_main(sys.argv[1:]))"


def _workers(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.append(int(child))
    return found


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
@pytest.mark.parametrize("victim", ["main", "worker", "ctrl-c"])
def test_kill_9_then_resume_is_byte_identical(root, tmp_path, victim) -> None:
    # main: kill -9 the command; worker: kill -9 one worker process; ctrl-c: SIGINT to the
    # whole process group, as a terminal sends it.
    reference = tmp_path / "reference"
    common = ["--sites-per-shard", "2", "--encoding", "raw"]
    assert convert_main([str(root), str(reference), "--workers", "1", *common]) == EXIT_OK

    out = tmp_path / "out"
    workers = "1" if victim == "main" else "2"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_SITECUSTOMIZE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(hook)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, str(root), str(out), "--workers", workers, *common],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, for the ctrl-c case
    )
    try:
        progress = out / "_progress"
        _wait_for(lambda: progress.exists() and any(progress.iterdir()))
        if victim == "main":
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        elif victim == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(60) == EXIT_INTERRUPTED
            assert b"interrupted; re-run the same command to resume" in proc.stderr.read()
        else:
            workers_ = _workers(proc.pid)
            assert workers_
            os.kill(workers_[0], signal.SIGKILL)
            assert proc.wait(60) == EXIT_ERROR
            assert b"worker process died" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    written = shard_bytes(out)
    assert 0 < len(written) < len(shard_bytes(reference))  # stopped part-way
    assert main(["verify", str(out)]) == EXIT_VERIFY_FAILED

    assert convert_main([str(root), str(out), "--workers", "1", *common]) == EXIT_OK
    assert shard_bytes(out) == shard_bytes(reference)
    assert (out / MANIFEST_NAME).read_bytes() == (reference / MANIFEST_NAME).read_bytes()
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == []  # stale temp files removed
    assert main(["verify", str(out), "--decode"]) == EXIT_OK


# ------------------------------------------------------------------ rxdata show (naming)
def _full_release_site(root: Path, experiment: str = "HUVEC-01") -> Path:
    """One complete site of the full release: {root}/images/{experiment}/Plate2/B02_s1_w*."""
    import numpy as np
    from PIL import Image

    folder = root / "images" / experiment / "Plate2"
    folder.mkdir(parents=True)
    for c in range(1, 7):
        Image.fromarray(np.full((8, 8), 20 * c, np.uint8)).save(folder / f"B02_s1_w{c}.png")
    (root / "metadata.csv").write_text("site_id\n")
    return root


@pytest.mark.parametrize("spelling", ["HUVEC-1", "HUVEC-01"])
@pytest.mark.parametrize("where", ["root", "images-folder"])
def test_show_finds_full_release_site_in_either_spelling(tmp_path, capsys, spelling, where):
    """``rxdata show HUVEC-1 ...`` on a full-release root once built
    ``images/images/HUVEC-1/...``: the experiment is found as spelled on disk, and a root
    that points at the images/ folder itself is understood."""
    root = _full_release_site(tmp_path / "data")
    given = root if where == "root" else root / "images"
    out = tmp_path / "site.png"
    argv = ["show", spelling, "2", "B02", "--site", "1", "--root", str(given), "--out", str(out)]
    assert main(argv) == EXIT_OK
    assert out.read_bytes()[:4] == b"\x89PNG"
