"""Data: manifests from data roots, the built-in demo set, torch datasets and transforms."""

from dfcore.datasets.blending import TRAIN_FAKES, BlendSettings, SelfBlender, training_rows
from dfcore.datasets.demo import make_demo_set
from dfcore.datasets.faces import (
    CropSettings,
    FaceDetector,
    crop_data_root,
    crop_face,
    find_landmarks,
    holds_videos,
    matching_crop,
    sample_crops,
)
from dfcore.datasets.manifest import (
    DataError,
    build_manifest,
    load_manifests,
    manifest_info,
    manifests_sha256,
    save_manifests,
)
from dfcore.datasets.video import VideoError, read_frames
from dfcore.datasets.dataset import (
    BlendedDataset,
    ManifestDataset,
    make_loader,
    read_rgb,
    seed_augmentation,
    split_loader,
)
from dfcore.datasets.transforms import build_transforms

__all__ = [
    "TRAIN_FAKES",
    "BlendSettings",
    "BlendedDataset",
    "CropSettings",
    "DataError",
    "FaceDetector",
    "SelfBlender",
    "VideoError",
    "ManifestDataset",
    "build_manifest",
    "build_transforms",
    "crop_data_root",
    "crop_face",
    "find_landmarks",
    "holds_videos",
    "load_manifests",
    "make_demo_set",
    "make_loader",
    "manifest_info",
    "manifests_sha256",
    "matching_crop",
    "read_frames",
    "read_rgb",
    "sample_crops",
    "save_manifests",
    "seed_augmentation",
    "split_loader",
    "training_rows",
]
