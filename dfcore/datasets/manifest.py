"""Manifests: one table of every usable image under a data root, with label, split and group.

A manifest has the columns ``path`` (POSIX, relative to the data root), ``label``
(1 = fake, everywhere), ``split`` (train/val/test), ``group`` (the source an image came
from: a video, a person, a photograph), ``sha256``, ``width`` and ``height``.

Three ways in:
- the Kaggle "Deepfake and Real Images" layout: ``Train|Validation|Test`` x ``Real|Fake``
  (any letter case);
- a plain ``real/`` + ``fake/`` layout, split by group with fixed ratios;
- either of them with a ``metadata.csv`` at the root naming each file's group (column
  ``group``, ``source_video``, ``source``, ``original`` or ``video``), and optionally its label
  and split.

A file that ``metadata.csv`` gives no group gets one by a rule the result names
(`ManifestResult.group_rule`), chosen so that frames of one video never cross splits by
accident:
- where folders give the splits (Kaggle), a file is its own group (its path), never its bare
  name: the Kaggle set names files ``fake_0.jpg`` afresh in every split; files in a sub-folder
  of a class folder (a folder per video) share that folder;
- in the plain layout, a sub-folder of ``real/`` or ``fake/`` is one video; flat files named
  like ``<video>_<frame>.jpg`` (``_0001``, ``-12``, ``_frame_3``) take ``<video>``, unless the
  prefixes are plainly counters (a class name, or fewer than three of them); anything else is
  its own group.
Exact copies are caught by sha256 whatever the groups.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from dfcore import LABELS

SPLITS = ("train", "val", "test")
COLUMNS = ["path", "label", "split", "group", "sha256", "width", "height"]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
GROUP_COLUMNS = ("group", "source_video", "source", "original", "video")
# Carried from metadata.csv into the manifest when present (written by the face-crop step).
EXTRA_COLUMNS = ("video", "frame", "face", "face_box", "face_score", "landmarks")
_FRAME_NAME = re.compile(r"^(?P<video>.+?)[_-](?:frame[_-]?)?\d+$", re.IGNORECASE)
_SPLIT_NAMES = {
    "train": "train", "training": "train",
    "validation": "val", "val": "val", "valid": "val",
    "test": "test", "testing": "test",
}
_SHOWN = 20  # files named in one error message; the rest are counted


class DataError(ValueError):
    """Bad input data: the message names the files or folder and says how to fix it."""


def read_rgb(path) -> np.ndarray:
    """Returns the image at ``path`` as an HxWx3 uint8 RGB array; a `DataError` naming it if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"Cannot read image {path}: it is missing or corrupt. Rebuild the manifests (notebook 01).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class ManifestResult:
    """What `build_manifest` found: the manifest and what it left out."""

    manifest: pd.DataFrame
    root: Path
    layout: str
    group_rule: str = ""  # how files got their groups, in words
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    dropped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS + ["reason"]))


def _name_files(paths, total: int | None = None) -> str:
    paths = list(paths)
    total = len(paths) if total is None else total
    shown = ", ".join(paths[:_SHOWN])
    return shown + (f" ... and {total - _SHOWN} more" if total > _SHOWN else "")


def _children(folder: Path) -> dict[str, Path]:
    return {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir()}


def _files_under(folder: Path, suffixes) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def list_layout(root: Path, suffixes=IMAGE_SUFFIXES, *, all_splits: bool = True) -> tuple[str, pd.DataFrame]:
    """Returns the layout name and a table of path, label, split (None for the plain layout).

    ``suffixes`` picks the files (images by default, `VIDEO_SUFFIXES` for videos). With
    ``all_splits=False`` (an evaluation-only set) a Kaggle layout may hold only some splits.
    """
    children = _children(root)
    split_dirs = {_SPLIT_NAMES[name]: path for name, path in children.items() if name in _SPLIT_NAMES}
    rows = []
    if split_dirs:
        layout = "kaggle"
        for split in SPLITS:
            if split not in split_dirs:
                if not all_splits:
                    continue
                raise DataError(
                    f"{root} has split folders {sorted(p.name for p in split_dirs.values())} but none for "
                    f"'{split}'. The Kaggle layout needs Train/, Validation/ and Test/, each with Real/ and Fake/."
                )
            classes = _children(split_dirs[split])
            for cls in LABELS:
                if cls not in classes:
                    raise DataError(
                        f"{split_dirs[split]} has no '{cls.capitalize()}' folder (found "
                        f"{sorted(p.name for p in classes.values())}). Each split folder needs Real/ and Fake/."
                    )
                rows += [(p, LABELS[cls], split) for p in _files_under(classes[cls], suffixes)]
    elif "real" in children and "fake" in children:
        layout = "plain"
        for cls in LABELS:
            rows += [(p, LABELS[cls], None) for p in _files_under(children[cls], suffixes)]
    else:
        raise DataError(
            f"{root} is not a data root this study reads: expected Train/Validation/Test folders with "
            f"Real/ and Fake/ inside (the Kaggle layout) or real/ and fake/ folders; found "
            f"{sorted(p.name for p in children.values()) or 'no folders'}."
        )
    table = pd.DataFrame(
        [(p.relative_to(root).as_posix(), label, split) for p, label, split in rows],
        columns=["path", "label", "split"],
    )
    return layout, table


def _class_depth(layout: str) -> int:
    """Folders above a file that only say split and class: Kaggle ``Train/Real/``, plain ``real/``."""
    return 2 if layout == "kaggle" else 1


def infer_groups(paths: pd.Series, layout: str) -> tuple[pd.Series, str]:
    """Returns a group per path (for files metadata.csv does not cover) and the rule used, in words.

    The folder and name rules are for frames; a video file is always its own group.
    """
    parts = paths.map(lambda p: p.split("/"))
    depth = _class_depth(layout)
    frames = ~paths.map(lambda p: Path(p).suffix.lower() in VIDEO_SUFFIXES)
    nested = frames & (parts.map(len) > depth + 1)
    groups = paths.copy()
    rules = []
    if nested.any():
        if layout == "kaggle":  # the video folder's path: it names its split, so never crosses
            groups[nested] = parts[nested].map(lambda q: "/".join(q[:depth + 1]))
        else:  # real/<video>/... and fake/<video>/...: the video's folder name
            groups[nested] = parts[nested].map(lambda q: q[depth])
        rules.append(f"{int(nested.sum())} files in a sub-folder per video: the sub-folder")
    alone = ~nested
    if layout == "plain" and (frames & alone).any():
        matches = paths[frames & alone].map(lambda p: _FRAME_NAME.match(Path(p).stem))
        prefixes = matches.map(lambda m: m.group("video") if m else None).dropna()
        counters = set(prefixes.str.lower()) & set(LABELS) or prefixes.nunique() < 3
        if len(prefixes) and not counters:
            groups[prefixes.index] = prefixes
            rules.append(f"{len(prefixes)} files named <video>_<frame>: <video>")
            alone &= ~paths.index.isin(prefixes.index)
    if alone.any():
        rules.append(f"{int(alone.sum())} files: each its own group (its path)")
    return groups, "; ".join(rules)


def _parse_label(value) -> int:
    text = str(value).strip().lower()
    if text in LABELS:
        return LABELS[text]
    if text in ("0", "1"):
        return int(text)
    raise DataError(f"label {value!r} is neither real/fake nor 0/1")


def apply_metadata(root: Path, files: pd.DataFrame, layout: str) -> tuple[pd.DataFrame, str]:
    """Returns the files with groups (and labels, splits and extra columns where ``metadata.csv`` gives them),
    checked to agree with the folders, and the grouping rule in words."""
    meta_path = root / "metadata.csv"
    if not meta_path.exists():
        groups, rule = infer_groups(files["path"], layout)
        return files.assign(group=groups), rule
    meta = pd.read_csv(meta_path, dtype=str)
    if "path" not in meta.columns:
        raise DataError(f"{meta_path} has no 'path' column (columns: {list(meta.columns)}).")
    meta = meta.drop_duplicates("path").set_index("path")
    merged = files.set_index("path")
    known = merged.index.intersection(meta.index)
    group_col = next((c for c in GROUP_COLUMNS if c in meta.columns), None)
    covered = known if group_col else known[:0]
    if group_col:
        covered = known[meta.loc[known, group_col].notna().values]
        merged.loc[covered, "group"] = meta.loc[covered, group_col].values
    rest = merged.index.difference(covered)
    rule = f"{len(covered)} files: metadata.csv column '{group_col}'" if len(covered) else ""
    if len(rest):
        inferred, inferred_rule = infer_groups(pd.Series(rest, index=rest), layout)
        merged.loc[rest, "group"] = inferred.values
        rule = "; ".join(r for r in (rule, inferred_rule) if r)
    for column in EXTRA_COLUMNS:
        if column in meta.columns:
            merged.loc[known, column] = meta.loc[known, column].values
    if "label" in meta.columns:
        try:
            meta_labels = meta.loc[known, "label"].map(_parse_label)
        except DataError as err:
            raise DataError(f"{meta_path}: {err}") from None
        bad = known[meta_labels.values != merged.loc[known, "label"].values]
        if len(bad):
            raise DataError(
                f"{meta_path} gives labels that disagree with the folders for {_name_files(bad)}. "
                "Fix the CSV or move the files."
            )
    if "split" in meta.columns:
        meta_splits = meta.loc[known, "split"].str.lower().map(_SPLIT_NAMES)
        if merged["split"].isna().all():  # plain layout: the CSV decides
            merged.loc[known, "split"] = meta_splits.values
        else:
            bad = known[meta_splits.values != merged.loc[known, "split"].values]
            if len(bad):
                raise DataError(
                    f"{meta_path} gives splits that disagree with the folders for {_name_files(bad)}."
                )
    missing = meta.index.difference(merged.index)
    if len(missing):
        warnings.warn(f"{meta_path} names {len(missing)} files that are not on disk: {_name_files(missing)}")
    return merged.reset_index(), rule


def _named_groups(files: pd.DataFrame, split_groups: dict, root: Path) -> pd.DataFrame:
    """Puts the groups ``split_groups`` names (``{'val': [...], 'test': [...]}``) in that split and every other group
    in train; a name that is no group of the data, or one named for two splits, is a `DataError`."""
    named = {split: [str(g) for g in split_groups.get(split) or []] for split in ("val", "test")}
    if not all(named.values()):
        raise DataError(f"Name groups for both validation and test (val_groups and test_groups), got {named}: the "
                        "groups not named go to train.")
    both = sorted(set(named["val"]) & set(named["test"]))
    if both:
        raise DataError(f"Groups {both} are named for both validation and test: each group goes to one split.")
    todo = files["split"].isna()
    known = set(files.loc[todo, "group"])
    unknown = sorted(g for gs in named.values() for g in gs if g not in known)
    if unknown:
        raise DataError(f"val_groups/test_groups name {unknown}, which are no group of the data under {root} "
                        f"(its groups: {_name_files(sorted(known))}). Fix the names in the profile.")
    split_of = {g: split for split, gs in named.items() for g in gs}
    files.loc[todo, "split"] = files.loc[todo, "group"].map(split_of).fillna("train")
    return files


def _split_by_group(files: pd.DataFrame, ratios, seed: int) -> pd.DataFrame:
    """Assigns whole groups to train/val/test with the given ratios (images of a group never split)."""
    ratios = np.asarray(ratios, dtype=float)
    if ratios.shape != (3,) or (ratios <= 0).any():
        raise DataError(f"split_ratios must be three positive numbers (train, val, test), got {list(ratios)}")
    todo = files["split"].isna()
    groups = np.array(sorted(files.loc[todo, "group"].unique()))
    np.random.default_rng(seed).shuffle(groups)
    edges = np.cumsum(ratios / ratios.sum())[:-1] * len(groups)
    chunks = np.split(groups, np.round(edges).astype(int))
    split_of = {g: split for split, chunk in zip(SPLITS, chunks) for g in chunk}
    files.loc[todo, "split"] = files.loc[todo, "group"].map(split_of)
    return files


def _inspect(path: Path) -> tuple[str, int, int]:
    """Returns sha256, width and height; raises if the file does not decode completely."""
    data = path.read_bytes()
    with Image.open(path) as image:
        image.load()  # full decode: a truncated JPEG fails here, not in the middle of training
        width, height = image.size
    return hashlib.sha256(data).hexdigest(), width, height


def _inspect_all(root: Path, files: pd.DataFrame, workers: int):
    def one(rel):
        try:
            return _inspect(root / rel), None
        except Exception as err:  # any decode failure leaves the file out, named
            return None, f"{type(err).__name__}: {err}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, files["path"]))
    corrupt = [(rel, reason) for rel, (_, reason) in zip(files["path"], results) if reason]
    good = [info is not None for info, _ in results]
    files = files[good].copy()
    info = [info for info, _ in results if info is not None]
    files["sha256"] = [i[0] for i in info]
    files["width"] = [i[1] for i in info]
    files["height"] = [i[2] for i in info]
    return files, corrupt


def _check_not_empty(root: Path, layout: str, files: pd.DataFrame, splits=SPLITS) -> None:
    if not splits:  # an evaluation-only set: both classes somewhere
        for cls, label in LABELS.items():
            if not (files["label"] == label).any():
                raise DataError(f"No readable {cls} images under {root}: an evaluation set needs both classes.")
    for split in splits:
        for cls, label in LABELS.items():
            if not ((files["split"] == split) & (files["label"] == label)).any():
                where = (
                    f"the {split} split's {cls.capitalize()} folder under {root}"
                    if layout == "kaggle"
                    else f"{root / cls} (split '{split}' got none of the {files['group'].nunique()} groups: add "
                    "data, change split_ratios or name its groups (val_groups, test_groups), or give each file's split in a metadata.csv column 'split')"
                )
                raise DataError(f"No readable {cls} images in {where}.")


def _leaks(files: pd.DataFrame, key: str) -> pd.Series:
    """Marks rows whose ``key`` value also appears in another split."""
    n_splits = files.groupby(key)["split"].transform("nunique")
    return n_splits > 1


def _resolve_leaks(files: pd.DataFrame, on_leak: str):
    """Finds exact duplicates and groups that cross splits; stops, or drops them outside their first split."""
    if on_leak not in ("error", "drop"):
        raise ValueError(f"on_leak must be 'error' or 'drop', got {on_leak!r}")
    dropped = []
    for key, what in (("sha256", "identical files (same sha256)"), ("group", "groups")):
        leaking = _leaks(files, key)
        if not leaking.any():
            continue
        rows = files[leaking].sort_values([key, "split", "path"])
        if on_leak == "error":
            listing = [f"{r.path} [{r.split}, {key} {r[key][:12]}]" for _, r in rows.iterrows()]
            raise DataError(
                f"{leaking.sum()} images are {what} found in more than one split, which leaks test data "
                f"into training: {_name_files(listing)}. Remove the copies, fix the split, or run with "
                "on_leak='drop' to keep each in its first split (train, then val, then test) only."
            )
        order = files["split"].map({s: i for i, s in enumerate(SPLITS)})
        first = order.groupby(files[key]).transform("min")
        drop = leaking & (order != first)
        dropped.append(files[drop].assign(reason=f"{key} crosses splits"))
        warnings.warn(f"on_leak='drop': left out {drop.sum()} images whose {key} also appears in an earlier split")
        files = files[~drop]
    dropped = pd.concat(dropped) if dropped else pd.DataFrame(columns=COLUMNS + ["reason"])
    return files, dropped


def build_manifest(
    root,
    *,
    split_ratios=(0.8, 0.1, 0.1),
    split_groups: dict | None = None,
    seed: int = 0,
    on_leak: str = "error",
    workers: int = 8,
    eval_only: bool = False,
) -> ManifestResult:
    """Returns the manifest of every readable image under ``root``, after the leakage checks.

    Corrupt or unreadable files are left out with a warning that names them. Identical files
    or groups found in more than one split stop with a `DataError` naming them (or, with
    ``on_leak='drop'``, are kept in their first split only). An empty class or split is a
    `DataError` naming the folder. Files the layout and ``metadata.csv`` give no split are split by whole groups:
    those ``split_groups`` names (``{'val': [...], 'test': [...]}``) go to that split and the rest to train, or,
    without names, ``split_ratios`` of the groups drawn with ``seed``. ``eval_only`` reads a set that is only ever scored (a
    cross-dataset test set): any splits it has are kept, files without one are ``test``, and it
    needs both classes, not every split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Data root {root} does not exist or is not a folder: pass the folder that holds the images.")
    layout, files = list_layout(root, all_splits=not eval_only)
    if files.empty:
        _, videos = list_layout(root, VIDEO_SUFFIXES, all_splits=not eval_only)
        hint = (f" It holds {len(videos)} videos: notebook 01 crops their faces first "
                "(dfcore.datasets.crop_data_root)." if len(videos) else "")
        raise DataError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}.{hint}")
    files, group_rule = apply_metadata(root, files, layout)
    if eval_only:
        files["split"] = files["split"].fillna("test")
    elif files["split"].isna().any() and split_groups:
        files = _named_groups(files, split_groups, root)
    elif files["split"].isna().any():
        files = _split_by_group(files, split_ratios, seed)
    files, corrupt = _inspect_all(root, files, workers)
    if corrupt:
        warnings.warn(
            f"Left out {len(corrupt)} unreadable or corrupt images under {root}: "
            + _name_files(f"{p} ({why})" for p, why in corrupt)
        )
    required = () if eval_only else SPLITS
    _check_not_empty(root, layout, files, required)
    files, dropped = _resolve_leaks(files, on_leak)
    _check_not_empty(root, layout, files, required)
    order = files["split"].map({s: i for i, s in enumerate(SPLITS)})
    extras = [c for c in EXTRA_COLUMNS if c in files.columns]
    manifest = (
        files.assign(_order=order)
        .sort_values(["_order", "label", "path"])[COLUMNS + extras]
        .reset_index(drop=True)
        .astype({"label": int, "width": int, "height": int, "group": str})
    )
    return ManifestResult(manifest=manifest, root=root, layout=layout, group_rule=group_rule, corrupt=corrupt,
                          dropped=dropped)


def save_manifests(result: ManifestResult, out_dir, *, face_crop: dict | None = None) -> dict[str, Path]:
    """Writes one CSV per split plus ``info.json`` (data root, layout, grouping rule, counts and, when
    the images are faces the study cropped, the crop settings); returns the CSV paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in SPLITS:
        paths[split] = out_dir / f"{split}.csv"
        result.manifest[result.manifest["split"] == split].to_csv(paths[split], index=False)
    info = {
        "data_root": result.root.as_posix(),
        "layout": result.layout,
        "group_rule": result.group_rule,
        "face_crop": face_crop,
        "counts": {s: int((result.manifest["split"] == s).sum()) for s in SPLITS},
        "corrupt": [{"path": p, "reason": r} for p, r in result.corrupt],
        "dropped": int(len(result.dropped)),
    }
    (out_dir / "info.json").write_text(json.dumps(info, indent=2))
    return paths


def manifest_info(manifest_dir) -> dict:
    """Returns the ``info.json`` that `save_manifests` wrote (data root, layout, crop settings, counts)."""
    info_path = Path(manifest_dir) / "info.json"
    if not info_path.exists():
        raise DataError(f"No manifests in {manifest_dir}: run notebook 01_data_manifests first (make reproduce).")
    return json.loads(info_path.read_text())


def manifests_sha256(manifests: dict[str, pd.DataFrame]) -> str:
    """Returns one sha256 over every split's rows (path, label, split, group, content hash, and the landmarks where
    there are any, since self-blended masks follow them): what a run trained on."""
    digest = hashlib.sha256()
    for split in sorted(manifests):
        frame = manifests[split]
        columns = ["path", "label", "split", "group", "sha256"]
        if "landmarks" in frame and frame["landmarks"].fillna("").astype(str).str.strip().ne("").any():
            columns.append("landmarks")
        rows = frame[columns].astype(str)
        digest.update(rows.to_csv(index=False).encode())
    return digest.hexdigest()


def load_manifests(manifest_dir) -> tuple[dict[str, pd.DataFrame], Path]:
    """Returns the per-split manifests written by `save_manifests` and the data root they refer to."""
    manifest_dir = Path(manifest_dir)
    info = manifest_info(manifest_dir)
    frames = {s: pd.read_csv(manifest_dir / f"{s}.csv", dtype={"group": str}) for s in SPLITS}
    return frames, Path(info["data_root"])
