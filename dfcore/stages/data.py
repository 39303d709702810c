"""Stage 01, data manifests: the data root (or the built-in demo set) listed with labels (1 = fake), splits and groups,
checked (corrupt files named and left out, leakage across splits stopped), faces cut from videos and photographs,
and pre-cropped faces measured (landmarks, crop geometry)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dfcore import CLASS_NAMES
from dfcore.artifacts import StageOutputs, write_metrics
from dfcore.config import DataConfig as Config
from dfcore.datasets import (
    CropSettings,
    build_manifest,
    crop_data_root,
    find_landmarks,
    holds_videos,
    make_demo_set,
    matching_crop,
    save_manifests,
)

__all__ = ["Config", "DataResult", "crop_settings", "run"]


def crop_settings(config: Config, **changes) -> CropSettings:
    """Returns how notebook 01's parameters say faces are found and cut (``changes`` on top)."""
    c = config
    return CropSettings(**{"detector": c.face_detector, "frames_per_video": c.frames_per_video, "margin": c.face_margin,
                           "size": c.crop_size, "min_face": c.min_face_size, "keep": c.keep_faces, **changes})


@dataclass
class DataResult:
    """What notebook 01 shows: the manifest and its checks, the crops cut from videos or photographs, and the
    geometry of pre-cropped faces."""

    config: Config
    root: Path  # the data root as given (or the demo set's)
    manifest_root: Path  # where the manifest's paths start: the root, or the folder of the crops cut here
    uses_demo: bool
    crops: object | None  # `dfcore.datasets.faces.CropResult` when faces were cut here
    manifests: object  # `dfcore.datasets.manifest.ManifestResult`
    landmarks: pd.DataFrame | None  # pre-cropped faces measured (face_landmarks or match_crops)
    geometry: dict | None  # match_crops: how the pre-cropped faces were cut
    face_crop: dict | None  # the crop settings stored with the manifests (and every checkpoint)

    @property
    def manifest(self) -> pd.DataFrame:
        return self.manifests.manifest

    @property
    def real_train(self) -> pd.Series:
        return (self.manifest["split"] == "train") & (self.manifest["label"] == 0)

    def counts(self) -> pd.DataFrame:
        """Returns images per split and class, groups and the fake share."""
        m = self.manifest
        counts = pd.crosstab(m["split"], m["label"].map(dict(enumerate(CLASS_NAMES)))).reindex(["train", "val", "test"])
        counts["groups"] = m.groupby("split")["group"].nunique()
        counts["fake share"] = (counts["fake"] / (counts["fake"] + counts["real"])).round(3)
        return counts

    def training_samples(self, n: int = 8) -> pd.DataFrame:
        """Returns ``n`` training images of each class (reals first), drawn with the seed."""
        train = self.manifest[self.manifest["split"] == "train"]
        return pd.concat([(rows := train[train["label"] == label]).sample(min(n, len(rows)), random_state=self.config.seed)
                          for label in (0, 1)])

    def measured_faces(self, n: int = 8) -> pd.DataFrame:
        """Returns ``n`` real training faces whose landmarks were found, drawn with the seed (empty without)."""
        if self.landmarks is None:
            return pd.DataFrame()
        rows = self.landmarks[self.real_train & self.landmarks["landmarks"].ne("")]
        return rows.sample(min(n, len(rows)), random_state=self.config.seed)

    def left_out(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Returns the unreadable files (path, reason) and the rows dropped for leakage."""
        return pd.DataFrame(self.manifests.corrupt, columns=["path", "reason"]), self.manifests.dropped


def run(config: Config) -> DataResult:
    """Builds and checks the manifests (cutting faces first where the root holds videos or ``detect_faces``),
    writes ``manifests/`` and ``metrics/01_data_manifests.json``; returns the result."""
    c = config
    out = StageOutputs(c.run_dir)
    uses_demo = not c.data_dir
    root = (make_demo_set(c.demo_dir, seed=c.seed, image_size=c.demo_image_size,
                          crops_per_photo=c.demo_crops_per_photo) if uses_demo else Path(c.data_dir))
    crops_faces = not uses_demo and (c.detect_faces or holds_videos(root))
    print(f"data root: {root} ({'built-in demo set' if uses_demo else 'user data'}); faces cropped here: {crops_faces}")
    crops, face_crop = None, None
    if crops_faces:
        settings = crop_settings(c)
        crops = crop_data_root(root, out.root / "faces", settings)
        face_crop = settings.as_dict()
        sources = crops.sources
        print(f"{len(sources)} sources ({sources['kind'].value_counts().to_dict()}), {int(sources['crops'].sum())} "
              f"face crops, {int(sources['reused'].sum())} reused from the cache, {len(crops.failed)} left out")
        print(f"groups: {crops.group_rule}")
    manifest_root = crops.root if crops_faces else root
    manifests = build_manifest(manifest_root, split_ratios=(1 - c.val_ratio - c.test_ratio, c.val_ratio, c.test_ratio),
                               split_groups={"val": c.val_groups, "test": c.test_groups}
                               if c.val_groups or c.test_groups else None, seed=c.seed, on_leak=c.on_leak)
    found, geometry = None, None
    real_train = (manifests.manifest["split"] == "train") & (manifests.manifest["label"] == 0)
    if (c.face_landmarks or c.match_crops) and not crops_faces:  # faces cut here have their landmarks already
        found = find_landmarks(root, manifests.manifest, out.root / "faces" / "landmarks.csv",
                               CropSettings(min_face=c.min_face_size), which=real_train)
        print(f"landmarks found in {int(found.loc[real_train, 'landmarks'].ne('').sum())} of {int(real_train.sum())} "
              "real training faces")
        if c.face_landmarks:
            manifests.manifest = found
        if c.match_crops:
            matched, geometry = matching_crop(found[real_train], crop_settings(c, margin=CropSettings.margin,
                                                                              size=CropSettings.size))
            face_crop = matched.as_dict()
            print(f"crop side / face box side: median {geometry['crop_side_over_face_side']} (IQR {geometry['iqr']}): "
                  f"new faces are cut with margin {matched.margin}, offset {matched.offset}, {matched.size} px")
    manifest_paths = save_manifests(manifests, out.manifests, face_crop=face_crop)
    result = DataResult(c, root, manifest_root, uses_demo, crops, manifests, found, geometry, face_crop)
    print(f"layout: {manifests.layout}; {len(result.manifest)} images kept, {len(manifests.corrupt)} unreadable, "
          f"{len(manifests.dropped)} dropped for leakage")
    print(f"groups: {manifests.group_rule}")
    counts = result.counts()
    write_metrics(out.metrics / "01_data_manifests.json", {
        "data_root": str(root),
        "layout": manifests.layout,
        "group_rule": manifests.group_rule,
        "uses_demo_set": uses_demo,
        "face_crop": face_crop,
        "face_geometry": geometry,  # match_crops: how the pre-cropped faces were cut
        "face_sources": crops.sources.to_dict("records") if crops_faces else [],
        "face_sources_left_out": [{"path": p, "reason": r} for p, r in crops.failed] if crops_faces else [],
        "counts": {split: {"real": int(row["real"]), "fake": int(row["fake"]), "groups": int(row["groups"])}
                   for split, row in counts.iterrows()},
        "corrupt": [{"path": p, "reason": r} for p, r in manifests.corrupt],
        "dropped_for_leakage": int(len(manifests.dropped)),
        "manifests": {split: str(path) for split, path in manifest_paths.items()},
    }, headline={
        "data": "built-in demo set" if uses_demo else str(root),
        "images (train/val/test)": "/".join(str(int(counts.loc[s, ["real", "fake"]].sum())) for s in ["train", "val", "test"]),
        "corrupt files left out": len(manifests.corrupt),
        **({"videos/photos cropped (left out)": f"{len(crops.sources)} ({len(crops.failed)})"} if crops_faces else {}),
    })
    return result
