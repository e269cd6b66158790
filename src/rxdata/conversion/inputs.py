"""Content identity of a conversion's inputs: are the images still the ones converted?

A re-run decides what to keep by each input file's size and modification time
(:func:`rxdata.conversion.shard.site_input`): cheap, but blind to a same-size replacement
whose modification time was restored (``cp -p``, ``rsync -t``, ``os.utime``). The
conversion also records a content hash of every input image
(:func:`rxdata.conversion.shard.content_hash`, in the manifest's ``site_contents``, by
the hash each shard entry names in ``content_hash``: XXH3-64 now; entries without the name
were written by earlier versions with a SHA-256 prefix and are checked with it);
:func:`check_inputs` reads every input again and compares, the way ``rsync --checksum``
does, naming each file whose bytes changed. ``rxdata verify OUTPUT_DIR --inputs ROOT``
and ``rxdata.verify(OUTPUT_DIR, inputs=ROOT)`` run it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rxdata import _io
from rxdata.conversion.shard import (
    ShardContext,
    content_hash,
    recorded_content_hash,
    site_files,
)
from rxdata.errors import MetadataError, RecordError
from rxdata.roots import find_root

__all__ = ["check_inputs"]


def _row(site_id: str, dataset: str) -> dict[str, Any]:
    """The path-building part of a site's metadata row, from its id."""
    experiment, plate, well, site = site_id.rsplit("_", 3)
    return {
        "site_id": site_id,
        "dataset": dataset,
        "experiment": experiment,
        "plate": int(plate),
        "well": well,
        "site": int(site),
    }


def check_inputs(
    manifest: Mapping[str, Any], output_dir: str, images_root: str | os.PathLike[str]
) -> list[str]:
    """Re-hash every input image a conversion recorded; one line per file that differs.

    Args:
        manifest: The conversion's manifest (:func:`rxdata.records.read_manifest`).
        output_dir: The conversion's folder (for the context only; nothing is written).
        images_root: The images' root, as given to :func:`rxdata.conversion.convert`.

    Returns:
        The problems: each changed, missing or unreadable input file by path and site,
        or why no check was possible (a manifest written before content hashes were
        recorded). Empty when every input still has the recorded bytes.

    Example:
        >>> from rxdata.conversion import convert
        >>> from rxdata.records import read_manifest
        >>> from rxdata.synthetic import SyntheticOptions, generate
        >>> root = generate("rxrx1-inputs", SyntheticOptions.tiny(seed=1))
        >>> _ = convert(root, "tf-inputs", datasets=("test",), workers=1)
        >>> check_inputs(read_manifest("tf-inputs"), "tf-inputs", root)
        []
    """
    root = os.fspath(images_root)
    try:
        data = find_root(root, layout=manifest.get("layout"))
    except MetadataError as err:
        return [f"cannot check the inputs: {err}"]
    ctx = ShardContext(
        data.base, data.layout, output_dir, "png", "none", False, False, "raise", (0, 0)
    )
    problems: list[str] = []
    for entry in manifest.get("shards", ()):
        site_ids = [str(i) for i in entry.get("site_ids", ())]
        contents = [str(c) for c in entry.get("site_contents", ())]
        if len(contents) != len(site_ids):
            problems.append(
                f"{entry['path']}: no content hashes recorded (written by an older rxdata); "
                "convert again into a fresh folder to record them"
            )
            continue
        name = recorded_content_hash(entry)
        try:
            content_hash(b"", name)
        except RecordError as err:
            problems.append(f"{entry['path']}: cannot check its inputs: {err}")
            continue
        for site_id, recorded in zip(site_ids, contents, strict=True):
            paths = site_files(ctx, _row(site_id, str(entry["dataset"])))
            for path, want in zip(paths, recorded.split(","), strict=False):
                problems.extend(_compare(path, want, name, site_id, str(entry["path"])))
    return problems


def _compare(path: str, want: str, name: str, site_id: str, shard: str) -> list[str]:
    try:
        got = content_hash(_io.read_bytes(path), name)
    except FileNotFoundError:
        return [f"{path}: missing (site {site_id}, converted into {shard})"]
    except OSError as err:
        return [f"{path}: cannot be read ({err.strerror or err}; site {site_id})"]
    if got == want:
        return []
    return [
        f"{path}: content changed since the conversion ({name} {got} now, {want} "
        f"when converted into {shard}, site {site_id}); re-run the same conversion into a "
        "fresh folder (its size and modification time look unchanged to a resume)"
    ]
