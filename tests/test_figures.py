"""Tests for rxdata.figures and the `rxdata show` / `rxdata stats` commands."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import rxdata
from rxdata import cli, figures
from rxdata.errors import ImageNotFoundError, OptionsError


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_site_figure_layout_and_titles():
    fig = figures.site_figure(np.zeros((8, 8, 3), np.uint8), (1, 3, 5), title="E-1 / plate 1")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("RGB composite")
    assert titles[1:] == [
        "w1 Hoechst (nuclei)",
        "w3 Phalloidin (actin)",
        "w5 MitoTracker (mitochondria)",
    ]
    assert fig._suptitle.get_text() == "E-1 / plate 1"
    with pytest.raises(OptionsError, match="channels"):
        figures.site_figure(np.zeros((8, 8, 3), np.uint8), (1, 2))


def test_render_site_draws_the_composite(tiny_kaggle, tmp_path):
    meta = rxdata.read_metadata(tiny_kaggle)
    row = meta.iloc[0]
    out = tmp_path / "pics" / "site.png"
    png = rxdata.render_site(
        None,
        row["experiment"],
        row["plate"],
        row["well"],
        row["site"],
        base_path=tiny_kaggle,
        out=out,
        dpi=50,
    )
    assert out.read_bytes() == png
    picture = decode(png)
    assert picture.shape[0] > 100 and picture.shape[1] > picture.shape[0]
    # the composite's dominant colours appear in the picture (it is not blank)
    assert picture.std() > 10


def test_render_plate_with_plate_map(tiny_full, tmp_path):
    meta = rxdata.read_metadata(tiny_full)
    exp = str(meta["experiment"].iloc[0])
    png = rxdata.render_plate(
        None,
        exp,
        1,
        base_path=tiny_full,
        metadata=meta,
        thumb=8,
        out=tmp_path / "plate.png",
        dpi=40,
    )
    assert decode(png).shape[1] > decode(png).shape[0]
    without = rxdata.render_plate(None, exp, 1, base_path=tiny_full, thumb=8, dpi=40)
    assert decode(without).shape[1] < decode(png).shape[1]  # no plate-map panel
    with pytest.raises(ImageNotFoundError, match="no wells"):
        rxdata.render_plate(
            None, exp, 1, base_path=tiny_full, site=2, channels=(6,), metadata=meta.iloc[:0]
        )


def test_cli_show_and_stats(tiny_kaggle, tmp_path, capsys):
    meta = rxdata.read_metadata(tiny_kaggle)
    row = meta.iloc[3]
    out = tmp_path / "s.png"
    argv = [
        "show",
        str(row["experiment"]),
        str(row["plate"]),
        str(row["well"]),
        "--site",
        str(row["site"]),
        "--root",
        str(tiny_kaggle),
        "--out",
        str(out),
        "--dpi",
        "40",
        "--channels",
        "1,2,3",
    ]
    assert cli.main(argv) == cli.EXIT_OK
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert (
        cli.main(
            [
                "show",
                str(row["experiment"]),
                str(row["plate"]),
                "--root",
                str(tiny_kaggle),
                "--out",
                str(tmp_path / "p.png"),
                "--dpi",
                "30",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "show",
                "U2OS-99",
                "1",
                "B02",
                "--root",
                str(tiny_kaggle),
                "--dataset",
                "train",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == cli.EXIT_ERROR
    )
    assert "U2OS-99" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["show", "HEPG2-01", "1", "B02", "--channels", "a,b"])

    csv = tmp_path / "ps.csv"
    assert (
        cli.main(["stats", str(tiny_kaggle), "--out", str(csv), "--workers", "0", "--no-progress"])
        == 0
    )
    table = pd.read_csv(csv)
    assert len(table) == len(meta) * 6


def test_render_plate_draws_the_whole_384_well_plate(tmp_path):
    """The montage is always rows A-P by columns 1-24, whatever wells the plate has: a
    plate with only A01 and one with only P24 give pictures of the same size."""
    from PIL import Image

    sizes = []
    for well in ("A01", "P24", "B02"):
        root = tmp_path / well
        folder = root / "train" / "HUVEC-01" / "Plate1"
        folder.mkdir(parents=True)
        for c in range(1, 7):
            Image.fromarray(np.full((8, 8), 40 * c, np.uint8)).save(folder / f"{well}_s1_w{c}.png")
        sizes.append(decode(rxdata.render_plate("train", "HUVEC-01", 1, base_path=root)).shape)
    assert sizes[0] == sizes[1] == sizes[2]
    assert sizes[0][1] > 1.3 * sizes[0][0]  # 24 columns are wider than 16 rows are tall
