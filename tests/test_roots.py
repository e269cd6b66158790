"""Tests for rxdata.roots: the one rule that classifies a data root on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import rxdata
import rxdata.images
from rxdata import roots
from rxdata.errors import ImageNotFoundError, MetadataError, OptionsError
from rxdata.metadata import scan_images
from rxdata.naming import parse_image_path
from rxdata.roots import DataRoot, detect_layout, find_root

cell_types = st.sampled_from(["HEPG2", "HUVEC", "RPE", "U2OS"])
batches = st.integers(1, 99)


def spell(cell_type: str, batch: int, padded: bool) -> str:
    return f"{cell_type}-{batch:02d}" if padded else f"{cell_type}-{batch}"


@settings(max_examples=25, deadline=None)
@given(cell_types, batches, st.booleans(), st.booleans(), st.sampled_from(["kaggle", "full"]))
def test_locate_finds_the_folder_as_spelled_on_disk(cell_type, batch, disk_pad, ask_pad, layout):
    with tempfile.TemporaryDirectory() as tmp:
        on_disk = spell(cell_type, batch, disk_pad)
        top = "images" if layout == "full" else "test"
        os.makedirs(f"{tmp}/{top}/{on_disk}")
        data = find_root(tmp)
        assert data.layout == layout
        ds, exp = data.locate(None, spell(cell_type, batch, ask_pad))
        assert exp == on_disk and ds == (None if layout == "full" else "test")


# ------------------------------------------------------------------ root shapes
PIXELS = {c: np.full((3, 4), 40 * c, np.uint8) for c in (1, 2)}


def write_site(folder: Path) -> None:
    """Channels 1 and 2 of site HUVEC-01 plate 2 well B02 site 1 into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for c, px in PIXELS.items():
        Image.fromarray(px).save(folder / f"B02_s1_w{c}.png")


class FakeGfile:
    """A ``tf.io.gfile`` stand-in that maps ``gs://bucket`` onto a local folder."""

    def __init__(self, local: Path):
        self.local = str(local)

    def _p(self, path: str) -> str:
        return path.replace("gs://bucket", self.local, 1)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self._p(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._p(path))

    def glob(self, pattern: str) -> list[str]:
        import glob

        return [p.replace(self.local, "gs://bucket", 1) for p in glob.glob(self._p(pattern))]

    def walk(self, root: str) -> Any:
        for d, dirs, files in os.walk(self._p(root)):
            yield d.replace(self.local, "gs://bucket", 1), dirs, files

    def GFile(self, path: str, mode: str) -> Any:
        return open(self._p(path), mode)


# shape id -> (folder of the site relative to tmp, root given relative to tmp, layout,
#              dataset to pass, remote)
SHAPES = {
    "kaggle-root": ("train/HUVEC-01/Plate2", ".", "kaggle", "train", False),
    "kaggle-root-find-dataset": ("test/HUVEC-01/Plate2", ".", "kaggle", None, False),
    "full-root": ("images/HUVEC-01/Plate2", ".", "full", None, False),
    "images-folder-root": ("images/HUVEC-01/Plate2", "images", "full", None, False),
    "kaggle-inside-images": ("images/train/HUVEC-01/Plate2", ".", "kaggle", "train", False),
    "kaggle-images-folder-as-root": (
        "images/test/HUVEC-01/Plate2",
        "images",
        "kaggle",
        None,
        False,
    ),
    "gs-full-root": ("images/HUVEC-01/Plate2", ".", "full", None, True),
    "gs-images-folder-root": ("images/HUVEC-01/Plate2", "images", "full", None, True),
    "gs-kaggle-root": ("train/HUVEC-01/Plate2", ".", "kaggle", None, True),
}


@pytest.mark.parametrize("spelling", ["HUVEC-1", "HUVEC-01"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_load_site_and_layout_detector_agree_on_every_root_shape(
    tmp_path, monkeypatch, shape, spelling
):
    folder, given, layout, dataset, remote = SHAPES[shape]
    write_site(tmp_path / folder)
    if remote:
        roots.clear_cache()  # gs://bucket named another folder in the previous case
        monkeypatch.setattr(rxdata._io, "_gfile", lambda: FakeGfile(tmp_path))
        root = "gs://bucket" if given == "." else f"gs://bucket/{given}"
    else:
        root = str(tmp_path / given)
    data = find_root(root)
    assert data.layout == layout == detect_layout(root) == rxdata.images.resolve_layout(root)
    assert scan_images(root).layout == layout
    x = rxdata.load_site(dataset, spelling, 2, "B02", 1, (2, 1), base_path=root)
    np.testing.assert_array_equal(x, np.stack([PIXELS[2], PIXELS[1]], axis=-1))
    # the one path builder names the file that load_site read
    path = data.path(dataset, spelling, 2, "B02", 1, 1)
    assert rxdata._io.exists(path) and parse_image_path(path).layout == layout
    assert rxdata.images.channel_path(root, dataset, spelling, 2, "B02", 1, 1) == path


def test_remote_roots_are_classified_once_per_process(tmp_path, monkeypatch):
    """Each remote folder check is a round trip: the second site costs no checks."""
    write_site(tmp_path / "images/HUVEC-01/Plate2")
    fake = FakeGfile(tmp_path)
    calls: list[str] = []
    real_isdir = fake.isdir

    def counting_isdir(path: str) -> bool:
        calls.append(path)
        return real_isdir(path)

    monkeypatch.setattr(fake, "isdir", counting_isdir)
    monkeypatch.setattr(rxdata._io, "_gfile", lambda: fake)
    roots.clear_cache()
    rxdata.load_site(None, "HUVEC-1", 2, "B02", 1, (1,), base_path="gs://bucket")
    assert calls
    calls.clear()
    rxdata.load_site(None, "HUVEC-1", 2, "B02", 1, (2,), base_path="gs://bucket")
    assert calls == []
    roots.clear_cache()
    rxdata.load_site(None, "HUVEC-1", 2, "B02", 1, (2,), base_path="gs://bucket")
    assert calls


def test_metadata_only_roots(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full/metadata.csv").write_text("site_id\n")
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle/train.csv").write_text("id_code\n")
    assert detect_layout(tmp_path / "full") == "full"
    assert detect_layout(tmp_path / "kaggle") == "kaggle"
    with pytest.raises(ImageNotFoundError, match=r"full/images/HUVEC-1/Plate2/B02_s1_w1.png"):
        rxdata.load_site(None, "HUVEC-1", 2, "B02", 1, (1,), base_path=tmp_path / "full")


def test_empty_or_missing_root_names_root_and_what_was_looked_for(tmp_path):
    (tmp_path / "blank").mkdir()
    (tmp_path / "named/images").mkdir(parents=True)  # a folder named images, no experiments
    for root in (tmp_path / "blank", tmp_path / "missing", tmp_path / "named/images"):
        with pytest.raises(MetadataError) as err:
            find_root(root)
        message = str(err.value)
        assert str(root) in message
        for looked_for in ("images/", "train/", "test/", "metadata.csv", "train.csv"):
            assert looked_for in message
        with pytest.raises(MetadataError):
            rxdata.load_site("train", "HUVEC-01", 2, "B02", 1, base_path=root)


def test_ambiguous_root_raises_unless_layout_given(tmp_path):
    write_site(tmp_path / "images/HUVEC-01/Plate2")
    write_site(tmp_path / "train/HUVEC-01/Plate2")
    with pytest.raises(MetadataError, match=r"ambiguous.*\['train'\]"):
        detect_layout(tmp_path)
    for layout, dataset in (("full", None), ("kaggle", "train")):
        x = rxdata.load_site(dataset, "HUVEC-1", 2, "B02", 1, (1,), tmp_path, layout=layout)
        np.testing.assert_array_equal(x[..., 0], PIXELS[1])


def test_find_root_rejects_unknown_layout(tmp_path):
    with pytest.raises(OptionsError, match="layout='zip'"):
        find_root(tmp_path, layout="zip")


def test_kaggle_without_dataset_names_both_folders(tmp_path):
    write_site(tmp_path / "train/HUVEC-01/Plate2")
    data = find_root(tmp_path)
    with pytest.raises(OptionsError, match=r"'RPE-7' \(spelled RPE-7 or RPE-07\).*train.*test"):
        data.locate(None, "RPE-7")
    with pytest.raises(OptionsError, match="needs dataset"):
        DataRoot(str(tmp_path), str(tmp_path), "kaggle").folder(None)


@pytest.mark.real
def test_real_root_holds_kaggle_folders_inside_images(real_root):
    """The shared real sample keeps the Kaggle train/ and test/ inside images/."""
    data = find_root(real_root)
    assert (data.layout, data.base) == ("kaggle", str(real_root / "images"))
    assert find_root(real_root / "images").base == str(real_root / "images")
    x = rxdata.load_site(None, "RPE-1", 1, "B02", 1, (4,), base_path=real_root)
    ref = np.asarray(Image.open(real_root / "images/train/RPE-01/Plate1/B02_s1_w4.png"))
    np.testing.assert_array_equal(x[..., 0], ref)
