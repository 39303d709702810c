"""Data: manifests from data roots, the built-in demo set, torch datasets and transforms."""

from dfcore.datasets.demo import make_demo_set
from dfcore.datasets.manifest import (
    DataError,
    build_manifest,
    load_manifests,
    save_manifests,
)
from dfcore.datasets.dataset import ManifestDataset, make_loader, read_rgb, seed_augmentation, split_loader
from dfcore.datasets.transforms import build_transforms

__all__ = [
    "DataError",
    "ManifestDataset",
    "build_manifest",
    "build_transforms",
    "load_manifests",
    "make_demo_set",
    "make_loader",
    "read_rgb",
    "save_manifests",
    "seed_augmentation",
    "split_loader",
]
