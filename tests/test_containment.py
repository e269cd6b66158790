"""Attacks on an output folder's containment and on ``--overwrite`` (issue 23).

Each test performs an attack (a symbolic link inside the output, a folder name with
glob characters, ``kill -9`` during an ``--overwrite``, a tampered manifest, an
unreachable tf.data service) and asserts the guarantee of docs/convert.md: nothing
outside the output is written, deleted or read, and nothing good is lost.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import shard_bytes
from rxdata import _io
from rxdata.conversion import MANIFEST_NAME, convert, verify
from rxdata.conversion.outputs import list_output
from rxdata.conversion.staging import staging_path
from rxdata.errors import ConvertError, OptionsError, OutputExistsError, UnreachableError
from rxdata.reader import list_shards

PER = 3  # sites per shard: the 18 sites of conftest.SMALL_OPTIONS make 4 train, 2 test shards


@pytest.fixture
def root(small_kaggle: Path) -> Path:
    """The small synthetic data set (read-only: these tests attack the output folder)."""
    return small_kaggle


def run(root: Path, out: Path, **kw: object):
    kw.setdefault("sites_per_shard", PER)
    return convert(root, out, workers=1, progress=False, **kw)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# --- 1. symbolic links inside the output ---------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_a_symlinked_folder_inside_the_output_is_refused(root, tmp_path, overwrite) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "train").mkdir(parents=True)
    (elsewhere / "train" / "001.tfrecord").write_bytes(b"unrelated data")
    (elsewhere / "train" / ".001.tfrecord.tmp-1-abcd").write_bytes(b"another program's")
    before = tree(elsewhere)
    out = tmp_path / "out"
    out.mkdir()
    (out / "random-42").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputExistsError, match=r"symbolic link .*random-42 -> .*elsewhere"):
        run(root, out, overwrite=overwrite)
    assert tree(elsewhere) == before  # nothing overwritten, no temporary deleted


def test_a_symlinked_shard_file_is_refused(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    victim = tmp_path / "victim.tfrecord"
    victim.write_bytes(b"unrelated data")
    shard = out / "random-42" / "test" / "001.tfrecord"
    shard.unlink()
    shard.symlink_to(victim)
    with pytest.raises(OutputExistsError, match="symbolic link"):
        run(root, out)
    assert victim.read_bytes() == b"unrelated data"
    report = verify(out)
    assert "random-42/test/001.tfrecord: a symbolic link inside the output" in report.summary()
    assert "passes through the symbolic link" in report.summary()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_place_of_a_shard_is_never_opened(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    shard = out / "random-42" / "test" / "001.tfrecord"
    shard.unlink()
    os.mkfifo(shard)  # opening it for reading would block forever
    reports: list[object] = []
    checker = threading.Thread(target=lambda: reports.append(verify(out)), daemon=True)
    checker.start()
    checker.join(120)  # a guard only: before the fix, verify never returned
    assert reports, "verify opened the FIFO"
    assert "random-42/test/001.tfrecord: not a regular file" in reports[0].summary()
    with pytest.raises(OutputExistsError, match="not a regular file"):
        run(root, out, overwrite=True)


def test_files_behind_a_folder_link_are_reported_never_read(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    # the conversion's folder moved elsewhere and linked back, with an extra shard there
    moved = tmp_path / "moved"
    (out / "random-42").rename(moved)
    (out / "random-42").symlink_to(moved, target_is_directory=True)
    (moved / "train" / "extra.tfrecord").write_bytes(
        (moved / "train" / "001.tfrecord").read_bytes()
    )
    listing = list_output(out)
    assert listing.links == ("random-42",) and listing.shards == []
    report = verify(out)
    assert not report.ok and report.n_sites == 0  # nothing read through the link
    assert "random-42: a symbolic link inside the output folder" in report.summary()
    with (
        pytest.warns(UserWarning, match="through a symbolic link to a folder"),
        pytest.raises(FileNotFoundError, match="no TFRecord files match"),
    ):
        list_shards(str(out / "*" / "*" / "*.tfrecord"))
    # named on purpose, the link is followed: the user chose that path
    assert len(list_shards(str(out / "random-42" / "train" / "*.tfrecord"))) == 5
    with pytest.raises(OutputExistsError, match="symbolic link"):
        run(root, out, sites_per_shard=4, overwrite=True)
    assert (moved / "train" / "extra.tfrecord").exists()


# --- 2. glob characters in the output path -------------------------------------------------


def test_an_output_named_like_a_glob_touches_no_sibling(root, tmp_path) -> None:
    for name in ("xa", "xb"):
        (tmp_path / name / "random-42").mkdir(parents=True)
        (tmp_path / name / ".manifest.json.tmp-1-abcd").write_bytes(b"a concurrent run's")
        (tmp_path / name / "random-42" / ".001.tfrecord.tmp-1-abcd").write_bytes(b"...")
    before = {name: tree(tmp_path / name) for name in ("xa", "xb")}
    run(root, tmp_path / "x[ab]")
    assert {name: tree(tmp_path / name) for name in ("xa", "xb")} == before
    assert verify(tmp_path / "x[ab]").ok


def test_stale_temporaries_are_found_in_any_folder_name(root, tmp_path) -> None:
    out = tmp_path / "out ü*?[y] é"
    run(root, out)
    stale = [
        out / "random-42" / "train" / ".001.tfrecord.tmp-99-dead",
        out / ".manifest.json.tmp-99-dead",
        out / "_progress" / ".x.json.tmp-99-dead",
    ]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"left by a killed run")
    assert run(root, out).n_reused == 6
    assert not [p for p in stale if p.exists()]
    assert verify(out).ok


@settings(max_examples=40, deadline=None)
@given(st.text(st.sampled_from("ab*?[]! é-"), min_size=1, max_size=8))
def test_an_escaped_path_matches_itself_only(tmp_path_factory, name) -> None:
    base = tmp_path_factory.mktemp("glob")
    folder = base / name
    folder.mkdir(exist_ok=True)
    (folder / "f.txt").write_bytes(b"")
    for other in ("a", "b", "ab"):  # siblings an unescaped pattern could match
        (base / other).mkdir(exist_ok=True)
        (base / other / "f.txt").write_bytes(b"")
    pattern = _io.join(_io.glob_escape(str(folder)), "*.txt")
    assert _io.glob(pattern) == [str(folder / "f.txt")]


def test_a_write_failure_names_a_vanished_file_not_free_space(root, tmp_path, monkeypatch):
    import rxdata.tfrecord

    def vanished(path, examples, **kw):
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(rxdata.tfrecord, "write_shard", vanished)
    with pytest.raises(ConvertError, match="another process removed it") as err:
        run(root, tmp_path / "out")
    assert "free space" not in str(err.value)


# --- 3. nothing good is lost: --overwrite through a staging folder ---------------------------

SLOW = textwrap.dedent(
    """
    import time
    import rxdata.conversion.shard as shard
    _real = shard.load_site
    def _slow(ctx, row, paths=None):
        time.sleep(0.5)
        return _real(ctx, row, paths)
    shard.load_site = _slow
    """
)
CLI = "import sys; from rxdata.cli import convert_main; sys.exit(convert_main(sys.argv[1:]))"


def _wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_kill_9_during_overwrite_keeps_the_old_conversion(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    old = tree(out)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW)
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{hook}{os.pathsep}{src}"}
    args = [str(root), str(out), "--sites-per-shard", "4", "--workers", "1", "--overwrite"]
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=env)
    staging = Path(staging_path(out))
    try:
        _wait_for(lambda: any(staging.glob("_progress/*.json")), "a first new shard")
        os.kill(proc.pid, signal.SIGKILL)  # no clean-up at all
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the previous complete conversion is untouched, readable and verified
    assert {k: v for k, v in tree(out).items() if not k.startswith(".rxdata")} == old
    assert verify(out).ok
    assert len(list_shards(str(out / "random-42" / "*" / "*.tfrecord"))) == 6
    # ... beside a resumable staging folder, which the next run picks up
    assert json.loads((staging / MANIFEST_NAME).read_bytes())["complete"] is False
    result = run(root, out, sites_per_shard=4, overwrite=True)
    assert result.n_reused >= 1
    assert not staging.exists()
    assert not [p for p in tmp_path.iterdir() if ".rxdata-old-" in p.name]
    reference = tmp_path / "reference"
    run(root, reference, sites_per_shard=4)
    assert shard_bytes(out) == shard_bytes(reference)
    assert verify(out).ok and result.output_dir == str(out)


def test_a_run_with_the_old_options_clears_an_abandoned_staging_folder(root, tmp_path) -> None:
    out = tmp_path / "out"
    first = run(root, out)
    staging = Path(staging_path(out))
    (staging / "random-42" / "train").mkdir(parents=True)
    (staging / "random-42" / "train" / "001.tfrecord").write_bytes(b"half a replacement")
    (staging / MANIFEST_NAME).write_text("{}")
    old = shard_bytes(out)
    assert run(root, out).n_reused == len(first.shards)
    assert not staging.exists()
    assert shard_bytes(out) == old


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two-renames"])
def test_overwrite_replaces_a_complete_conversion_only_when_done(
    root, tmp_path, monkeypatch, atomic
) -> None:
    import rxdata.conversion.shard as shard

    if not atomic:  # another OS, or a file system without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(_io, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    run(root, out)
    old = shard_bytes(out)
    real, seen = shard.load_site, []

    def look(ctx, row, paths=None):  # while the new conversion is written, the old one is intact
        seen.append(shard_bytes(out) == old and verify(out).ok)
        return real(ctx, row, paths)

    monkeypatch.setattr(shard, "load_site", look)
    result = run(root, out, sites_per_shard=5, overwrite=True)
    assert seen and all(seen)
    assert sorted(shard_bytes(out)) == sorted(s.path for s in result.shards)
    assert verify(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


class _Killed(BaseException):
    """Stands for kill -9 at one instant of the replacement (nothing else runs after it)."""


def _kill_at(monkeypatch, name: str, when) -> None:
    """Make ``_io.<name>(path, ...)`` raise :class:`_Killed` when ``when(path)``."""
    real = getattr(_io, name)

    def maybe_die(path, *rest):
        if when(os.fspath(path)):
            raise _Killed(name)
        return real(path, *rest)

    monkeypatch.setattr(_io, name, maybe_die)


@pytest.mark.parametrize("rerun_atomic", [False, True], ids=["renames-again", "exchange-now"])
def test_a_kill_between_the_two_renames_is_finished_by_the_next_run(
    root, tmp_path, monkeypatch, caplog, rerun_atomic
) -> None:
    """No RENAME_EXCHANGE: the old conversion is moved aside, then killed before the new one
    is moved in. The next run with the same options finishes the swap, rebuilding nothing."""
    monkeypatch.setattr(_io, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    run(root, out)
    staging = Path(staging_path(out))
    _kill_at(monkeypatch, "rename", lambda src: src == str(staging))  # the second rename
    with pytest.raises(_Killed):
        run(root, out, sites_per_shard=5, overwrite=True)
    monkeypatch.undo()
    if not rerun_atomic:  # else the next run may swap with RENAME_EXCHANGE
        monkeypatch.setattr(_io, "exchange", lambda a, b: False)
    # what the kill left: no conversion in out, the new one complete, the old one aside
    assert not out.exists() or list_output(out).shards == []
    assert json.loads((staging / MANIFEST_NAME).read_bytes())["complete"] is True
    (aside,) = [p for p in tmp_path.iterdir() if ".rxdata-old-" in p.name]
    assert verify(aside).ok

    def no_rebuild(*args):
        raise AssertionError("a site was read again: the swap was not finished")

    import rxdata.conversion.shard as shard

    monkeypatch.setattr(shard, "load_site", no_rebuild)
    with caplog.at_level("WARNING", logger="rxdata.conversion.staging"):
        result = run(root, out, sites_per_shard=5, overwrite=True)
    assert "interrupted replacement; finishing it" in caplog.text
    assert result.n_reused == len(result.shards) and result.output_dir == str(out)
    assert verify(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.undo()
    reference = tmp_path / "reference"
    run(root, reference, sites_per_shard=5)
    assert shard_bytes(out) == shard_bytes(reference)


def test_a_kill_between_the_renames_then_other_options_keeps_the_old_one_aside(
    root, tmp_path, monkeypatch, caplog
) -> None:
    """The staging folder is not for this run: built afresh, the moved-aside folder kept."""
    monkeypatch.setattr(_io, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    run(root, out)
    old = shard_bytes(out)
    staging = Path(staging_path(out))
    _kill_at(monkeypatch, "rename", lambda src: src == str(staging))
    with pytest.raises(_Killed):
        run(root, out, sites_per_shard=5, overwrite=True)
    monkeypatch.undo()
    with caplog.at_level("WARNING", logger="rxdata.conversion.staging"):
        run(root, out, sites_per_shard=3)
    assert "finishing it" not in caplog.text and "move it back by hand" in caplog.text
    assert not staging.exists() and verify(out).ok
    (aside,) = [p for p in tmp_path.iterdir() if ".rxdata-old-" in p.name]
    assert shard_bytes(aside) == old


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two-renames"])
def test_a_kill_after_the_swap_before_the_old_one_is_deleted(
    root, tmp_path, monkeypatch, atomic
) -> None:
    """The new conversion is in place; the moved-aside old one is deleted by the next run."""
    if not atomic:
        monkeypatch.setattr(_io, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    run(root, out)
    _kill_at(monkeypatch, "remove_tree", lambda path: ".rxdata-old-" in path)
    with pytest.raises(_Killed):
        run(root, out, sites_per_shard=5, overwrite=True)
    monkeypatch.undo()
    assert verify(out).ok and json.loads((out / MANIFEST_NAME).read_bytes())["complete"]
    assert [p for p in tmp_path.iterdir() if ".rxdata-old-" in p.name]
    result = run(root, out, sites_per_shard=5, overwrite=True)
    assert result.n_reused == len(result.shards) and verify(out).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_from_inside_the_output_is_refused(root, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    run(root, out)
    old = shard_bytes(out)
    monkeypatch.chdir(out)
    with pytest.raises(ConvertError, match=r"working directory .* is inside"):
        run(root, Path("."), sites_per_shard=5, overwrite=True)
    assert shard_bytes(out) == old and not Path(staging_path(out)).exists()


def test_overwrite_into_a_linked_output_folder_replaces_its_target(root, tmp_path) -> None:
    real = tmp_path / "disk" / "conversion"
    real.mkdir(parents=True)
    out = tmp_path / "out"
    out.symlink_to(real, target_is_directory=True)
    run(root, out)
    run(root, out, sites_per_shard=5, overwrite=True)
    assert out.is_symlink() and verify(out).ok
    assert json.loads((real / MANIFEST_NAME).read_bytes())["options"]["sites_per_shard"] == 5
    assert sorted(p.name for p in real.parent.iterdir()) == ["conversion"]


# --- 4. a tampered manifest ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_tampered_manifest_opens_nothing_outside(root, tmp_path, monkeypatch, how) -> None:
    out = tmp_path / "out"
    run(root, out)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"SECRET BYTES")
    manifest = json.loads((out / MANIFEST_NAME).read_bytes())
    manifest["shards"][0]["path"] = {
        "dotdot": "../victim.txt",
        "absolute": str(victim),
        "symlink": "linked/victim.txt",
    }[how]
    if how == "symlink":
        (out / "linked").symlink_to(tmp_path, target_is_directory=True)
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    opened: list[str] = []
    real_open = _io.open

    def recording_open(path, mode="rb"):
        opened.append(os.path.realpath(path))
        return real_open(path, mode)

    monkeypatch.setattr(_io, "open", recording_open)
    report = verify(out)
    assert not report.ok and "damaged manifest" in report.summary()
    assert "SECRET" not in report.summary()
    inside = os.path.realpath(out) + os.sep
    assert opened and all(p.startswith(inside) for p in opened), opened
    # a re-run refuses the damaged manifest, and with --overwrite replaces it
    with pytest.raises(OutputExistsError, match=r"damaged manifest|symbolic link"):
        run(root, out)
    if how == "symlink":
        (out / "linked").unlink()
    run(root, out, overwrite=True)
    assert verify(out).ok
    assert not (out / "_progress").exists()
    assert victim.read_bytes() == b"SECRET BYTES"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "victim.txt"]


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("a./\\:C~ \x00"), max_size=12))
def test_an_accepted_shard_path_never_leaves_the_folder(path) -> None:
    from rxdata.records import check_relative

    if check_relative(path):
        return
    out = os.path.join(os.sep, "data", "out")
    joined = os.path.normpath(os.path.join(out, *path.split("/")))
    assert joined.startswith(out + os.sep), (path, joined)


def test_a_symlinked_manifest_is_damaged_and_not_read(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    elsewhere = tmp_path / "elsewhere.json"
    (out / MANIFEST_NAME).rename(elsewhere)
    (out / MANIFEST_NAME).symlink_to(elsewhere)
    report = verify(out)
    assert not report.ok and "damaged manifest: a symbolic link" in report.summary()
    with pytest.raises(OutputExistsError, match="symbolic link"):
        run(root, out, overwrite=True)


def test_a_planted_staging_link_is_refused(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Path(staging_path(out)).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConvertError, match="is a symbolic link"):
        run(root, out, sites_per_shard=5, overwrite=True)
    assert list(elsewhere.iterdir()) == [] and verify(out).ok


# --- 5. an unreachable tf.data service -------------------------------------------------------


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_data_service_fails_naming_the_address(root, tmp_path):
    from rxdata.pipeline import PipelineOptions, make_dataset

    out = tmp_path / "out"
    run(root, out, datasets=("train",))
    address = f"grpc://127.0.0.1:{_closed_port()}"
    outcome: list[BaseException] = []

    def build() -> None:
        try:
            make_dataset(
                str(out / "random-42" / "train" / "*.tfrecord"),
                batch_size=2,
                training=True,
                options=PipelineOptions(data_service=address, data_service_timeout=1.5),
            )
        except BaseException as err:  # handed to the test thread
            outcome.append(err)

    worker = threading.Thread(target=build, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(300)  # a guard only: before the fix, this never returned
    assert not worker.is_alive(), "make_dataset hung on an unreachable data service"
    assert outcome and isinstance(outcome[0], UnreachableError), outcome
    message = str(outcome[0])
    assert address in message and "within 1.5 s" in message
    assert "data_service_timeout=SECONDS" in message
    assert [o.name for o in outcome[0].options] == ["data_service_timeout"]
    assert isinstance(outcome[0], ConnectionError)
    assert time.monotonic() - start >= 1.0  # it waited for the option's time, not less


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "10"])
def test_the_data_service_timeout_is_an_option_checked_like_dask_timeout(bad) -> None:
    from rxdata.pipeline import DistributeOptions, PipelineOptions

    opts = PipelineOptions(data_service="cpu-0:5050", data_service_timeout=60)
    assert opts.data_service_timeout == 60.0 and isinstance(opts, DistributeOptions)
    assert PipelineOptions().data_service_timeout == 10.0
    with pytest.raises(OptionsError, match="data_service_timeout="):
        PipelineOptions(data_service="cpu-0:5050", data_service_timeout=bad)
    with pytest.raises(OptionsError, match="no effect without data_service"):
        DistributeOptions(data_service_timeout=60)


def test_a_listening_service_passes_and_bad_timeouts_are_refused() -> None:
    from rxdata.service import check_reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=5)
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(OptionsError, match="timeout_s="):
            check_reachable("127.0.0.1:1", timeout_s=bad)
    with pytest.raises(OptionsError, match="HOST:PORT"):
        check_reachable("no-port", timeout_s=1)


# --- found by an adversarial pass over the fixes above -----------------------------------------


def test_verify_on_a_file_or_a_manifest_folder_gives_a_message(root, tmp_path) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("not a conversion")
    with pytest.raises(FileNotFoundError, match="afile: not a folder"):
        verify(a_file)
    (tmp_path / "odd" / MANIFEST_NAME).mkdir(parents=True)
    assert "damaged manifest: a folder" in verify(tmp_path / "odd").summary()


def test_a_run_removes_only_its_own_moved_aside_folders(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    # Another output's staging folder, and a user's folder, named with out's prefix.
    others = [tmp_path / ".out.rxdata-old-notes", tmp_path / ".out.rxdata-old-1-x.rxdata-staging"]
    for other in others:
        other.mkdir()
        (other / "keep.txt").write_text("not out's")
    aside = tmp_path / ".out.rxdata-old-4242-0123abcd"  # what a killed replacement leaves
    aside.mkdir()
    run(root, out)
    assert all((other / "keep.txt").exists() for other in others) and not aside.exists()
