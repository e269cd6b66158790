"""rxdata.compat.io against rxrx1-utils' rxrx.io.

The ``_old_*`` functions below restate what rxrx1-utils' ``rxrx/io.py`` did (read from
recursionpharma/rxrx1-utils), with pandas and Pillow standing in for ``tf.io.gfile`` and
scikit-image, so that each compat name is checked against the old behaviour itself: the
same argument order, shapes, dtypes, columns, row order and path strings.
"""

from __future__ import annotations

import copy
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import rxdata
from rxdata.compat import io as rio

# --- the old module, restated -----------------------------------------------------------

OLD_BASE = "gs://rxrx1-us-central1"
OLD_RGB_MAP = {
    1: {"rgb": np.array([19, 0, 249]), "range": [0, 51]},
    2: {"rgb": np.array([42, 255, 31]), "range": [0, 107]},
    3: {"rgb": np.array([255, 0, 25]), "range": [0, 64]},
    4: {"rgb": np.array([45, 255, 252]), "range": [0, 191]},
    5: {"rgb": np.array([250, 0, 253]), "range": [0, 89]},
    6: {"rgb": np.array([254, 255, 40]), "range": [0, 191]},
}

# name -> [(parameter, default or inspect.Parameter.empty)], in the old order.
_E = inspect.Parameter.empty
OLD_SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "load_image": [("image_path", _E)],
    "load_images_as_tensor": [("image_paths", _E), ("dtype", np.uint8)],
    "convert_tensor_to_rgb": [
        ("t", _E),
        ("channels", (1, 2, 3, 4, 5, 6)),
        ("vmax", 255),
        ("rgb_map", OLD_RGB_MAP),
    ],
    "image_path": [
        ("dataset", _E),
        ("experiment", _E),
        ("plate", _E),
        ("address", _E),
        ("site", _E),
        ("channel", _E),
        ("base_path", f"{OLD_BASE}/images"),
    ],
    "load_site": [
        ("dataset", _E),
        ("experiment", _E),
        ("plate", _E),
        ("well", _E),
        ("site", _E),
        ("channels", (1, 2, 3, 4, 5, 6)),
        ("base_path", f"{OLD_BASE}/images"),
    ],
    "load_site_as_rgb": [
        ("dataset", _E),
        ("experiment", _E),
        ("plate", _E),
        ("well", _E),
        ("site", _E),
        ("channels", (1, 2, 3, 4, 5, 6)),
        ("base_path", f"{OLD_BASE}/images"),
        ("rgb_map", OLD_RGB_MAP),
    ],
    "combine_metadata": [("base_path", f"{OLD_BASE}/metadata"), ("include_controls", True)],
}
OLD_CONSTANTS = [
    "DEFAULT_BASE_PATH",
    "DEFAULT_METADATA_BASE_PATH",
    "DEFAULT_IMAGES_BASE_PATH",
    "DEFAULT_CHANNELS",
    "RGB_MAP",
]


def _old_image_path(
    dataset: Any, experiment: Any, plate: Any, address: Any, site: Any, channel: Any, base: Any
) -> str:
    return os.path.join(
        base, dataset, experiment, f"Plate{plate}", f"{address}_s{site}_w{channel}.png"
    )


def _old_load_image(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:  # imread(f, format="png")
        return np.asarray(im)


def _old_load_images_as_tensor(paths: list[str], dtype: Any = np.uint8, size: int = 512) -> Any:
    # The old code hard-coded size=512; the tiny synthetic images are smaller.
    data = np.ndarray(shape=(size, size, len(paths)), dtype=dtype)
    for ix, path in enumerate(paths):
        data[:, :, ix] = _old_load_image(path)
    return data


def _old_convert_tensor_to_rgb(t: np.ndarray, channels: Any, vmax: Any = 255) -> Any:
    h, w = t.shape[:2]  # the old code reshaped to (512, 512, 3)
    colored = []
    for i, channel in enumerate(channels):
        lo, hi = OLD_RGB_MAP[channel]["range"]
        x = (t[:, :, i] / vmax) / ((hi - lo) / 255) + lo / 255
        x = np.where(x > 1.0, 1.0, x)
        colored.append(
            np.array(np.outer(x, OLD_RGB_MAP[channel]["rgb"]).reshape(h, w, 3), dtype=int)
        )
    im = np.array(np.array(colored).sum(axis=0), dtype=int)
    return np.where(im > 255, 255, im)


def _old_load_site(dataset: str, exp: str, plate: Any, well: str, site: Any, channels: Any,
                   base: Any, size: int) -> Any:  # fmt: skip
    paths = [_old_image_path(dataset, exp, plate, well, site, c, base) for c in channels]
    return _old_load_images_as_tensor(paths, size=size)


def _old_load_dataset(base: Path, dataset: str, include_controls: bool) -> pd.DataFrame:
    df = pd.read_csv(base / f"{dataset}.csv")
    if include_controls:
        controls = pd.read_csv(base / f"{dataset}_controls.csv")
        df["well_type"] = "treatment"
        df = pd.concat([controls, df], sort=True)
    df["cell_type"] = df.experiment.str.split("-").apply(lambda a: a[0])
    df["dataset"] = dataset
    dfs = []
    for site in (1, 2):
        df = df.copy()
        df["site"] = site
        dfs.append(df)
    return pd.concat(dfs).sort_values(by=["id_code", "site"]).set_index("id_code")


def _old_combine_metadata(base: Path, include_controls: bool = True) -> pd.DataFrame:
    parts = [_old_load_dataset(base, d, include_controls) for d in ["test", "train"]]
    return pd.concat(parts, sort=True)


# --- names, signatures and constants -----------------------------------------------------


def test_every_old_public_name_is_here_and_nothing_else() -> None:
    assert sorted(rio.__all__) == sorted([*OLD_SIGNATURES, *OLD_CONSTANTS])
    for name in rio.__all__:
        assert getattr(rio, name) is not None


@pytest.mark.parametrize("name", sorted(OLD_SIGNATURES))
def test_signature_matches_the_old_order_and_defaults(name: str) -> None:
    params = list(inspect.signature(getattr(rio, name)).parameters.values())
    assert [p.name for p in params] == [n for n, _ in OLD_SIGNATURES[name]]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)  # callable positionally
    for param, (_, default) in zip(params, OLD_SIGNATURES[name], strict=True):
        if isinstance(default, dict):  # the colour map: compare values
            assert {c: (list(e["rgb"]), list(e["range"])) for c, e in param.default.items()} == {
                c: (list(e["rgb"]), list(e["range"])) for c, e in default.items()
            }
        else:
            assert param.default == default, param.name


def test_constants_have_the_old_values_and_types() -> None:
    assert rio.DEFAULT_BASE_PATH == OLD_BASE
    assert os.path.join(OLD_BASE, "metadata") == rio.DEFAULT_METADATA_BASE_PATH
    assert os.path.join(OLD_BASE, "images") == rio.DEFAULT_IMAGES_BASE_PATH
    assert rio.DEFAULT_CHANNELS == (1, 2, 3, 4, 5, 6) == rxdata.color.DEFAULT_CHANNELS
    assert sorted(rio.RGB_MAP) == sorted(OLD_RGB_MAP)
    for channel, old in OLD_RGB_MAP.items():
        entry = rio.RGB_MAP[channel]
        assert isinstance(entry["rgb"], np.ndarray) and isinstance(entry["range"], list)
        np.testing.assert_array_equal(entry["rgb"], old["rgb"])
        assert entry["range"] == old["range"]
        assert tuple(entry["rgb"]) == rxdata.color.RGB_MAP[channel]["rgb"]  # one source of values


def test_compat_is_a_subpackage_not_part_of_the_top_level_api() -> None:
    assert "compat" not in rxdata.__all__
    only_old = {"combine_metadata", "load_image", "load_images_as_tensor"}
    only_old |= {"DEFAULT_BASE_PATH", "DEFAULT_METADATA_BASE_PATH", "DEFAULT_IMAGES_BASE_PATH"}
    assert not only_old & set(rxdata.__all__)
    assert not hasattr(rxdata, "combine_metadata")


@pytest.mark.subprocess
def test_importing_compat_io_does_not_import_tensorflow() -> None:
    code = "import sys, rxdata.compat.io; sys.exit('tensorflow' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


# --- image_path ----------------------------------------------------------------------------

_CASES = [
    ("train", "HEPG2-01", 1, "B03", 2, 5, "gs://rxrx1-us-central1/images"),
    ("test", "U2OS-04", 4, "O23", 1, 6, "gs://my-bucket/rxrx1/"),
    ("train", "HUVEC-1", 2, "D19", 1, 1, "rxrx1"),
    ("test", "RPE-05", 3, "K10", 2, 3, "/data/rxrx1/images"),
    ("train", "HEPG2-01", 1, "B02", 1, 1, ""),
]


@pytest.mark.parametrize("args", _CASES, ids=[c[-1] or "empty" for c in _CASES])
def test_image_path_is_the_old_string(args: tuple[Any, ...]) -> None:
    assert rio.image_path(*args) == _old_image_path(*args)
    assert rio.image_path(*args[:6], base_path=args[6]) == _old_image_path(*args)


def test_image_path_reads_the_seventh_argument_as_base_path() -> None:
    # rxdata.image_path reads it as the layout and rejects a folder name.
    with pytest.raises(rxdata.errors.ParseError, match="layout"):
        rxdata.image_path("train", "HEPG2-01", 1, "B03", 2, 5, "rxrx1")
    assert rio.image_path("train", "HEPG2-01", 1, "B03", 2, 5, "rxrx1") == (
        "rxrx1/train/HEPG2-01/Plate1/B03_s2_w5.png"
    )


def test_image_path_default_base_and_pathlike_base() -> None:
    args = ("train", "HEPG2-01", 1, "B03", 2, 5)
    assert rio.image_path(*args) == f"{OLD_BASE}/images/train/HEPG2-01/Plate1/B03_s2_w5.png"
    assert rio.image_path(*args, Path("/data")) == _old_image_path(*args, Path("/data"))


def test_image_path_takes_digit_strings_as_the_old_one_did() -> None:
    # e.g. experiment, plate, well = id_code.split("_")
    experiment, plate, well = ["HEPG2-01", "3", "B03"]
    args = ("train", experiment, plate, well, "2", "5", "rxrx1")
    assert rio.image_path(*args) == _old_image_path(*args)
    assert rio.image_path("train", "HEPG2-01", np.int64(3), "B03", np.int8(2), 5) == (
        _old_image_path("train", "HEPG2-01", 3, "B03", 2, 5, f"{OLD_BASE}/images")
    )


@pytest.mark.parametrize(
    "args",
    [
        ("valid", "HEPG2-01", 1, "B03", 2, 5),  # no such dataset
        ("train", "HEPG2-01", 5, "B03", 2, 5),  # plate outside 1-4
        ("train", "HEPG2-01", 1, "B03", 3, 5),  # site outside 1-2
        ("train", "HEPG2-01", 1, "B03", 2, 7),  # channel outside 1-6
        ("train", "HEPG2-01", " 1", "B03", 2, 5),  # not a plain digit string
        ("train", "HEPG2-01", 1.0, "B03", 2, 5),
        ("train", "HEPG2_01", 1, "B03", 2, 5),
    ],
    ids=["dataset", "plate", "site", "channel", "spaced", "float", "experiment"],
)
def test_image_path_refuses_what_names_no_image(args: tuple[Any, ...]) -> None:
    # The old function built a path to a file that cannot exist; rxdata says why.
    with pytest.raises(rxdata.errors.ParseError):
        rio.image_path(*args, "rxrx1")


_bases = st.sampled_from(["gs://rxrx1-us-central1/images", "gs://b/x/", "rxrx1", "/d/i", "."])


@given(
    dataset=st.sampled_from(["train", "test"]),
    cell=st.sampled_from(["HEPG2", "HUVEC", "RPE", "U2OS"]),
    batch=st.integers(1, 24),
    padded=st.booleans(),
    plate=st.integers(1, 4),
    row=st.sampled_from("ABCDEFGHIJKLMNOP"),
    column=st.integers(1, 24),
    site=st.integers(1, 2),
    channel=st.integers(1, 6),
    as_text=st.booleans(),
    base=_bases,
)
def test_image_path_round_trips_and_matches_the_old_string(
    dataset: str,
    cell: str,
    batch: int,
    padded: bool,
    plate: int,
    row: str,
    column: int,
    site: int,
    channel: int,
    as_text: bool,
    base: str,
) -> None:
    experiment = f"{cell}-{batch:02d}" if padded else f"{cell}-{batch}"
    well = f"{row}{column:02d}"
    numbers: tuple[Any, ...] = (plate, site, channel)
    if as_text:
        numbers = tuple(str(n) for n in numbers)
    p, s, c = numbers
    path = rio.image_path(dataset, experiment, p, well, s, c, base)
    assert path == _old_image_path(dataset, experiment, p, well, s, c, base)
    key = rxdata.parse_image_path(path)
    assert (key.dataset, key.experiment, key.plate, key.well, key.site, key.channel) == (
        dataset,
        experiment,
        plate,
        well,
        site,
        channel,
    )
    back = rio.image_path(key.dataset, key.experiment, key.plate, key.well, key.site,
                          key.channel, base)  # fmt: skip
    assert back == path


# --- images and colour ----------------------------------------------------------------------

_SITE = ("train", "HEPG2-01", 1, "B02", 1)


def _images_base(root: Path) -> str:
    return str(root)  # the Kaggle layout: train/ and test/ right under the root


def test_load_image_and_tensor_match_the_old_functions(tiny_kaggle: Path) -> None:
    paths = [rio.image_path(*_SITE, c, _images_base(tiny_kaggle)) for c in (3, 1, 6)]
    size = rio.load_image(paths[0]).shape[0]
    for path in paths:
        image = rio.load_image(path)
        old = _old_load_image(path)
        assert image.dtype == old.dtype == np.uint8
        np.testing.assert_array_equal(image, old)
    for dtype in (np.uint8, np.float32, np.int64):
        got = rio.load_images_as_tensor(paths, dtype)
        want = _old_load_images_as_tensor(paths, dtype, size=size)
        assert got.dtype == want.dtype and got.shape == want.shape == (size, size, 3)
        np.testing.assert_array_equal(got, want)
    assert rio.load_images_as_tensor(tuple(Path(p) for p in paths)).dtype == np.uint8


def test_load_images_as_tensor_refuses_what_the_old_one_got_wrong(tmp_path: Path) -> None:
    small, large = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(small)
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(large)
    with pytest.raises(rxdata.errors.ImageDecodeError, match=r"b\.png"):
        rio.load_images_as_tensor([str(small), str(large)])
    with pytest.raises(rxdata.errors.ImageNotFoundError, match=r"missing\.png"):
        rio.load_images_as_tensor([str(small), str(tmp_path / "missing.png")])
    with pytest.raises(rxdata.errors.OptionsError, match="empty"):
        rio.load_images_as_tensor([])
    with pytest.raises(rxdata.errors.OptionsError, match="single path"):
        rio.load_images_as_tensor(str(small))  # the old one iterated over its characters


def test_load_site_matches_the_old_one_positionally(tiny_kaggle: Path) -> None:
    base = _images_base(tiny_kaggle)
    size = rio.load_image(rio.image_path(*_SITE, 1, base)).shape[0]
    for channels in [(1, 2, 3, 4, 5, 6), (5, 2)]:
        got = rio.load_site(*_SITE, channels, base)
        want = _old_load_site(*_SITE, channels, base, size)
        assert got.dtype == want.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    # The plate and site as text, as id_code.split("_") gives them.
    np.testing.assert_array_equal(
        rio.load_site("train", "HEPG2-01", "1", "B02", "1", base_path=base),
        rio.load_site(*_SITE, base_path=base),
    )


def test_convert_tensor_to_rgb_matches_the_old_formula() -> None:
    rng = np.random.default_rng(0)
    site = rng.integers(0, 256, size=(24, 16, 6), dtype=np.uint8)
    got = rio.convert_tensor_to_rgb(site)
    want = _old_convert_tensor_to_rgb(site, (1, 2, 3, 4, 5, 6))
    assert got.dtype == want.dtype == np.int64 and got.shape == (24, 16, 3)
    np.testing.assert_array_equal(got, want)
    subset = site[..., [3, 0]]
    np.testing.assert_array_equal(
        rio.convert_tensor_to_rgb(subset, (4, 1), 200),
        _old_convert_tensor_to_rgb(subset, (4, 1), vmax=200),
    )


def test_an_edited_copy_of_the_old_rgb_map_still_works() -> None:
    edited = copy.deepcopy(rio.RGB_MAP)
    edited[1]["range"][1] = 25  # the old types allow in-place edits
    edited[1]["rgb"] = edited[1]["rgb"] // 2
    site = np.full((1, 1, 1), 25, np.uint8)
    assert rio.convert_tensor_to_rgb(site, (1,), rgb_map=edited)[0, 0].tolist() == [9, 0, 124]
    assert rio.RGB_MAP[1]["range"] == [0, 51]  # the module's map is untouched


def test_load_site_as_rgb_matches_the_old_one(tiny_kaggle: Path) -> None:
    base = _images_base(tiny_kaggle)
    size = rio.load_image(rio.image_path(*_SITE, 1, base)).shape[0]
    for channels in [(1, 2, 3, 4, 5, 6), (2, 6, 1)]:
        got = rio.load_site_as_rgb(*_SITE, channels, base, rio.RGB_MAP)
        want = _old_convert_tensor_to_rgb(_old_load_site(*_SITE, channels, base, size), channels)
        assert got.dtype == want.dtype == np.int64 and got.shape == (size, size, 3)
        np.testing.assert_array_equal(got, want)


def test_missing_site_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(rxdata.errors.ImageNotFoundError, match=r"B02_s1_w1\.png"):
        rio.load_site(*_SITE, base_path=str(tmp_path))


@pytest.mark.real
def test_real_sites_match_the_old_functions(real_images_dir: Path) -> None:
    paths = sorted(real_images_dir.glob("*/*/Plate*/*_s1_w1.png"))
    assert paths, f"no site-1 images under {real_images_dir}"
    key = rxdata.parse_image_path(paths[0])
    site = (key.dataset, key.experiment, key.plate, key.well, key.site)
    got = rio.load_site_as_rgb(*site, base_path=str(real_images_dir))
    old_site = _old_load_site(*site, (1, 2, 3, 4, 5, 6), str(real_images_dir), 512)
    np.testing.assert_array_equal(rio.load_site(*site, base_path=str(real_images_dir)), old_site)
    np.testing.assert_array_equal(got, _old_convert_tensor_to_rgb(old_site, (1, 2, 3, 4, 5, 6)))


# --- combine_metadata -----------------------------------------------------------------------


@pytest.mark.parametrize("include_controls", [True, False], ids=["controls", "no-controls"])
def test_combine_metadata_is_the_old_table(tiny_kaggle: Path, include_controls: bool) -> None:
    got = rio.combine_metadata(tiny_kaggle, include_controls)
    want = _old_combine_metadata(tiny_kaggle, include_controls)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert ("well_type" in got) is include_controls
    assert got.index.name == "id_code" and got["sirna"].dtype == np.float64


def test_combine_metadata_default_is_the_old_bucket() -> None:
    default = inspect.signature(rio.combine_metadata).parameters["base_path"].default
    assert default == rio.DEFAULT_METADATA_BASE_PATH == f"{OLD_BASE}/metadata"


@pytest.mark.parametrize(
    ("missing", "include_controls"),
    [("test.csv", True), ("train_controls.csv", True), ("test.csv", False)],
)
def test_combine_metadata_refuses_a_partial_set(
    tiny_kaggle: Path, tmp_path: Path, missing: str, include_controls: bool
) -> None:
    # The old function failed on a missing file; rxdata.read_metadata reads partial sets,
    # so the compat function checks that every file it needs gave rows.
    for name in ("train.csv", "test.csv", "train_controls.csv", "test_controls.csv"):
        if name != missing:
            shutil.copy(tiny_kaggle / name, tmp_path / name)
    with pytest.raises(rxdata.errors.MetadataError, match=missing.replace(".", r"\.")):
        rio.combine_metadata(tmp_path, include_controls)


def test_combine_metadata_without_controls_needs_no_control_files(
    tiny_kaggle: Path, tmp_path: Path
) -> None:
    for name in ("train.csv", "test.csv"):
        shutil.copy(tiny_kaggle / name, tmp_path / name)
    got = rio.combine_metadata(tmp_path, include_controls=False)
    pd.testing.assert_frame_equal(got, _old_combine_metadata(tmp_path, False))


def test_combine_metadata_reports_a_malformed_row(tiny_kaggle: Path, tmp_path: Path) -> None:
    for name in ("train.csv", "test.csv", "train_controls.csv", "test_controls.csv"):
        shutil.copy(tiny_kaggle / name, tmp_path / name)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",1,", ",9,", 1).replace("_1_", "_9_", 1)
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(rxdata.errors.MetadataError, match=r"train\.csv"):
        rio.combine_metadata(tmp_path)


@pytest.mark.real
@pytest.mark.parametrize("include_controls", [True, False], ids=["controls", "no-controls"])
def test_combine_metadata_real_csvs(real_metadata_dir: Path, include_controls: bool) -> None:
    got = rio.combine_metadata(real_metadata_dir, include_controls)
    want = _old_combine_metadata(real_metadata_dir, include_controls)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert len(got) == (125_510 if include_controls else 2 * (36_515 + 19_897))


def test_combine_metadata_sorts_id_codes_as_strings_like_the_old_one(tmp_path: Path) -> None:
    # "HUVEC-10_..." sorts before "HUVEC-1_..." as a string ("0" < "_"), whereas
    # rxdata.read_metadata sorts by experiment; the old row order must come back.
    head = "id_code,experiment,plate,well"
    rows = ["HUVEC-1_1_B10,HUVEC-1,1,B10", "HUVEC-10_2_B02,HUVEC-10,2,B02"]
    rows += ["HUVEC-1_1_B02,HUVEC-1,1,B02", "HUVEC-1_4_C02,HUVEC-1,4,C02"]
    (tmp_path / "train.csv").write_text(f"{head},sirna\n" + "".join(f"{r},7\n" for r in rows))
    (tmp_path / "test.csv").write_text(f"{head}\nRPE-2_1_D04,RPE-2,1,D04\n")
    got = rio.combine_metadata(tmp_path, include_controls=False)
    pd.testing.assert_frame_equal(got, _old_combine_metadata(tmp_path, False), check_exact=True)
    assert list(got.index[2::2]) == sorted(r.split(",")[0] for r in rows)


@pytest.mark.parametrize("include_controls", [True, False], ids=["controls", "no-controls"])
def test_combine_metadata_keeps_rerelease_labels_as_strings(
    tmp_path: Path, include_controls: bool
) -> None:
    # The Kaggle re-release writes sirna as "sirna_250"/"UNTREATED"; the old function
    # returned those strings, so the compat one does too (not rxdata's sirna_id).
    head = "id_code,experiment,plate,well"
    control = "HEPG2-01_1_B02,HEPG2-01,1,B02,UNTREATED,negative_control"
    (tmp_path / "train.csv").write_text(f"{head},sirna\nHEPG2-01_1_B03,HEPG2-01,1,B03,sirna_250\n")
    (tmp_path / "test.csv").write_text(f"{head}\nHEPG2-08_2_C04,HEPG2-08,2,C04\n")
    (tmp_path / "train_controls.csv").write_text(f"{head},sirna,well_type\n{control}\n")
    (tmp_path / "test_controls.csv").write_text(
        f"{head},sirna,well_type\n{control.replace('-01', '-08')}\n"
    )
    got = rio.combine_metadata(tmp_path, include_controls)
    pd.testing.assert_frame_equal(got, _old_combine_metadata(tmp_path, include_controls))
    assert "sirna_250" in set(got["sirna"])


def test_combine_metadata_reads_the_full_release_into_the_same_table(
    tiny_kaggle: Path, tiny_full: Path
) -> None:
    # The same synthetic data set in both layouts: the same rows, index and columns; only
    # the labels differ (supplier ids in metadata.csv, and its test wells are labelled).
    kaggle = rio.combine_metadata(tiny_kaggle)
    full = rio.combine_metadata(tiny_full)
    pd.testing.assert_frame_equal(full.drop(columns="sirna"), kaggle.drop(columns="sirna"))
    assert full["sirna"].notna().all()
