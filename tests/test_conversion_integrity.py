"""Attacks on a conversion's output: nothing stale, mixed or silently lost (issue 12).

Each test performs what an adversarial user would do (edit a label and re-run, copy a
stray shard, lose the manifest, run two conversions at once, damage shards) and asserts
either correct output or a refusal that names the cause.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import find_site, png_bytes, read_png, shard_bytes
from rxdata.cli import EXIT_VERIFY_FAILED, main
from rxdata.conversion import MANIFEST_NAME, convert, verify
from rxdata.conversion.lock import output_lock
from rxdata.conversion.shard import ShardContext, ShardRecord, site_input
from rxdata.errors import ConvertError, ImageReadError, OutputExistsError
from rxdata.metadata import read_metadata
from rxdata.reader import read_tfrecord
from rxdata.records import LOCK_NAME

PER = 3  # sites per shard: the 18 sites of conftest.SMALL_OPTIONS make 4 train, 2 test shards


@pytest.fixture
def root(small_copy: Path) -> Path:
    """A private copy of the small synthetic data set, to edit."""
    return small_copy


def run(root: Path, out: Path, **kw: object):
    return convert(root, out, sites_per_shard=PER, workers=1, progress=False, **kw)


def labels(out: Path) -> dict[str, int | None]:
    """site id -> sirna_id of every example under ``out``."""
    found: dict[str, int | None] = {}
    for path in sorted(out.rglob("*.tfrecord")):
        for ex in read_tfrecord(path):
            found[f"{ex['id_code']}_{ex['site']}"] = ex["sirna_id"]
    return found


def edit_label(root: Path) -> tuple[set[str], int, int]:
    """Relabel the first train treatment well in ``train.csv``: its site ids, old, new label."""
    site = find_site(root)
    id_code = f"{site.experiment}_{site.plate}_{site.well}"
    csv = root / "train.csv"
    lines = csv.read_text().splitlines(keepends=True)
    (i,) = [n for n, line in enumerate(lines) if line.startswith(f"{id_code},")]
    *row, old = lines[i].rstrip("\r\n").split(",")  # id_code,experiment,plate,well,sirna
    new = (int(old) + 1) % 1108  # another treatment label
    lines[i] = ",".join([*row, str(new)]) + "\n"
    csv.write_text("".join(lines))
    md = read_metadata(root)
    edited = set(md[md["id_code"] == id_code].site_id)
    assert len(edited) == 2 and set(md[md["id_code"] == id_code].sirna_id) == {new}
    return edited, int(old), new


# --- stale content --------------------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True], ids=["rerun", "overwrite"])
def test_edited_label_rewrites_exactly_its_shards(root, tmp_path, overwrite) -> None:
    out = tmp_path / "out"
    first = run(root, out)
    before = shard_bytes(out)
    edited, old, new = edit_label(root)
    assert {s for s, label in labels(out).items() if label == old} == edited

    again = run(root, out, overwrite=overwrite)

    assert {s for s, label in labels(out).items() if label == new} == edited
    touched = {s.path for s in first.shards if edited & set(s.site_ids)}
    assert {s.path for s in again.shards if s.changed} == touched
    assert all("metadata row changed" in c for s in again.shards for c in s.changed)
    assert again.n_changed == len(touched) and again.n_reused == len(first.shards) - len(touched)
    after = shard_bytes(out)
    assert {p for p in after if after[p] != before[p]} == {
        str(Path(p)) for p in touched
    }  # the others are kept, byte for byte
    fresh = tmp_path / "fresh"
    run(root, fresh)
    assert after == shard_bytes(fresh)
    assert verify(out, metadata=root).ok


@pytest.mark.cluster
def test_every_runner_rewrites_what_changed(root, tmp_path) -> None:
    # The guarantee lives in the shared shard task and manifest code, not in a runner.
    pytest.importorskip("apache_beam")
    out = tmp_path / "out"
    first = run(root, out, runner="beam")
    edited, _, _ = edit_label(root)
    again = run(root, out, runner="beam")
    touched = {s.path for s in first.shards if edited & set(s.site_ids)}
    assert {s.path for s in again.shards if s.changed} == touched
    assert again.n_reused == len(first.shards) - len(touched)
    local = tmp_path / "local"
    run(root, local)
    assert shard_bytes(out) == shard_bytes(local)


def test_verify_with_metadata_reports_a_stale_label(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    run(root, out)
    assert main(["verify", str(out), "--metadata", str(root)]) == 0
    edited, old, new = edit_label(root)  # edited after converting, not re-run
    assert main(["verify", str(out), "--metadata", str(root)]) == EXIT_VERIFY_FAILED
    report = capsys.readouterr().out
    for site in edited:
        assert f"{site}: sirna is '{old}' in the shard but '{new}' in the metadata" in report
    run(root, out)  # the fix the message gives
    assert verify(out, metadata=root).ok


BASE_ROW = {
    "site_id": "HEPG2-01_1_B03_1",
    "dataset": "train",
    "experiment": "HEPG2-01",
    "cell_type": "HEPG2",
    "plate": 1,
    "well": "B03",
    "site": 1,
    "well_type": "treatment",
    "sirna": "513",
    "sirna_id": 513,
}
values = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.text(max_size=12))


LABELS = sorted(set(BASE_ROW) - {"dataset", "experiment", "plate", "well", "site"})


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(LABELS), value=values, inputs=st.lists(st.text(max_size=40)))
def test_site_input_tracks_every_row_value(key, value, inputs) -> None:
    # (dataset, experiment, plate, well and site also name the image files)
    ctx = ShardContext("no-such-root", "kaggle", "out", "png", "none", True, False, "raise", (8, 8))
    before = site_input(ctx, BASE_ROW)
    after = site_input(ctx, {**BASE_ROW, key: value})
    assert (before.split(":")[0] == after.split(":")[0]) == (BASE_ROW[key] == value)
    assert before.split(":")[1] == after.split(":")[1]
    digest = "xxh3_128:" + "ab" * 16
    record = ShardRecord("a.tfrecord", "train", 1, digest, 10, ("x",), site_inputs=tuple(inputs))
    assert ShardRecord.from_json(record.to_json()) == record


def test_replaced_image_rewrites_its_shard(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out)
    site = find_site(root)
    png = site.png(3)
    png.write_bytes(png_bytes(255 - read_png(png)))  # other pixels
    again = run(root, out)
    (changed,) = [s for s in again.shards if s.changed]
    assert site.site_id in changed.site_ids
    assert changed.changed == (f"site {site.site_id}: images changed",)
    fresh = tmp_path / "fresh"
    run(root, fresh)
    assert shard_bytes(out) == shard_bytes(fresh)


def test_repaired_site_is_retried(root, tmp_path) -> None:
    out = tmp_path / "out"
    site = find_site(root)
    png = site.png(2)
    good = png.read_bytes()
    png.write_bytes(good[:40])  # truncated
    first = run(root, out, on_error="skip")
    assert [s.site_id for s in first.skipped] == [site.site_id]
    assert main(["verify", str(out)]) == 0  # skipped sites are reported, not damage

    png.write_bytes(good)  # the user repairs the file, keeping the output folder
    again = run(root, out, on_error="skip")
    assert not again.skipped and not (out / "skipped.csv").exists()
    (retried,) = [s for s in again.shards if s.changed]
    assert site.site_id in retried.site_ids and "retrying 1 skipped site" in retried.changed[0]
    fresh = tmp_path / "fresh"
    run(root, fresh)
    assert shard_bytes(out) == shard_bytes(fresh)


def test_unchanged_rerun_keeps_everything_byte_identical(root, tmp_path) -> None:
    out = tmp_path / "out"
    first = run(root, out)
    manifest = (out / MANIFEST_NAME).read_bytes()
    again = run(root, out)
    assert again.n_reused == len(first.shards) and again.n_changed == 0
    assert (out / MANIFEST_NAME).read_bytes() == manifest


# --- leftovers and strays ---------------------------------------------------------------------


def test_overwrite_after_a_lost_manifest_leaves_only_the_new_shards(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out, strategy="by_experiment")
    (out / MANIFEST_NAME).unlink()
    new = run(root, out, overwrite=True)  # other options, and no manifest to list the old
    assert sorted(shard_bytes(out)) == sorted(str(Path(s.path)) for s in new.shards)
    assert not (out / "by_experiment-42").exists()  # emptied folders go too
    assert verify(out, metadata=root).ok


def test_overwrite_refuses_files_rxdata_did_not_write(root, tmp_path) -> None:
    out = tmp_path / "out"
    run(root, out, strategy="by_experiment")
    notes = out / "by_experiment-42" / "notes.txt"
    notes.write_text("mine")
    before = shard_bytes(out)
    with pytest.raises(OutputExistsError, match=r"did not write.*notes\.txt"):
        run(root, out, overwrite=True)
    assert notes.read_text() == "mine" and shard_bytes(out) == before  # nothing deleted


def test_stray_shard_is_refused_and_fails_verify(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    first = run(root, out)
    stray = out / "random-42" / "train" / "001 (copy).tfrecord"
    shutil.copy(out / first.shards[0].path, stray)

    assert main(["verify", str(out)]) == EXIT_VERIFY_FAILED
    assert "001 (copy).tfrecord: a .tfrecord the manifest does not list" in capsys.readouterr().out
    with pytest.raises(OutputExistsError, match=r"001 \(copy\)\.tfrecord.*overwrite=True"):
        run(root, out)
    run(root, out, overwrite=True)
    assert not stray.exists()
    assert verify(out).ok


# --- concurrent runs ----------------------------------------------------------------------------

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


def _start_slow_run(root: Path, out: Path, tmp_path: Path, workers: int) -> subprocess.Popen[bytes]:
    """``rxdata-convert ROOT OUT`` in a subprocess, each site slowed down."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SLOW)
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": f"{hook}{os.pathsep}{src}"}
    args = [str(root), str(out), "--sites-per-shard", str(PER), "--workers", str(workers)]
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.mark.subprocess
@pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks")
def test_second_run_into_the_same_folder_is_refused(root, tmp_path) -> None:
    reference = tmp_path / "reference"
    run(root, reference)
    out = tmp_path / "out"
    first = _start_slow_run(root, out, tmp_path, workers=1)
    try:
        lock = out / LOCK_NAME
        _wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), "the lock")
        _wait_for(lambda: any(out.glob("_progress/*.json")), "a first shard")
        with pytest.raises(ConvertError) as err:
            run(root, out)
        message = str(err.value)
        assert f"{out} is in use by another conversion" in message
        assert f"process {first.pid}" in message
        assert first.poll() is None  # the first run is not disturbed...
        os.kill(first.pid, signal.SIGKILL)  # ...until it crashes
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # a crashed run does not leave the folder locked: the next run resumes it
    resumed = run(root, out)
    assert resumed.n_reused >= 1  # what the killed run finished is kept
    assert shard_bytes(out) == shard_bytes(reference)
    assert not (out / LOCK_NAME).exists()


def _workers(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.append(int(child))
    return found


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_killing_the_parent_of_a_multi_worker_conversion(root, tmp_path) -> None:
    from helpers import pid_alive

    reference = tmp_path / "reference"
    run(root, reference)
    out = tmp_path / "out"
    proc = _start_slow_run(root, out, tmp_path, workers=2)
    try:
        _wait_for(lambda: any(out.glob("_progress/*.json")), "a first shard")
        _wait_for(lambda: len(_workers(proc.pid)) >= 2, "the workers")
        workers = _workers(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the parent runs no clean-up at all
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _wait_for(lambda: not any(pid_alive(p) for p in workers), "the orphaned workers to exit")
    assert 0 < len(shard_bytes(out)) < len(shard_bytes(reference))
    run(root, out)  # the folder is not left locked, and the run resumes
    assert shard_bytes(out) == shard_bytes(reference)


def test_lock_is_released_after_a_failed_run(root, tmp_path) -> None:
    out = tmp_path / "out"
    find_site(root).png(4).unlink()
    with pytest.raises(ConvertError, match="lacks channel"):
        run(root, out)
    with output_lock(out):  # free again
        assert (out / LOCK_NAME).exists()
    assert not (out / LOCK_NAME).exists()


def test_lock_is_not_followed_through_a_symlink(root, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (out / LOCK_NAME).symlink_to(victim)
    with pytest.raises(ConvertError, match="symbolic link"):
        run(root, out)
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_output_dir_that_cannot_be_a_folder_is_named(root, tmp_path, where, capsys) -> None:
    """OUTPUT_DIR is an existing file (or lies under one): an error naming it, exit 1."""
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" if where == "file" else tmp_path / "afile" / "out"
    with pytest.raises(ConvertError, match=r"cannot create the output directory .*afile"):
        run(root, out)
    argv = ["convert", str(root), str(out), "--workers", "1", "--no-progress"]
    assert main(argv) == 1
    assert "afile" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_a_worker_error_names_flags_only_under_the_cli(root, tmp_path, capsys) -> None:
    """No environment carries CLI words: a worker's error carries its options instead.

    The workers are spawned processes, so the error reaches the caller pickled; the option
    its message names survives that, and the command line respells it.
    """
    import pickle

    from rxdata.errors import Option

    find_site(root).png(5).unlink()
    with pytest.raises(ConvertError, match="on_error='skip'") as python:
        convert(root, tmp_path / "python", sites_per_shard=PER, workers=2, progress=False)
    assert Option("on_error", "skip") in python.value.options
    copy = pickle.loads(pickle.dumps(python.value))
    assert (str(copy), copy.options) == (str(python.value), python.value.options)
    argv = ["convert", str(root), str(tmp_path / "cli"), "--workers", "2", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--on-error skip" in err and "on_error=" not in err


# --- input problems are input problems --------------------------------------------------------


def test_unreadable_input_is_reported_as_an_input_problem(root, tmp_path) -> None:
    site = find_site(root)
    png = site.png(5)
    png.unlink()
    png.symlink_to(png.name)  # a symlink loop: reading it fails with ELOOP
    with pytest.raises(ConvertError) as err:
        run(root, tmp_path / "raise")
    message = str(err.value)
    assert f"cannot read {png}" in message and "on_error='skip'" in message
    assert "free space" not in message and "writing shard" not in message
    assert isinstance(err.value.__cause__, ImageReadError)

    skipped = run(root, tmp_path / "skip", on_error="skip")
    assert [(s.site_id, s.path) for s in skipped.skipped] == [(site.site_id, str(png))]
    # reported in the manifest and skipped.csv, not lost
    assert main(["verify", str(tmp_path / "skip"), "--metadata", str(root)]) == 0


# --- verify checks every shard --------------------------------------------------------------------


def test_verify_reports_every_damaged_shard(root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    result = run(root, out)
    paths = [out / s.path for s in result.shards]
    paths[0].write_bytes(b"not a tfrecord at all " * 20)  # garbage
    flipped = bytearray(paths[1].read_bytes())
    flipped[0] ^= 0xFF  # the first length byte
    paths[1].write_bytes(bytes(flipped))
    paths[2].unlink()
    paths[2].mkdir()  # a shard path that became a directory
    truncated = paths[3].read_bytes()
    paths[3].write_bytes(truncated[: len(truncated) // 2])

    assert main(["verify", str(out)]) == EXIT_VERIFY_FAILED
    report = capsys.readouterr().out
    for path in paths[:4]:
        assert str(path.relative_to(out)) in report
    assert "a directory, not a shard file" in report
    assert "Traceback" not in report
    report_ok = verify(out)
    assert not report_ok.ok
    damaged = {p.split(":")[0] for p in report_ok.problems}
    assert damaged == {s.path for s in result.shards[:4]}


# --- durability -----------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_shards_manifest_and_report_are_fsynced_before_rename(root, tmp_path, monkeypatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    find_site(root).png(1).write_bytes(b"broken")
    out = tmp_path / "out"
    result = run(root, out, on_error="skip")
    names = [Path(p).name for p in synced]
    for shard in result.shards:
        name = Path(shard.path).name
        assert any(n.startswith(f".{name}.tmp-") for n in names), name  # data, then rename
        assert str((out / shard.path).parent) in synced  # the folder holding the new name
    for name in (MANIFEST_NAME, "skipped.csv"):
        assert any(n.startswith(f".{name}.tmp-") for n in names), name
    assert str(out) in synced


def test_remote_read_failures_are_os_errors(monkeypatch) -> None:
    # A denied gs:// read must reach load_site as an OSError (an input problem), not as a
    # TensorFlow error that the shard writer would report as its own failure.
    import tensorflow as tf

    from rxdata import _io

    class Denied:
        def __init__(self, *args: object) -> None:
            pass

        def __enter__(self) -> Denied:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def read(self) -> bytes:
            raise tf.errors.PermissionDeniedError(None, None, "403 Forbidden")

    class FakeGfile:
        GFile = Denied

        @staticmethod
        def exists(path: str) -> bool:
            return True

    monkeypatch.setattr(_io, "_gfile", lambda: FakeGfile)
    with pytest.raises(PermissionError, match="403 Forbidden") as err:
        _io.read_bytes("gs://bucket/train/HEPG2-01/Plate1/B03_s1_w1.png")
    assert err.value.filename == "gs://bucket/train/HEPG2-01/Plate1/B03_s1_w1.png"


def test_a_run_that_wrote_no_shard_does_not_lock_in_its_options(
    tmp_path: Path, tiny_kaggle: Path
) -> None:
    """A first run that fails before writing a shard leaves a manifest; the corrected
    command is not refused (nothing would be lost), while one that wrote shards is."""
    out = tmp_path / "out"
    with pytest.raises(ConvertError):
        convert(tiny_kaggle, out, image_shape=(16, 16), workers=1, progress=False)
    assert (out / "manifest.json").is_file() and not list(out.rglob("*.tfrecord"))
    result = convert(tiny_kaggle, out, workers=1, progress=False)
    assert result.ok and list(out.rglob("*.tfrecord"))
    with pytest.raises(OutputExistsError, match="different options"):
        convert(tiny_kaggle, out, encoding="raw", workers=1, progress=False)


def test_a_bad_site_survives_pickling() -> None:
    """A worker's error can carry a BadSite across processes (CI saw it fail to unpickle)."""
    import pickle

    from rxdata.conversion.shard import BadSite
    from rxdata.errors import ImageNotFoundError

    copy = pickle.loads(pickle.dumps(BadSite(ImageNotFoundError("gone.png"), "gone.png")))
    assert (str(copy), copy.path, type(copy.error)) == ("gone.png", "gone.png", ImageNotFoundError)
