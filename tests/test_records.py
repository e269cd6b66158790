"""rxdata.records: a conversion folder as one object, and make_dataset's use of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rxdata
from rxdata.errors import IncompleteConversionError, OptionsError, RecordError
from rxdata.records import MANIFEST_NAME, Records, find_conversion, open_records, resolve_source
from rxdata.synthetic import SyntheticOptions, generate


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny re-release (sirna_N labels) data set and its conversion, under one folder."""
    from rxdata.conversion import convert

    root = tmp_path_factory.mktemp("records")
    generate(root / "data", SyntheticOptions.tiny(label_style="string"))
    convert(root / "data", root / "records", workers=1, progress=False, sites_per_shard=60)
    return root


def _copy(converted: Path, tmp_path: Path) -> Path:
    out = tmp_path / "records"
    shutil.copytree(converted / "records", out)
    return out


def test_open_records_knows_what_the_manifest_recorded(converted: Path) -> None:
    records = rxdata.open_records(converted / "records")
    assert isinstance(records, rxdata.Records)
    assert records.complete and records.running is None
    assert (records.strategy, records.seed, records.encoding) == ("random", 42, "png")
    assert records.image_shape == (32, 32) and records.layout == "kaggle"
    assert records.splits == ("train", "test")
    assert records.split_sizes == {"train": 224, "test": 112} and records.n_sites == 336
    sites = records.sites("test")
    assert set(sites["dataset"]) == {"test"} and len(sites) == 112
    assert set(sites["cell_type"]) == {"HEPG2", "HUVEC"}
    assert set(records.input_identities()) == set(records.sites()["site_id"])
    assert all(f.startswith(str(converted / "records")) for f in records.files("train"))
    assert "complete" in str(records)


def test_label_space_of_the_rerelease_and_of_the_competition(
    converted: Path, tiny_kaggle: Path, tmp_path: Path
) -> None:
    records = open_records(converted / "records")
    assert records.label_release == "rerelease"
    assert records.label_names([0]) == ["sirna_332"]
    rxdata.convert(tiny_kaggle, tmp_path / "ints", workers=1, progress=False)
    ints = open_records(tmp_path / "ints")
    assert ints.label_release == "competition" and ints.label_names([0]) == ["0"]


def test_the_manifest_records_the_label_space_even_of_a_test_only_conversion(
    converted: Path, tmp_path: Path
) -> None:
    """A re-release's test.csv has no labels: its conversion still knows the release."""
    manifest = json.loads((converted / "records" / MANIFEST_NAME).read_text())
    assert manifest["label_release"] == "rerelease"
    rxdata.convert(
        converted / "data", tmp_path / "t", datasets=("test",), workers=1, progress=False
    )
    test_only = open_records(tmp_path / "t")
    assert test_only.splits == ("test",) and test_only.label_release == "rerelease"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.pop("label_release"), "does not record its label space.*re-run the same"),
        (lambda m: m.update(label_release="sirna"), "label_release 'sirna'.*damaged"),
    ],
)
def test_a_manifest_without_a_valid_label_space_is_refused(
    converted: Path, tmp_path: Path, edit: object, match: str
) -> None:
    out = _copy(converted, tmp_path)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    edit(manifest)  # type: ignore[operator]
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(RecordError, match=match):
        _ = open_records(out).label_release


def test_the_fix_for_a_manifest_without_label_space_reuses_every_shard(
    converted: Path, tmp_path: Path
) -> None:
    out = _copy(converted, tmp_path)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    del manifest["label_release"]
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = rxdata.convert(converted / "data", out, workers=1, progress=False, sites_per_shard=60)
    assert result.n_reused == len(result.shards) and result.n_changed == 0
    assert open_records(out).label_release == "rerelease"


def test_a_table_mixing_label_spaces_is_refused_before_any_shard(
    tiny_kaggle: Path, tmp_path: Path
) -> None:
    from rxdata.errors import MetadataError

    md = rxdata.read_metadata(tiny_kaggle)
    md["sirna"] = md["sirna"].astype("string")
    first = md.index[md["sirna"].notna()][0]
    md.loc[first, "sirna"] = "sirna_332"
    with pytest.raises(MetadataError, match=r"two label spaces.*'sirna_332'"):
        rxdata.convert(tiny_kaggle, tmp_path / "out", metadata=md, workers=1, progress=False)
    assert not list((tmp_path / "out").rglob("*.tfrecord"))


def test_missing_split_names_the_ones_there(converted: Path, tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"split='valid'.*\['train', 'test'\]"):
        open_records(converted / "records").files("valid")
    rxdata.convert(
        converted / "data", tmp_path / "t", datasets=("test",), workers=1, progress=False
    )
    with pytest.raises(OptionsError, match=r"'train'.*\['test'\].*converted with datasets"):
        open_records(tmp_path / "t").files("train")


def test_folder_forms_resolve_to_one_conversion(converted: Path, tmp_path: Path) -> None:
    out = converted / "records"
    inside = open_records(out / "random-42" / "train")
    assert inside.root == str(out) and inside.selected == "random-42/train"
    assert inside.splits == ("train",) and inside.n_sites == 224
    above = open_records(converted)  # the folder holding data/ and records/
    assert above.root == str(out) and above.selected == ""
    shutil.copytree(out, tmp_path / "a" / "records")
    shutil.copytree(out, tmp_path / "b" / "records")
    with pytest.raises(OptionsError, match="holds 2 conversions"):
        open_records(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no manifest.json.*'.*empty/\*\.tfrecord'"):
        open_records(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_conversion(tmp_path / "nowhere")


def test_relative_folder_inside_keeps_the_callers_spelling(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(converted)
    records = open_records("records/random-42/test")
    assert records.root == "records"
    assert records.files("test")[0].startswith("records/")


def test_make_dataset_reads_a_folder_split_or_records(converted: Path) -> None:
    out = converted / "records"

    def count(source: object, **kw: object) -> int:
        ds = rxdata.make_dataset(source, batch_size=16, training=False, label=None, **kw)
        return sum(int(x.shape[0]) for x, _ids in ds)

    assert count(out, split="test") == 112
    assert count(open_records(out), split="train") == 224
    assert count(str(out)) == 336
    assert count(out / "random-42" / "test") == 112
    with pytest.raises(OptionsError, match="names a split of a conversion"):
        count(str(out / "random-42" / "test" / "*.tfrecord"), split="test")


def _interrupt(out: Path, keep: int) -> None:
    """Make ``out`` look like a conversion stopped after ``keep`` shards (Ctrl-C)."""
    from rxdata.conversion.shard import progress_path

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    shards = manifest["shards"]
    (out / "_progress").mkdir(exist_ok=True)
    for i, entry in enumerate(shards):
        if i < keep:
            Path(progress_path(str(out), entry["path"])).write_text(json.dumps(entry))
        else:
            (out / entry["path"]).unlink()
    manifest["complete"] = False
    manifest["shards"] = [
        {"path": e["path"], "dataset": e["dataset"], "site_ids": e["site_ids"]} for e in shards
    ]
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_incomplete_conversion_is_refused_with_how_to_finish(
    converted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = _copy(converted, tmp_path)
    _interrupt(out, keep=2)
    with pytest.raises(IncompleteConversionError) as err:
        rxdata.make_dataset(out, batch_size=4, split="train")
    text = str(err.value)
    assert "did not finish" in text and "re-run the same `rxdata convert`" in text
    assert "4 of 6 shards are missing" in text and "allow_incomplete=True" in text
    # the glob form of the same records is refused too
    with pytest.raises(IncompleteConversionError):
        rxdata.make_dataset(str(out / "random-42" / "train" / "*.tfrecord"), batch_size=4)
    with caplog.at_level("WARNING", logger="rxdata.records"):
        files = open_records(out).files("train", allow_incomplete=True)
    assert len(files) == 2
    assert "reading 120 of 224 sites (2 of 4 shards)" in caplog.text
    ds = rxdata.make_dataset(out, split="train", allow_incomplete=True, batch_size=8)
    assert ds is not None


def test_interrupted_overwrite_and_lost_shards_are_refused(converted: Path, tmp_path: Path) -> None:
    out = _copy(converted, tmp_path)
    _interrupt(out, keep=0)  # --overwrite rewrites the manifest, then deletes the shards
    with pytest.raises(IncompleteConversionError, match="interrupted --overwrite"):
        open_records(out).files()
    with pytest.raises(IncompleteConversionError, match="no finished shard"):
        open_records(out).files(allow_incomplete=True)
    out2 = _copy(converted, tmp_path / "2")
    next((out2 / "random-42" / "test").glob("*.tfrecord")).unlink()
    with pytest.raises(IncompleteConversionError, match="files listed in its manifest are gone"):
        open_records(out2).files("test")


def test_running_conversion_is_refused(converted: Path, tmp_path: Path) -> None:
    from rxdata.conversion.lock import output_lock

    out = _copy(converted, tmp_path)
    with output_lock(out):
        records = open_records(out)
        assert records.running is not None and str(os.getpid()) in records.running
        with pytest.raises(IncompleteConversionError, match="still writing it"):
            records.files("train")
    assert open_records(out).running is None


def test_progress_records_are_named_as_the_conversion_names_them() -> None:
    from rxdata.conversion.shard import progress_path
    from rxdata.records import _progress_path

    assert _progress_path("o", "random-42/train/001.tfrecord") == progress_path(
        "o", "random-42/train/001.tfrecord"
    )


def test_resolve_source_leaves_foreign_patterns_and_split_objects(tmp_path: Path) -> None:
    split = rxdata.Split({"train": ["HEPG2-01"], "val": ["HUVEC-01"]})
    files, rest = resolve_source(str(tmp_path / "*.tfrecord"), split=split)
    assert files == [str(tmp_path / "*.tfrecord")] and rest is split
    with pytest.raises(OptionsError, match="allow_incomplete"):
        resolve_source("x", allow_incomplete="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["dotdot", "absolute", "nul", "symlink", "folder-manifest"])
def test_a_tampered_conversion_is_refused_as_a_damaged_manifest(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """open_records, make_dataset and every split read refuse it, opening nothing outside."""
    from rxdata import _io

    out = _copy(converted, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"SECRET BYTES")
    manifest = json.loads((out / MANIFEST_NAME).read_bytes())
    manifest["shards"][0]["path"] = {
        "dotdot": "../victim.txt",
        "absolute": str(victim),
        "nul": "random-42/train/001.tfrecord\0",
        "symlink": "random-42/train/linked/victim.txt",
        "folder-manifest": manifest["shards"][0]["path"],
    }[how]
    if how == "symlink":
        (out / "random-42" / "train" / "linked").symlink_to(tmp_path, target_is_directory=True)
    if how == "folder-manifest":
        (out / MANIFEST_NAME).unlink()
        (out / MANIFEST_NAME).mkdir()
    else:
        (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    opened: list[str] = []
    real_open = _io.open

    def recording_open(path, mode="rb"):  # type: ignore[no-untyped-def]
        opened.append(os.path.realpath(path))
        return real_open(path, mode)

    monkeypatch.setattr(_io, "open", recording_open)
    damaged = RecordError if how != "folder-manifest" else (RecordError, FileNotFoundError)
    with pytest.raises(damaged, match=r"damaged manifest|no manifest"):
        rxdata.open_records(out).files()
    with pytest.raises(damaged, match=r"damaged manifest|no manifest"):
        rxdata.make_dataset(out, split="train", batch_size=4, training=False)
    with pytest.raises(damaged, match=r"damaged manifest|no manifest"):
        rxdata.make_dataset(out / "random-42" / "train", batch_size=4, training=False)
    assert all(p.startswith(os.path.realpath(out) + os.sep) for p in opened), opened


@pytest.mark.subprocess
def test_records_import_without_tensorflow() -> None:
    code = (
        "import sys, rxdata.records, rxdata.conversion.options; print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert isinstance(Records, type)


# --- the spawn guard -----------------------------------------------------------------------


@pytest.mark.subprocess
def test_unguarded_script_is_told_to_use_the_main_guard(tiny_kaggle: Path, tmp_path: Path) -> None:
    script = tmp_path / "convert_it.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import rxdata
            rxdata.compute_pixel_stats({str(tiny_kaggle)!r}, workers=2, progress=False)
            print("finished")
            """
        )
    )
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 1 and "finished" not in run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert "UnguardedMainError: rxdata:" in last and 'if __name__ == "__main__":' in last
    assert "line 3" in last and "worker process died" not in run.stderr


@pytest.mark.subprocess
def test_guarded_script_runs(tiny_kaggle: Path, tmp_path: Path) -> None:
    script = tmp_path / "guarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import rxdata

            if __name__ == "__main__":
                table = rxdata.compute_pixel_stats(
                    {str(tiny_kaggle)!r}, workers=2, progress=False
                )
                print("rows", len(table))
            """
        )
    )
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "rows" in run.stdout
