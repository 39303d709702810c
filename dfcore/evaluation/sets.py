"""Extra evaluation sets: other data roots or manifest folders, scored with the same model (cross-dataset)."""

from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path

import pandas as pd

from dfcore.datasets import CropSettings, DataError, build_manifest, crop_data_root, holds_videos, load_manifests
from dfcore.datasets.manifest import SPLITS

RESERVED = ("train", "val", "test")  # the study's own splits keep their names


def load_eval_set(source, *, split: str = "all", exclude_sha256=(), crops_dir=None,
                  crop: dict | None = None) -> tuple[str, pd.DataFrame, Path]:
    """Returns the name, manifest rows and data root of one extra evaluation set.

    ``source`` is a data root (read with `build_manifest` as an evaluation-only set: it needs no
    training split, files without a split are ``test``, duplicates across its own splits are
    kept once) or a folder of manifests written by notebook 01 (it holds ``info.json``).
    ``split`` keeps one of its splits, or ``'all'`` of them: a model trained elsewhere saw none.
    Images whose sha256 is in ``exclude_sha256`` (the study's training and validation images)
    are left out with a warning. A data root of videos has its faces cut first, under
    ``crops_dir/<name>`` with ``crop`` (the study's own crop settings as stored in its
    checkpoint; the defaults when None), and is scored per video.

    ``source`` may also be a mapping ``{path: ..., include: glob, name: ..., recrop: bool}``: only
    the files whose path (relative to the root) matches ``include`` are scored (the FaceForensics++
    c23 videos of a mixed folder, say), under ``name``; with ``recrop`` a root of face images
    (cropped by someone else, at another scale) has its faces found and cut again with ``crop``,
    as videos are, so the model sees them at the scale it was trained on.
    """
    include, name, recrop = None, None, False
    if isinstance(source, dict):
        include, name, recrop = source.get("include"), source.get("name"), bool(source.get("recrop", False))
        source = source["path"]
    source = Path(source)
    if split != "all" and split not in SPLITS:
        raise ValueError(f"split must be 'all' or one of {SPLITS}, got {split!r}")
    if (source / "info.json").is_file():
        frames, root = load_manifests(source)
        manifest = pd.concat(frames.values(), ignore_index=True)
    else:
        root = source
        if recrop or holds_videos(source):
            if crops_dir is None:
                raise DataError(f"{source} holds videos or is to be recropped: give crops_dir, where its face crops "
                                "are written.")
            settings = CropSettings(**crop) if crop else CropSettings()
            folder = Path(crops_dir) / (name or source.resolve().name)
            root = crop_data_root(source, folder, settings, eval_only=True, include=include).root
            include = None  # the crops are of the included videos only
        manifest = build_manifest(root, on_leak="drop", eval_only=True).manifest
    if include:
        manifest = manifest[manifest["path"].map(lambda p: fnmatch.fnmatch(p, include))]
    if split != "all":
        manifest = manifest[manifest["split"] == split]
    seen = manifest["sha256"].isin(set(exclude_sha256))
    if seen.any():
        warnings.warn(f"{source}: left out {seen.sum()} images that the study trained or validated on.")
        manifest = manifest[~seen]
    if manifest.empty:
        raise DataError(f"{source} has no images left to evaluate (split {split!r}).")
    return name or root.resolve().name, manifest.reset_index(drop=True), root


def load_eval_sets(sources, *, split: str = "all", exclude_sha256=(), crops_dir=None,
                   crop: dict | None = None) -> dict[str, tuple[pd.DataFrame, Path]]:
    """Returns ``{name: (manifest, root)}`` for every source (see `load_eval_set`), names made unique."""
    sets = {}
    for source in sources:
        name, manifest, root = load_eval_set(source, split=split, exclude_sha256=exclude_sha256, crops_dir=crops_dir,
                                             crop=crop)
        unique, i = name, 1
        while unique in sets or unique in RESERVED:
            i += 1
            unique = f"{name}_{i}"
        sets[unique] = (manifest, root)
    return sets
