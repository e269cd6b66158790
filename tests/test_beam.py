"""Tests for the Apache Beam runner of rxdata-convert (DirectRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("apache_beam")
from helpers import find_site, shard_bytes
from rxdata.conversion import MANIFEST_NAME, ConvertOptions, convert, verify
from rxdata.conversion.beam import pipeline_options
from rxdata.errors import ConvertError, Option
from rxdata.records import read_manifest

pytestmark = pytest.mark.cluster  # every test here runs a Beam pipeline


@pytest.fixture
def root(small_kaggle: Path) -> Path:
    """The small synthetic data set (conftest.SMALL_OPTIONS), read-only."""
    return small_kaggle


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_beam_equals_local_shard_for_shard(root, tmp_path, encoding) -> None:
    local = convert(root, tmp_path / "local", encoding=encoding, sites_per_shard=3, workers=1)
    beam = convert(
        root, tmp_path / "beam", encoding=encoding, sites_per_shard=3, workers=1, runner="beam"
    )
    assert [(s.path, s.count, s.digest) for s in beam.shards] == [
        (s.path, s.count, s.digest) for s in local.shards
    ]
    assert shard_bytes(tmp_path / "beam") == shard_bytes(tmp_path / "local")
    assert (tmp_path / "beam" / MANIFEST_NAME).read_bytes() == (
        tmp_path / "local" / MANIFEST_NAME
    ).read_bytes()
    assert verify(tmp_path / "beam", decode=True).ok
    assert not (tmp_path / "beam" / "_progress").exists()  # job file, records, folder: gone


def test_beam_resumes_a_local_run(root, tmp_path) -> None:
    out = tmp_path / "out"
    convert(root, out, sites_per_shard=3, workers=1)
    first = sorted(out.rglob("*.tfrecord"))[0]
    first.unlink()  # as if the run had stopped before this shard
    result = convert(root, out, sites_per_shard=3, workers=1, runner="beam")
    assert result.n_reused == len(result.shards) - 1
    assert read_manifest(out)["complete"]
    assert verify(out).ok


def test_beam_bad_input_names_the_file(small_copy, tmp_path) -> None:
    data = small_copy
    site = find_site(data)
    site.png(5).unlink()
    with pytest.raises(ConvertError, match=rf"{site.site_id}.*{site.stem}_w5.png"):
        convert(data, tmp_path / "a", workers=1, runner="beam")
    result = convert(data, tmp_path / "b", workers=1, runner="beam", on_error="skip")
    assert [s.site_id for s in result.skipped] == [site.site_id]
    assert result.report_path is not None and Path(result.report_path).exists()


def test_pipeline_options() -> None:
    opts = ConvertOptions(
        workers=4, beam_options={"runner": "DataflowRunner", "project": "p", "region": "r"}
    )
    flags = pipeline_options(opts).get_all_options(drop_default=True)
    assert flags["runner"] == "DataflowRunner" and flags["project"] == "p"
    assert "direct_num_workers" not in flags
    direct = pipeline_options(ConvertOptions(workers=3)).get_all_options(drop_default=True)
    assert direct["runner"] == "DirectRunner"
    assert direct["direct_num_workers"] == 3
    assert direct["direct_running_mode"] == "multi_processing"


def test_a_stale_results_file_is_never_read(root, tmp_path, monkeypatch) -> None:
    """A run killed after its pipeline finished leaves its results file behind; a later
    pipeline that leaves none (here: its last step is made a no-op) is an error, never
    the stale records (which claim a single, made-up shard)."""
    import rxdata.conversion.beam as beam_runner

    out = tmp_path / "out"
    (out / "_progress").mkdir(parents=True)
    stale = [{"path": "x.tfrecord", "dataset": "train", "count": 1, "sha256": "0" * 64}]
    (out / "_progress" / "beam-results.json").write_text(json.dumps(stale))
    monkeypatch.setattr(beam_runner._WriteResults, "__call__", lambda self, records: 0)
    with pytest.raises(ConvertError, match="finished without leaving its results"):
        convert(root, out, sites_per_shard=3, workers=1, runner="beam")
    monkeypatch.undo()
    result = convert(root, out, sites_per_shard=3, workers=1, runner="beam")  # resumes
    assert "x.tfrecord" not in [s.path for s in result.shards]
    assert result.n_reused == len(result.shards)
    assert verify(out).ok and not (out / "_progress").exists()


@pytest.mark.parametrize("workers", ["1", "2"], ids=["in-process", "worker-processes"])
def test_beam_error_in_cli_words(small_copy, tmp_path, capsys, workers) -> None:
    """In process the worker's error object reaches the driver; from worker processes (as
    from Dataflow) only its traceback text does, and the options travel in it."""
    from rxdata.cli import main

    data = small_copy
    site = find_site(data)
    site.png(5).unlink()
    argv = ["convert", str(data), str(tmp_path / "o"), "--runner", "beam", "--workers", workers]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{site.stem}_w5.png" in err and "--on-error skip" in err and "on_error=" not in err
    assert "rxdata options" not in err


names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)
values = st.one_of(
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.tuples(st.text(max_size=8), st.text(max_size=8)),
)


@given(
    text=st.text(max_size=80).filter(lambda t: "\n" not in t and "\r" not in t),
    options=st.lists(
        st.builds(Option, names, values, st.one_of(st.none(), st.just("PATH"))), max_size=3
    ),
    suffix=st.sampled_from(["", " [while running 'WriteShard']"]),
)
def test_worker_error_text_keeps_its_options(text, options, suffix) -> None:
    from rxdata.conversion.beam import _tagged, _untagged

    line = _tagged(ConvertError(text, options=options)) + suffix
    assert _untagged(line) == (text, options)
