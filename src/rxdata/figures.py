"""Pictures of sites and plates, as PNG files (matplotlib, drawn off-screen).

Contract:

* :func:`site_figure` draws a site ``(H, W, C)``: its RGB composite
  (:func:`~rxdata.color.convert_tensor_to_rgb`, the rxrx1-utils colours) next to a grid of
  its channels in grayscale, titled ``experiment / plate / well / site``.
* :func:`render_site` loads a site from a data root and writes that picture to a PNG;
  :func:`render_plate` writes a plate montage (one RGB thumbnail per well, on the
  plate's row/column grid) with, when the metadata is given, a plate map of well types.
* Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through
  ``pyplot``: no global state, no display needed, safe in worker processes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from rxdata import _io
from rxdata.color import DEFAULT_CHANNELS, RGB_MAP, RgbMap, convert_tensor_to_rgb
from rxdata.errors import ImageNotFoundError, OptionsError
from rxdata.images import default_root, load_site
from rxdata.naming import normalize_experiment
from rxdata.roots import find_root

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["CHANNEL_NAMES", "render_plate", "render_site", "site_figure"]

CHANNEL_NAMES: dict[int, str] = {
    1: "Hoechst (nuclei)",
    2: "ConA (ER)",
    3: "Phalloidin (actin)",
    4: "SYTO14 (nucleoli)",
    5: "MitoTracker (mitochondria)",
    6: "WGA (Golgi, membranes)",
}
"""The stain imaged in each RxRx1 channel."""

_ROWS = "ABCDEFGHIJKLMNOP"  # a 384-well plate: rows A..P, columns 1..24
_N_COLUMNS = 24
_WELL_TYPE_COLOURS = {
    "treatment": (0.80, 0.80, 0.80),
    "positive_control": (0.90, 0.45, 0.10),
    "negative_control": (0.15, 0.35, 0.85),
}


def _png(fig: Figure, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _write(data: bytes, out: str | os.PathLike[str] | None) -> None:
    if out is not None:
        parent = _io.dirname(out)
        if parent:
            _io.makedirs(parent)
        _io.write_bytes_atomic(out, data)


def site_figure(
    site: npt.ArrayLike,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    *,
    title: str = "",
    rgb_map: RgbMap = RGB_MAP,
    percentile: float = 99.9,
) -> Figure:
    """Draw a site: RGB composite plus one grayscale panel per channel.

    Args:
        site: ``(H, W, C) uint8`` with ``C == len(channels)``.
        channels: Channel number of each plane.
        title: Figure title.
        rgb_map: Colour map of the composite.
        percentile: Each grayscale panel is stretched from 0 to this percentile of its
            pixels (fluorescence images are dark; the composite is never stretched).

    Returns:
        A ``matplotlib.figure.Figure`` (save it with ``fig.savefig``).

    Example:
        >>> import numpy as np
        >>> fig = site_figure(np.zeros((8, 8, 6), np.uint8), title="demo")
        >>> len(fig.axes)
        7
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arr = np.asarray(site)
    chans = tuple(channels)
    rgb = convert_tensor_to_rgb(arr, chans, rgb_map=rgb_map)  # validates shape and channels
    if not 0 < percentile <= 100:
        raise OptionsError(f"percentile={percentile!r} must be in (0, 100]")
    n = len(chans)
    cols = (n + 1) // 2 if n > 1 else 1
    fig = Figure(figsize=(3.2 * (cols + 2), 6.6), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, cols + 2)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title("RGB composite (rxrx1-utils colours)")
    ax.set_axis_off()
    for i, c in enumerate(chans):
        ax = fig.add_subplot(grid[i // cols, 2 + i % cols])
        plane = arr[..., i]
        top = max(float(np.percentile(plane, percentile)), 1.0)
        ax.imshow(plane, cmap="gray", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(f"w{c} {CHANNEL_NAMES.get(c, '')}".strip(), fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def render_site(
    dataset: str | None,
    experiment: str,
    plate: int,
    well: str,
    site: int,
    *,
    base_path: str | os.PathLike[str] | None = None,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    out: str | os.PathLike[str] | None = None,
    layout: str | None = None,
    dpi: int = 100,
) -> bytes:
    r"""Load a site and render it (:func:`site_figure`) as a PNG.

    Arguments as in :func:`rxdata.load_site`; ``dataset=None`` finds a Kaggle experiment
    under ``train/`` or ``test/``.

    Args:
        dataset: ``"train"``/``"test"``, or ``None``.
        experiment: Experiment name.
        plate: Plate number.
        well: Well address.
        site: Site number.
        base_path: Data root (default ``$RXDATA_ROOT`` or the current directory).
        channels: Channels to load and draw.
        out: Also write the PNG to this path (local or ``gs://``).
        layout: ``"kaggle"``, ``"full"`` or ``None`` (detect).
        dpi: Resolution of the PNG.

    Returns:
        The PNG's bytes.

    Example:
        >>> import os, numpy as np
        >>> from PIL import Image
        >>> os.makedirs("root/images/RPE-01/Plate1")
        >>> for c in range(1, 7):
        ...     Image.fromarray(np.full((16, 16), 20 * c, np.uint8)).save(
        ...         f"root/images/RPE-01/Plate1/B02_s1_w{c}.png")
        >>> png = render_site(None, "RPE-01", 1, "B02", 1, base_path="root", out="site.png")
        >>> png[:4], os.path.exists("site.png")
        (b'\x89PNG', True)
    """
    x = load_site(dataset, experiment, plate, well, site, channels, base_path, layout=layout)
    fig = site_figure(x, channels, title=f"{experiment} / plate {plate} / {well} / site {site}")
    data = _png(fig, dpi)
    _write(data, out)
    return data


def _thumbnail(rgb: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    from PIL import Image

    im = Image.fromarray(rgb).resize((size, size), Image.Resampling.BOX)
    return np.asarray(im)


def render_plate(
    dataset: str | None,
    experiment: str,
    plate: int,
    *,
    base_path: str | os.PathLike[str] | None = None,
    metadata: pd.DataFrame | None = None,
    site: int = 1,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    thumb: int = 48,
    out: str | os.PathLike[str] | None = None,
    layout: str | None = None,
    dpi: int = 100,
) -> bytes:
    r"""Render a plate montage: each well's site as an RGB thumbnail on the plate grid.

    Wells come from ``metadata`` (rows of this experiment and plate) when given, else from
    the files of ``site`` found in the plate folder. With ``metadata`` a second panel maps
    the well types (treatment, positive and negative controls). Wells whose images are
    missing stay black.

    Returns:
        The PNG's bytes (also written to ``out`` when given).

    Example:
        >>> import os, numpy as np
        >>> from PIL import Image
        >>> os.makedirs("root/train/HUVEC-01/Plate2")
        >>> for well in ("B02", "C05"):
        ...     for c in range(1, 7):
        ...         Image.fromarray(np.full((8, 8), 30, np.uint8)).save(
        ...             f"root/train/HUVEC-01/Plate2/{well}_s1_w{c}.png")
        >>> render_plate("train", "HUVEC-01", 2, base_path="root")[:4]
        b'\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if thumb < 2:
        raise OptionsError(f"thumb={thumb!r} must be >= 2 pixels")
    root = default_root() if base_path is None else base_path
    data_root = find_root(root, layout=layout)
    lay = data_root.layout
    dataset, on_disk = data_root.locate(dataset, experiment)
    well_types: dict[str, str] = {}
    if metadata is not None:
        canonical = normalize_experiment(experiment)  # HUVEC-1 finds HUVEC-01's rows
        rows = metadata[
            (metadata["experiment"].astype(str).map(normalize_experiment) == canonical)
            & (metadata["plate"].astype(int) == int(plate))
        ]
        wells = sorted(set(rows["well"].astype(str)))
        if "well_type" in rows.columns:
            well_types = dict(
                zip(rows["well"].astype(str), rows["well_type"].astype(str), strict=True)
            )
    else:
        folder = os.path.dirname(data_root.path(dataset, on_disk, plate, "A01", site, 1))
        suffix = f"_s{int(site)}_w{int(channels[0])}.png"
        wells = sorted(
            os.path.basename(p)[: -len(suffix)]
            for p in _io.glob(_io.join(_io.glob_escape(folder), f"*{suffix}"))
        )
    if not wells:
        raise ImageNotFoundError(
            f"no wells of {experiment} plate {plate} site {site} under {os.fspath(root)}"
        )
    # Always the whole 384-well plate, so that every plate's picture has the same grid.
    n_rows, n_cols = len(_ROWS), _N_COLUMNS
    montage = np.zeros((n_rows * thumb, n_cols * thumb, 3), np.uint8)
    for w in wells:
        try:
            x = load_site(dataset, experiment, plate, w, site, channels, root, layout=lay)
        except ImageNotFoundError:
            continue  # missing wells stay black; the picture is for looking, not checking
        r, c = _ROWS.index(w[0]), int(w[1:]) - 1
        montage[r * thumb : (r + 1) * thumb, c * thumb : (c + 1) * thumb] = _thumbnail(
            convert_tensor_to_rgb(x, channels), thumb
        )
    panels = 2 if well_types else 1
    fig = Figure(figsize=(0.42 * n_cols * panels + 1, 0.42 * n_rows + 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    axes[0].imshow(montage, extent=(0.5, n_cols + 0.5, n_rows - 0.5, -0.5))
    axes[0].set_title(f"site {site}, RGB composite")
    if well_types:
        plate_map = np.ones((n_rows, n_cols, 3))
        for w, kind in well_types.items():
            plate_map[_ROWS.index(w[0]), int(w[1:]) - 1] = _WELL_TYPE_COLOURS.get(kind, (0, 0, 0))
        axes[1].imshow(plate_map, extent=(0.5, n_cols + 0.5, n_rows - 0.5, -0.5))
        axes[1].set_title("well types: grey treatment, orange positive, blue negative control")
    for ax in axes:
        ax.set_yticks(range(n_rows), list(_ROWS[:n_rows]), fontsize=7)
        ax.set_xticks(range(1, n_cols + 1), [str(i) for i in range(1, n_cols + 1)], fontsize=6)
    fig.suptitle(f"{experiment} / plate {plate}")
    data = _png(fig, dpi)
    _write(data, out)
    return data
