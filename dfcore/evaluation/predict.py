"""Scoring: the probability of fake for every image of a loader, in inference mode."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from dfcore.datasets import ManifestDataset, build_transforms, make_loader
from dfcore.runtime import autocast


def model_logits(model, images: torch.Tensor, *, flip: bool = False) -> torch.Tensor:
    """Returns ``model``'s float logits for ``images``; with ``flip``, the mean over each image and its mirror
    image (flip test-time augmentation: faces are trained with horizontal flips, so both views are in the
    training distribution)."""
    logits = model(images).float()
    return (logits + model(images.flip(-1)).float()) / 2 if flip else logits


@torch.inference_mode()
def predict(model, loader, *, device, dtype=None, flip: bool = False) -> dict:
    """Returns ``{'prob': P(fake), 'label', 'logits', 'loss', 'images_per_s'}`` over the whole loader, in order;
    with ``flip``, the logits are the mean over each image and its mirror image (`model_logits`)."""
    model.eval()
    logits, labels = [], []
    start = time.perf_counter()
    for images, targets in loader:
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        with autocast(device, dtype):
            out = model_logits(model, images, flip=flip)
        logits.append(out.cpu())
        labels.append(targets)
    elapsed = time.perf_counter() - start
    logits = torch.cat(logits)
    labels = torch.cat(labels)
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return {
        "prob": torch.softmax(logits, 1)[:, 1].numpy(),
        "label": labels.numpy(),
        "logits": logits.numpy(),
        "loss": loss,
        "images_per_s": len(labels) / max(elapsed, 1e-9),
    }


@dataclass(frozen=True)
class Scores:
    """The scores of one named split or evaluation set: labels and two-class logits, in manifest order."""

    split: str
    label: np.ndarray
    logits: np.ndarray
    images_per_s: float = float("nan")
    flip: bool = False  # the logits are the mean over each image and its mirror image

    @property
    def margin(self) -> np.ndarray:
        """The fake-minus-real logit: P(fake) is its sigmoid."""
        return self.logits[:, 1] - self.logits[:, 0]

    def prob(self, temperature: float = 1.0) -> np.ndarray:
        """Returns P(fake) after dividing the logits by ``temperature`` (1: the model's own probabilities)."""
        return expit(self.margin / temperature)


@dataclass
class Scorer:
    """Scores manifest rows with one model: the evaluation transform (plus an optional corruption), in order."""

    model: torch.nn.Module
    device: torch.device
    image_size: int
    mean: tuple
    std: tuple
    dtype: torch.dtype | None = None
    batch_size: int = 128
    num_workers: int = 0
    flip: bool = False  # flip test-time augmentation: the mean logits of each image and its mirror image

    def __call__(self, name: str, manifest: pd.DataFrame, root, *, corruption=None, seed: int = 0) -> Scores:
        """Returns the `Scores` of ``manifest`` (images under ``root``), named ``name``."""
        transform = build_transforms(self.image_size, self.mean, self.std, train=False, corruption=corruption,
                                     seed=seed)
        loader = make_loader(ManifestDataset(manifest, root, transform), batch_size=self.batch_size, train=False,
                             num_workers=self.num_workers, seed=seed)
        out = predict(self.model, loader, device=self.device, dtype=self.dtype, flip=self.flip)
        return Scores(name, out["label"], out["logits"], out["images_per_s"], self.flip)
