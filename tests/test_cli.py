"""Tests for the ``rxdata`` command line (``convert``, ``verify``, ``synth``, ``show``) and
its ``rxdata-convert`` alias."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import find_site, read_png, shard_bytes
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
from rxdata.metadata import read_metadata

COMMANDS = ("synth", "convert", "verify", "stats", "show")


@pytest.fixture
def root(small_kaggle: Path) -> Path:
    """The small synthetic data set (conftest.SMALL_OPTIONS), read-only."""
    return small_kaggle


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
    for argv in (
        ["only-one-path"],
        ["a", "b", "--encoding", "jpeg"],
        ["a", "b", "c"],
        ["--verify", "out"],  # verifying alone is `rxdata verify OUTPUT_DIR`
    ):
        with pytest.raises(SystemExit) as exit_:
            convert_main(argv)
        assert exit_.value.code == EXIT_USAGE


def test_convert_then_verify_ok(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = [str(root), str(out), "--workers", "1", "--sites-per-shard", "4", "--verify"]
    assert convert_main(argv) == EXIT_OK
    md = read_metadata(root)
    n = len(md)
    shards = sum(math.ceil(k / 4) for k in md["dataset"].value_counts())  # per dataset
    captured = capsys.readouterr().out
    assert f"wrote {n} sites in {shards} shards" in captured
    assert f": OK, {shards} shards, {n} sites" in captured
    assert main(["verify", str(out), "--decode"]) == EXIT_OK


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
    md = read_metadata(root)
    treated = md[(md["dataset"] == "train") & (md["well_type"] == "treatment")]
    experiments = sorted(set(treated["experiment"]))
    assert len(experiments) > 1 and set(md["dataset"]) == {"train", "test"}
    assert sorted(shard_bytes(out)) == [
        f"by_experiment-7/train/{experiment}.tfrecord" for experiment in experiments
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
    assert "problem(s)" in report and shard.name in report and "xxh3_128 checksum" in report
    assert main(["verify", str(tmp_path / "none")]) == EXIT_ERROR


def test_bad_input_exit_codes(small_copy, tmp_path, capsys) -> None:
    data = small_copy
    site = find_site(data)
    site.png(2).unlink()
    assert convert_main([str(data), str(tmp_path / "a"), "--workers", "1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "rxdata-convert: error:" in err and f"{site.stem}_w2.png" in err
    out = tmp_path / "b"
    argv = [str(data), str(out), "--workers", "1", "--on-error", "skip"]
    assert convert_main(argv) == EXIT_SKIPPED
    assert site.site_id in (out / REPORT_NAME).read_text()
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
    def _slow(ctx, row, paths=None):
        time.sleep(0.15)
        return _real(ctx, row, paths)
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


@pytest.mark.subprocess
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


# ------------------------------------------------------------ one CLI: help, version
def test_help_lists_every_command_with_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        lines = [line for line in out.splitlines() if line.strip().startswith(command + " ")]
        assert len(lines) == 1, (command, out)
        assert len(lines[0].split()) > 3  # a summary follows the name


def test_version(capsys) -> None:
    import rxdata

    for run in (main, convert_main):
        with pytest.raises(SystemExit) as exit_:
            run(["--version"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.strip() == f"rxdata {rxdata.__version__}"


@pytest.mark.subprocess
def test_python_m_rxdata_cli_is_the_rxdata_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rxdata.cli", "verify", "nowhere"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_ERROR, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "rxdata: error: OUTPUT_DIR nowhere does not exist; check the path"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_shows_its_default(command, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:") :]
    # each option's help (from one "--flag" line to the next) says its default
    entries = [e for e in options.split("\n  -")[1:] if not e.startswith("h, --help")]
    assert entries
    for entry in entries:
        flat = " ".join(entry.split())
        if not flat.startswith("-version"):
            assert "default: " in flat or "is required)" in flat, (command, flat)


def test_convert_subcommand_is_the_alias(root, tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["convert", str(root), str(a), "--workers", "1", "--no-progress"]) == EXIT_OK
    assert convert_main([str(root), str(b), "--workers", "1", "--no-progress"]) == EXIT_OK
    assert shard_bytes(a) == shard_bytes(b)
    assert (a / MANIFEST_NAME).read_bytes() == (b / MANIFEST_NAME).read_bytes()


# ------------------------------------------------------- options reach the library
def _captured_convert(monkeypatch, argv: list[str]) -> dict[str, object]:
    import rxdata.conversion

    seen: dict[str, object] = {}

    def fake(images_root, output_dir, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop here; the CLI returns EXIT_INTERRUPTED

    monkeypatch.setattr(rxdata.conversion, "convert", fake)
    assert main(["convert", *argv]) == EXIT_INTERRUPTED
    return seen


def test_runner_progress_and_dask_flags_reach_the_library(root, tmp_path, monkeypatch) -> None:
    base = [str(root), str(tmp_path / "out")]
    seen = _captured_convert(monkeypatch, base)
    assert seen["progress"] is None and seen["runner"] == "local"
    assert "dask_address" not in seen  # passed only when given
    assert _captured_convert(monkeypatch, [*base, "--no-progress"])["progress"] is False
    assert _captured_convert(monkeypatch, [*base, "--progress"])["progress"] is True
    seen = _captured_convert(
        monkeypatch, [*base, "--runner", "dask", "--dask-address", "tcp://10.0.0.1:8786"]
    )
    assert seen["runner"] == "dask" and seen["dask_address"] == "tcp://10.0.0.1:8786"
    seen = _captured_convert(monkeypatch, [*base, "--image-shape", "12x10"])
    assert seen["image_shape"] == (12, 10) and seen["experiments"] is None


def test_dask_address_needs_the_dask_runner(root, tmp_path, capsys) -> None:
    # The rule lives in ConvertOptions alone; the command line words it with flags.
    assert main(["convert", str(root), str(tmp_path / "o"), "--dask-address", "tcp://x:1"]) == 1
    err = capsys.readouterr().err
    assert "--dask-address tcp://x:1 needs --runner dask, not --runner local" in err
    assert "runner=" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address", ["tcp://[::1", "tcp://[::1]:99999", "tcp://h:port"])
def test_malformed_dask_address_is_a_message(root, tmp_path, capsys, address) -> None:
    argv = ["convert", str(root), str(tmp_path / "o"), "--runner", "dask"]
    assert main([*argv, "--dask-address", address]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"--dask-address {address} is not a Dask scheduler address" in err
    assert "Traceback" not in err and "dask_address=" not in err


def test_dask_timeout_reaches_the_library(root, tmp_path, monkeypatch) -> None:
    base = [str(root), str(tmp_path / "out"), "--runner", "dask"]
    assert "dask_timeout" not in _captured_convert(monkeypatch, base)  # the library's default
    seen = _captured_convert(monkeypatch, [*base, "--dask-timeout", "2.5"])
    assert seen["dask_timeout"] == 2.5


@pytest.mark.parametrize("strategy", ["by_experiment", "by_exp_plate_site"])
def test_sites_per_shard_is_refused_where_it_would_be_ignored(
    root, tmp_path, capsys, strategy
) -> None:
    argv = ["convert", str(root), str(tmp_path / "o"), "--strategy", strategy]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--sites-per-shard", "10"])
    assert exit_.value.code == EXIT_USAGE
    assert "--sites-per-shard applies to --strategy random only" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spelling", ["HEPG2-1", "HEPG2-01"])
def test_convert_experiments_in_either_spelling(root, tmp_path, spelling) -> None:
    import json

    out = tmp_path / "out"
    argv = ["convert", str(root), str(out), "--workers", "1", "--experiments", spelling]
    assert main([*argv, "--datasets", "train"]) == EXIT_OK
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["options"]["experiments"] == ["HEPG2-01"]
    ids = [i for shard in manifest["shards"] for i in shard["site_ids"]]
    md = read_metadata(root)
    assert sorted(ids) == sorted(md[md["experiment"] == "HEPG2-01"].site_id)
    assert len(ids) < (md["dataset"] == "train").sum()  # the other experiment is left out
    assert main(["verify", str(out), "--metadata", str(root)]) == EXIT_OK


def test_convert_image_shape(root, tmp_path, capsys) -> None:
    import json

    height, width = read_png(find_site(root).png(1)).shape
    assert height != width  # a swapped height and width is an error below
    out = tmp_path / "out"
    argv = ["convert", str(root), str(out), "--workers", "1", "--image-shape", f"{height},{width}"]
    assert main(argv) == EXIT_OK
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["options"]["image_shape"] == [height, width]
    wrong = ["convert", str(root), "--workers", "1", "--image-shape"]
    assert main([*wrong, str(width), str(tmp_path / "w")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f".png: image is {height}x{width} (HxW), expected {width}x{width}" in err
    assert "--on-error skip" in err
    assert main([*wrong, f"{width},{height}", str(tmp_path / "t")]) == EXIT_ERROR
    assert f"expected {width}x{height}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["convert", str(root), str(out), "--image-shape", "1,2,3"])
    assert exit_.value.code == EXIT_USAGE
    assert "argument --image-shape: '1,2,3'" in capsys.readouterr().err


# ------------------------------------------------------------- errors in CLI words
def _error(argv: list[str], capsys, code: int = EXIT_ERROR) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_errors_name_files_and_flags_not_python_keywords(root, tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-folder"
    err = _error(["convert", str(missing), str(tmp_path / "o")], capsys)
    assert f"{missing} does not exist" in err
    err = _error(["convert", str(root), str(tmp_path / "o"), "--metadata", str(missing)], capsys)
    assert f"--metadata {missing} does not exist" in err
    err = _error(["verify", str(missing)], capsys)
    assert f"{missing} does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _error(["convert", str(empty), str(tmp_path / "o")], capsys)
    assert "--metadata PATH" in err and "metadata=" not in err
    err = _error(["convert", str(root), str(tmp_path / "o"), "--sites-per-shard", "0"], capsys)
    assert "--sites-per-shard 0 must be" in err and "sites_per_shard=" not in err
    err = _error(["convert", str(root), str(tmp_path / "o"), "--experiments", "RPE-09"], capsys)
    assert "--experiments RPE-09" in err and "experiments=" not in err
    err = _error(["convert", str(root), str(tmp_path / "o"), "--beam-option", "foo"], capsys)
    assert "--beam-option foo" in err and "beam_options" not in err
    # the same library errors speak Python outside the CLI
    from rxdata.conversion import convert

    with pytest.raises(ValueError, match="sites_per_shard=0"):
        convert(root, tmp_path / "p", sites_per_shard=0)


def test_different_options_refusal_names_only_what_differs(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["convert", str(root), str(out), "--workers", "1"]) == EXIT_OK
    err = _error(["convert", str(root), str(out), "--workers", "1", "--encoding", "raw"], capsys)
    assert "different options: encoding: png -> raw;" in err
    assert "--overwrite" in err and "overwrite=True" not in err and "{" not in err
    assert "seed" not in err and "strategy" not in err


def test_show_without_root_hints_at_root(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RXDATA_ROOT", raising=False)
    err = _error(["show", "HUVEC-01", "1", "B02"], capsys)
    assert "--root" in err and "RXDATA_ROOT" in err
    monkeypatch.setenv("RXDATA_ROOT", str(tmp_path))  # the user chose a root: no hint
    assert "no --root was given" not in _error(["show", "HUVEC-01", "1", "B02"], capsys)
    err = _error(["show", "HUVEC-01", "1", "B02", "--root", str(tmp_path / "nope")], capsys)
    assert "--root" in err and "does not exist" in err


@pytest.mark.parametrize("spelling", ["HUVEC-1", "HUVEC-01"])
def test_show_plate_with_metadata_in_either_spelling(tmp_path, capsys, spelling) -> None:
    root = _full_release_site(tmp_path / "data")
    (root / "metadata.csv").write_text(
        "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna,sirna_id\n"
        "HUVEC-01_2_B02_1,HUVEC-01_2_B02,HUVEC,train,HUVEC-01,2,B02,1,treatment,s1,3\n"
    )
    out = tmp_path / "plate.png"
    argv = ["show", spelling, "2", "--root", str(root), "--metadata", str(root / "metadata.csv")]
    assert main([*argv, "--out", str(out)]) == EXIT_OK
    assert out.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------- rxdata synth
def test_synth_needs_a_size_and_an_empty_folder(tmp_path, capsys) -> None:
    target = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_:
        main(["synth", str(target)])  # the 46 GB default never starts without --full
    assert exit_.value.code == EXIT_USAGE
    assert "--tiny --full" in capsys.readouterr().err and not target.exists()
    argv = ["synth", "--tiny", str(target), "--image-size", "8", "--plates", "1"]
    assert main(argv) == EXIT_OK
    before = sorted(p.name for p in target.rglob("*"))
    err = _error(argv, capsys)
    assert "is not empty" in err and "--overwrite" in err
    assert main([*argv, "--overwrite"]) == EXIT_OK
    assert sorted(p.name for p in target.rglob("*")) == before


def test_synth_full_says_how_big_before_starting(tmp_path, capsys, monkeypatch) -> None:
    import rxdata.synthetic

    def fake(root, options):
        raise KeyboardInterrupt  # do not write 46 GB

    monkeypatch.setattr(rxdata.synthetic, "generate", fake)
    assert main(["synth", "--full", str(tmp_path / "d"), "--workers", "2"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "125,664 sites" in err and "GB" in err and "h on 2 core(s)" in err


# ------------------------------------------------------------------ verify progress
def test_verify_shows_progress(root, tmp_path, capsys) -> None:
    n = len(read_metadata(root))
    out = tmp_path / "out"
    assert main(["convert", str(root), str(out), "--workers", "1", "--no-progress"]) == EXIT_OK
    capsys.readouterr()
    for extra in ([], ["--decode"]):
        assert main(["verify", str(out), "--progress", *extra]) == EXIT_OK
        err = capsys.readouterr().err
        assert "verify" in err and f"{n}/{n}" in err
    assert main(["verify", str(out), "--no-progress"]) == EXIT_OK
    assert f"{n}/{n}" not in capsys.readouterr().err


# ------------------------------------------------------------------ quiet TensorFlow
@pytest.mark.subprocess
@pytest.mark.parametrize(("given", "expected"), [(None, "2"), ("0", "0")], ids=["unset", "user"])
def test_cli_quiets_tensorflow_unless_the_user_chose(given, expected) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if given is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = given
    code = (
        "import os, sys, rxdata.cli, rxdata.tflog; rxdata.cli.main(['verify', 'nowhere']); "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], 'tensorflow' in sys.modules, "
        "rxdata.tflog.is_quiet())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    # quiet until TensorFlow is first imported, and TensorFlow not imported for nothing
    assert proc.stdout.split() == [expected, "False", str(given is None)], proc.stderr[-2000:]


def _tf_lines(text: str) -> list[str]:
    from rxdata.tflog import is_startup_line

    return [
        line
        for line in text.splitlines()
        if is_startup_line(line) or "absl::" in line or ".cc:" in line
    ]


@pytest.mark.subprocess
@pytest.mark.slow
def test_convert_prints_no_tensorflow_lines(root, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    rxdata_bin = Path(sys.executable).parent / "rxdata"
    proc = subprocess.run(
        [str(rxdata_bin), "convert", str(root), str(tmp_path / "o"), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    # TensorFlow 2.21 writes these from C++ whatever TF_CPP_MIN_LOG_LEVEL says
    # (tensorflow/tensorflow#100442); rxdata.tflog keeps them out, in the workers too.
    assert _tf_lines(proc.stdout + proc.stderr) == []
    proc = subprocess.run(
        [str(rxdata_bin), "verify", str(tmp_path / "o"), "--decode"],
        env={**env, "RXDATA_TF_LOGS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == EXIT_OK and _tf_lines(proc.stderr)  # asked for: shown


@pytest.mark.subprocess
def test_python_errors_during_a_quiet_import_are_shown(tmp_path) -> None:
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os, warnings\n"
        "os.write(2, b'I0000 00:00:1.0   7 port.cc:153] oneDNN custom operations are on\\n')\n"
        "warnings.warn('a real warning')\n"
        "raise ImportError('a real error')\n"
    )
    code = "import rxdata.tflog as t; t.quiet_tensorflow_startup(); import tensorflow"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "ImportError: a real error" in proc.stderr and "a real warning" in proc.stderr
    assert "port.cc" not in proc.stderr


def test_library_speaks_python_and_the_cli_respells_at_its_edge() -> None:
    from rxdata.cli import cli_message, flag_text
    from rxdata.errors import ConvertError, Option

    assert str(Option("overwrite")) == "overwrite=True"
    assert str(Option("image_shape", (512, 512))) == "image_shape=(512, 512)"
    assert flag_text(Option("overwrite")) == "--overwrite"
    assert flag_text(Option("on_error", "skip")) == "--on-error skip"
    assert flag_text(Option("image_shape", (512, 512))) == "--image-shape 512,512"
    assert flag_text(Option("metadata", placeholder="PATH")) == "--metadata PATH"
    assert flag_text(Option("beam_options", "k=v")) == "--beam-option k=v"
    assert flag_text(Option("include_controls", False)) == "--no-controls"
    assert flag_text(Option("datasets", ["train", "test"])) == "--datasets train test"
    # A wrapping error keeps the wrapped one as its cause; both are respelled.
    skip, over = Option("on_error", "skip"), Option("overwrite")
    try:
        try:
            raise ConvertError(f"bad site; pass {skip}", options=[skip])
        except ConvertError as inner:
            raise ConvertError(f"shard 1: {inner}; or {over}", options=[over]) from inner
    except ConvertError as outer:
        assert str(outer) == "shard 1: bad site; pass on_error='skip'; or overwrite=True"
        assert cli_message(outer) == "shard 1: bad site; pass --on-error skip; or --overwrite"


# ------------------------------------------------------------------ messages (issue 22)
def test_show_names_dataset_flag_and_lists_experiments(tmp_path, capsys) -> None:
    from rxdata.synthetic import SyntheticOptions, generate

    data = generate(tmp_path / "d", SyntheticOptions.tiny())
    err = _error(["show", "HEPG2-07", "1", "B02", "--root", str(data)], capsys)
    assert err.startswith("rxdata: error:") and "dataset='train'" not in err
    assert "train: HEPG2-01, HUVEC-01, RPE-01, U2OS-01; test: HEPG2-02, HUVEC-02" in err
    err = _error(["show", "HEPG2-01", "1", "B02", "--root", str(data), "--dataset", "test"], capsys)
    assert "pass --dataset train" in err
    (data / "train" / "HEPG2-01" / "Plate1" / "B02_s1_w5.png").unlink()
    err = _error(["show", "HEPG2-01", "1", "B02", "--root", str(data)], capsys)
    assert "no image of channel(s) 5" in err and "--channels 1,2,3,4,6" in err
    out = tmp_path / "site.png"
    args = ["show", "HEPG2-01", "1", "B02", "--root", str(data), "--channels", "1,2,3"]
    assert main([*args, "--out", str(out)]) == EXIT_OK and out.is_file()


def test_verify_errors_start_with_the_program_name(tmp_path, capsys) -> None:
    assert main(["verify", str(tmp_path)]) == EXIT_ERROR
    assert capsys.readouterr().err.startswith("rxdata: error: ")


def test_convert_into_the_images_is_refused(root, tmp_path, capsys) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(root, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    err = _error(["convert", str(data), str(data)], capsys)
    assert "is the images' folder" in err and "choose an output folder outside it" in err
    err = _error(["convert", str(data), str(data / "train" / "x")], capsys)
    assert "is inside the images' folder" in err
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert main(["convert", str(data), str(data / "records"), "--workers", "1"]) == EXIT_OK


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--plates", "9"], "--plates 9: expected an int in 1..4"),
        (["--signal", "20"], "--signal 20.0: expected a number in 0..10.0"),
        (["--sites", "1"], "--sites 1: the Kaggle layout needs 2"),
    ],
    ids=["int", "number", "layout-rule"],
)
def test_synth_option_errors_name_flags(tmp_path, capsys, flags, said) -> None:
    assert main(["synth", str(tmp_path / "s"), "--tiny", *flags]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert said in err and "=" not in err.split("error:", 1)[1].split(";")[0]
