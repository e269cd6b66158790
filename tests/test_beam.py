"""Tests for the Apache Beam runner of rxdata-convert (DirectRunner)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("apache_beam")
from helpers import SITE_ID, make_data, shard_bytes, site_png
from rxdata.conversion import MANIFEST_NAME, ConvertOptions, convert, read_manifest, verify
from rxdata.conversion.beam import pipeline_options
from rxdata.errors import ConvertError

pytestmark = pytest.mark.cluster  # every test here runs a Beam pipeline


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("beam"), "kaggle")


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_beam_equals_local_shard_for_shard(root, tmp_path, encoding) -> None:
    local = convert(root, tmp_path / "local", encoding=encoding, sites_per_shard=3, workers=1)
    beam = convert(
        root, tmp_path / "beam", encoding=encoding, sites_per_shard=3, workers=1, runner="beam"
    )
    assert [(s.path, s.count, s.sha256) for s in beam.shards] == [
        (s.path, s.count, s.sha256) for s in local.shards
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


def test_beam_bad_input_names_the_file(tmp_path) -> None:
    data = make_data(tmp_path / "data", "kaggle")
    site_png(data, 5).unlink()
    with pytest.raises(ConvertError, match=rf"{SITE_ID}.*C04_s1_w5.png"):
        convert(data, tmp_path / "a", workers=1, runner="beam")
    result = convert(data, tmp_path / "b", workers=1, runner="beam", on_error="skip")
    assert [s.site_id for s in result.skipped] == [SITE_ID]
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
