"""Tests for the Dask runner of rxdata-convert (``runner="dask"``, rxdata.conversion.dask).

The cluster tests start a real scheduler and two worker processes on localhost with the
``dask scheduler`` / ``dask worker`` commands (as a user would on a cluster), submit through
``dask_address``, and stop everything they started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import find_site, set_allowed_failures, shard_bytes, slow_sites
from rxdata.conversion import MANIFEST_NAME, ConvertOptions, convert, verify
from rxdata.errors import ConvertError, OptionsError
from rxdata.metadata import read_metadata
from rxdata.records import read_manifest

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture
def root(small_kaggle: Path) -> Path:
    """The small synthetic data set (conftest.SMALL_OPTIONS), read-only."""
    return small_kaggle


# --- options and errors that need no cluster --------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dask_address": "tcp://h:8786"}, "needs runner='dask'"),
        ({"runner": "dask", "dask_address": "h:8786"}, "not a Dask scheduler address"),
        ({"runner": "dask", "dask_address": "http://h:8786"}, "not a Dask scheduler address"),
        ({"runner": "dask", "dask_address": "tcp://"}, "not a Dask scheduler address"),
        ({"runner": "dask", "dask_address": 8786}, "not a Dask scheduler address"),
        ({"runner": "dask", "dask_address": "tcp://h:1", "workers": 4}, "scale the cluster"),
        ({"runner": "dask", "dask_address": "tcp://[::1"}, r"not a Dask .*Invalid IPv6 URL"),
        ({"runner": "dask", "dask_address": "tcp://h:99999"}, r"not a Dask .*out of range"),
        ({"runner": "dask", "dask_address": "tcp://:8786"}, r"not a Dask .*no host"),
        ({"runner": "dask", "dask_timeout": 0}, "dask_timeout=0 must be a number of seconds"),
        ({"runner": "dask", "dask_timeout": float("inf")}, "must be a number of seconds"),
        ({"runner": "dask", "dask_timeout": "30"}, "must be a number of seconds"),
        ({"runner": "dask", "dask_timeout": 5}, "has no effect without dask_address"),
    ],
    ids=[
        "without-runner",
        "no-scheme",
        "http",
        "no-host",
        "not-a-string",
        "with-workers",
        "unclosed-ipv6",
        "port-out-of-range",
        "empty-host",
        "zero-timeout",
        "infinite-timeout",
        "text-timeout",
        "timeout-without-address",
    ],
)
def test_bad_dask_options(fields, message) -> None:
    with pytest.raises(OptionsError, match=message) as err:
        ConvertOptions(**fields)
    field = next(iter(fields.keys() - {"runner"})) if len(fields) > 1 else "dask_address"
    assert err.value.option in (field, "workers")  # the front end can name the option


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "tls://[::1]:8786", "inproc://x/1"])
def test_dask_addresses(address) -> None:
    assert ConvertOptions(runner="dask", dask_address=address).dask_address == address
    assert ConvertOptions(runner="dask", workers=2).dask_address is None  # a LocalCluster


def test_missing_extra_names_it(root, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(OptionsError, match=r"pip install 'rxdata\[dask\]'"):
        convert(root, tmp_path / "out", runner="dask", workers=1)
    assert not list((tmp_path / "out").rglob("*.tfrecord"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.cluster
def test_unreachable_scheduler_names_the_address(root, tmp_path) -> None:
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_free_port()}"  # nobody listens there
    with pytest.raises(
        ConvertError, match=f"cannot reach the Dask scheduler at {address} within 1 s"
    ):
        convert(root, tmp_path / "out", runner="dask", dask_address=address, dask_timeout=1)
    assert not list((tmp_path / "out").rglob("*.tfrecord"))


def test_a_scheduler_that_never_answers_fails_within_the_timeout(root, tmp_path) -> None:
    """A listener that accepts connections but never speaks: distributed alone waits forever."""
    pytest.importorskip("distributed")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the connect; nothing ever answers
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(
            ConvertError, match=rf"at {address} within 1 s .*--dask-timeout|dask_timeout"
        ):
            convert(root, tmp_path / "out", runner="dask", dask_address=address, dask_timeout=1)


def test_unreachable_scheduler_in_cli_words(root, tmp_path, capsys) -> None:
    pytest.importorskip("distributed")
    from rxdata.cli import main

    address = f"tcp://127.0.0.1:{_free_port()}"
    argv = ["convert", str(root), str(tmp_path / "out"), "--runner", "dask"]
    assert main([*argv, "--dask-address", address, "--dask-timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the Dask scheduler at {address} within 1 s" in err
    assert "--dask-timeout SECONDS" in err and "Traceback" not in err


# --- a real scheduler and two workers on localhost ------------------------------------------


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, with its children (the nanny's worker)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes; yields the scheduler address.

    ``allowed-failures=0``: a task whose worker dies fails the run at once (rather than
    being retried elsewhere), so the test can check what a failed run leaves behind.
    """
    distributed = pytest.importorskip("distributed")
    folder = tmp_path_factory.mktemp("cluster")
    scheduler_file = folder / "scheduler.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
    }
    common = ["--scheduler-file", str(scheduler_file), "--no-dashboard"]
    started: list[subprocess.Popen[bytes]] = []
    logs = []

    def start(*args: str) -> None:
        log = open(folder / f"{len(started)}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        cmd = [sys.executable, "-m", "dask", *args, *common]
        started.append(
            subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
        )

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0")
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the scheduler did not start"
            assert started[0].poll() is None, (folder / "0.log").read_text()
            time.sleep(0.1)
        for name in ("w1", "w2"):
            start("worker", "--name", name, "--nworkers", "1", "--nthreads", "1")
        with distributed.Client(scheduler_file=str(scheduler_file)) as client:
            client.wait_for_workers(2, timeout=120)
            address = client.scheduler.address
        yield address
    finally:
        for proc in reversed(started):  # workers first, then the scheduler
            _stop(proc)
        for log in logs:
            log.close()


@pytest.mark.cluster
@pytest.mark.slow
def test_local_beam_and_dask_write_identical_shards(root, tmp_path, cluster) -> None:
    common = {"sites_per_shard": 3}  # png; the kill test below writes raw
    results = {"local": convert(root, tmp_path / "local", workers=1, **common)}
    results["dask"] = convert(
        root, tmp_path / "dask", runner="dask", dask_address=cluster, progress=False, **common
    )
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        pass  # the beam extra is optional; local vs dask is still compared
    else:
        results["beam"] = convert(root, tmp_path / "beam", runner="beam", workers=1, **common)
    expected = [(s.path, s.count, s.digest) for s in results["local"].shards]
    assert len(expected) == 6  # 10 train + 4 test sites, 3 per shard
    for name, result in results.items():
        assert [(s.path, s.count, s.digest) for s in result.shards] == expected, name
        assert shard_bytes(tmp_path / name) == shard_bytes(tmp_path / "local"), name
        manifest = (tmp_path / name / MANIFEST_NAME).read_bytes()
        assert manifest == (tmp_path / "local" / MANIFEST_NAME).read_bytes(), name
        assert verify(tmp_path / name, decode=True, metadata=root).ok, name
        assert not (tmp_path / name / "_progress").exists(), name


@pytest.mark.cluster
@pytest.mark.slow
def test_dask_bad_input_names_the_file(small_copy, tmp_path, cluster) -> None:
    data = small_copy
    site = find_site(data)
    site.png(5).unlink()
    with pytest.raises(ConvertError, match=rf"{site.site_id}.*{site.stem}_w5.png") as err:
        convert(data, tmp_path / "a", runner="dask", dask_address=cluster)
    assert not [p for p in (tmp_path / "a").rglob("*") if ".tmp" in p.name]
    # the worker's error came back pickled, with the option its message names
    from rxdata.cli import cli_message

    assert "--on-error skip" in cli_message(err.value)
    assert [o.name for o in err.value.options] == ["on_error"]  # on the error itself
    result = convert(data, tmp_path / "b", runner="dask", dask_address=cluster, on_error="skip")
    assert [s.site_id for s in result.skipped] == [site.site_id]
    assert result.report_path is not None and Path(result.report_path).exists()


@pytest.mark.cluster
@pytest.mark.slow
def test_worker_killed_mid_shard_then_resume(root, tmp_path, cluster) -> None:
    distributed = pytest.importorskip("distributed")
    common = {"encoding": "raw", "sites_per_shard": 2}
    reference = tmp_path / "reference"
    convert(root, reference, workers=1, **common)

    out = tmp_path / "out"
    failure: list[BaseException] = []

    def run() -> None:
        try:
            convert(root, out, runner="dask", dask_address=cluster, progress=False, **common)
        except BaseException as err:  # reported to the test thread below
            failure.append(err)

    with distributed.Client(cluster) as client:
        client.run(slow_sites, 0.5)  # each site takes 0.5 s longer on both workers
        try:
            thread = threading.Thread(target=run)
            thread.start()
            deadline = time.monotonic() + 120
            temporaries: list[Path] = []
            while not temporaries:  # a shard is being written: its temporary file exists
                assert thread.is_alive() and time.monotonic() < deadline, failure
                temporaries = list(out.rglob(".*.tfrecord.tmp-*"))
                time.sleep(0.01)
            # the temporary's name holds the pid of the worker writing it (.NAME.tmp-PID-X)
            victim = int(temporaries[0].name.split(".tmp-")[1].split("-")[0])
            os.kill(victim, signal.SIGKILL)
            thread.join(120)
            assert not thread.is_alive()
        finally:
            client.run(slow_sites, 0)
        client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker

    assert len(failure) == 1 and isinstance(failure[0], ConvertError), failure
    assert "Dask workers died while writing" in str(failure[0])
    assert "re-run the same command to resume" in str(failure[0])
    written = shard_bytes(out)
    complete = shard_bytes(reference)
    assert len(written) < len(complete)  # stopped part-way ...
    assert all(complete[path] == data for path, data in written.items())  # ... nothing partial
    assert not read_manifest(out)["complete"]

    result = convert(root, out, runner="dask", dask_address=cluster, progress=False, **common)
    # kept: every shard complete at the failure (and any a surviving worker finished after
    # it); rewritten: at least the killed worker's shard
    assert len(written) <= result.n_reused < len(result.shards)
    assert shard_bytes(out) == complete
    assert (out / MANIFEST_NAME).read_bytes() == (reference / MANIFEST_NAME).read_bytes()
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == []  # the dead worker's is gone
    assert verify(out, decode=True).ok


@pytest.mark.cluster
@pytest.mark.slow
def test_worker_killed_mid_shard_is_retried_by_dask(root, tmp_path, cluster) -> None:
    # Dask's default (allowed-failures=3): the lost worker's shard task runs again on another
    # worker; the task is idempotent, so the run completes with the reference bytes.
    distributed = pytest.importorskip("distributed")
    common = {"encoding": "raw", "sites_per_shard": 2}
    reference = tmp_path / "reference"
    convert(root, reference, workers=1, **common)
    out = tmp_path / "out"
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(
                convert(root, out, runner="dask", dask_address=cluster, progress=False, **common)
            )
        except BaseException as err:  # reported to the test thread below
            outcome.append(err)

    with distributed.Client(cluster) as client:
        old = client.run_on_scheduler(set_allowed_failures, 3)
        client.run(slow_sites, 0.5)
        try:
            thread = threading.Thread(target=run)
            thread.start()
            deadline = time.monotonic() + 120
            temporaries: list[Path] = []
            while not temporaries:
                assert thread.is_alive() and time.monotonic() < deadline, outcome
                temporaries = list(out.rglob(".*.tfrecord.tmp-*"))
                time.sleep(0.01)
            os.kill(int(temporaries[0].name.split(".tmp-")[1].split("-")[0]), signal.SIGKILL)
            thread.join(120)
            assert not thread.is_alive()
        finally:
            client.run(slow_sites, 0)
            client.run_on_scheduler(set_allowed_failures, old)
        client.wait_for_workers(2, timeout=120)

    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    assert shard_bytes(out) == shard_bytes(reference)
    assert (out / MANIFEST_NAME).read_bytes() == (reference / MANIFEST_NAME).read_bytes()
    assert verify(out, decode=True).ok


@pytest.mark.cluster
@pytest.mark.slow
def test_local_cluster_without_address(root, tmp_path) -> None:
    pytest.importorskip("distributed")
    local = convert(root, tmp_path / "local", workers=1, datasets=("test",))
    dask = convert(root, tmp_path / "dask", workers=1, datasets=("test",), runner="dask")
    assert [s.digest for s in dask.shards] == [s.digest for s in local.shards]
    assert shard_bytes(tmp_path / "dask") == shard_bytes(tmp_path / "local")


@pytest.mark.cluster
@pytest.mark.slow
def test_scheduler_lost_mid_run_is_an_error(root, tmp_path) -> None:
    # An in-process cluster (threads, inproc:// address): closing it mid-run must end the
    # run with an error that says so, never hang or report success.
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    failure: list[BaseException] = []
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )

    def run() -> None:
        try:
            convert(root, out, runner="dask", dask_address=cluster.scheduler_address)
        except BaseException as err:  # reported to the test thread below
            failure.append(err)

    slow_sites(0.3)  # the workers are threads of this process
    try:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not list(out.rglob(".*.tfrecord.tmp-*")):
            assert thread.is_alive() and time.monotonic() < deadline, failure
            time.sleep(0.01)
        cluster.close()
        thread.join(60)
        assert not thread.is_alive()
    finally:
        slow_sites(0)
        cluster.close()
    assert len(failure) == 1 and isinstance(failure[0], ConvertError), failure
    assert "scheduler" in str(failure[0]) and "re-run the same command" in str(failure[0])
    assert not read_manifest(out)["complete"]


@pytest.mark.cluster
@pytest.mark.slow
def test_ctrl_c_is_interrupted_and_the_run_resumes(root, tmp_path, cluster, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    from rxdata._parallel import Interrupted

    real = distributed.as_completed

    def first_then_ctrl_c(futures):
        for future in real(futures):
            yield future
            raise KeyboardInterrupt  # the user presses Ctrl-C after the first shard

    monkeypatch.setattr(distributed, "as_completed", first_then_ctrl_c)
    out = tmp_path / "out"
    with pytest.raises(Interrupted, match="Ctrl-C"):
        convert(root, out, runner="dask", dask_address=cluster, sites_per_shard=3)
    monkeypatch.undo()
    result = convert(root, out, runner="dask", dask_address=cluster, sites_per_shard=3)
    assert verify(out, decode=True, metadata=root).ok
    assert sum(s.count for s in result.shards) == len(read_metadata(root))
