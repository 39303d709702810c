"""A torch dataset over a manifest, and the loader settings the study uses everywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from dfcore.datasets.manifest import DataError
from dfcore.datasets.transforms import build_transforms


def read_rgb(path) -> np.ndarray:
    """Returns the image at ``path`` as an HxWx3 uint8 RGB array; a `DataError` naming it if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"Cannot read image {path}: it is missing or corrupt. Rebuild the manifests (notebook 01).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class ManifestDataset(Dataset):
    """Yields ``(image_tensor, label)`` for each manifest row; ``label`` 1 means fake."""

    def __init__(self, manifest: pd.DataFrame, root, transform):
        self.manifest = manifest.reset_index(drop=True)
        self.root = Path(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int):
        row = self.manifest.iloc[index]
        image = self.transform(image=read_rgb(self.root / row["path"]))["image"]
        return image, int(row["label"])


def seed_augmentation(dataset, seed: int) -> None:
    """Seeds the albumentations transform of ``dataset``, if it has one (it keeps its own generators)."""
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """Seeds a loader worker's copy of the transform from the seed torch gave that worker.

    albumentations keeps its own generators and does not reseed per worker, so without this
    every worker would repeat the same augmentations. torch derives each worker's seed from
    the loader's generator, which the trainer reseeds every epoch: augmentation is then a
    function of (seed, epoch, worker), and a resumed run replays it exactly.
    """
    info = torch.utils.data.get_worker_info()
    seed_augmentation(info.dataset, info.seed % 2**32)


def make_loader(
    dataset: ManifestDataset,
    *,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    balance: bool = False,
) -> DataLoader:
    """Returns a DataLoader: shuffled (or class-balanced by weighted sampling) for training, in order otherwise.

    Training workers are started afresh each epoch (not persistent) so that they pick up that
    epoch's seed; evaluation workers, which draw nothing random, persist.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if train and balance:
        labels = torch.as_tensor(dataset.manifest["label"].to_numpy())
        counts = torch.bincount(labels, minlength=2).clamp(min=1).double()
        sampler = WeightedRandomSampler((1.0 / counts)[labels], len(labels), generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) > batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0 and not train,
        worker_init_fn=_seed_worker,
        generator=generator,
    )


def split_loader(
    manifests: dict[str, pd.DataFrame],
    root,
    split: str,
    *,
    image_size: int,
    mean,
    std,
    batch_size: int,
    train: bool = False,
    augment: str = "recipe",
    balance: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    labels: tuple[int, ...] | None = None,
) -> DataLoader:
    """Returns the loader of one split of the manifests (optionally only some labels), with the study's transforms."""
    frame = manifests[split]
    if labels is not None:
        frame = frame[frame["label"].isin(labels)]
    transform = build_transforms(image_size, mean, std, train=train, augment=augment, seed=seed)
    dataset = ManifestDataset(frame, root, transform)
    return make_loader(dataset, batch_size=batch_size, train=train, num_workers=num_workers, seed=seed, balance=balance)
