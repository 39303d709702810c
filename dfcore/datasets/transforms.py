"""Image transforms (albumentations): seeded training augmentation, plain resize-and-normalise for evaluation."""

from __future__ import annotations

import albumentations as A
from albumentations.pytorch import ToTensorV2


def build_transforms(image_size: int, mean, std, *, train: bool, augment: str = "recipe", seed: int = 0,
                     corruption: A.BasicTransform | None = None) -> A.Compose:
    """Returns the training (augmenting) or evaluation transform for HxWx3 uint8 RGB arrays.

    Training uses the MViTv2 recipe's set: horizontal flip, colour jitter, one of JPEG
    compression or Gaussian blur, and Gaussian noise (``augment='recipe'``); ``augment='flip'``
    keeps only the flip. Evaluation only resizes and normalises, after ``corruption`` (an
    albumentations transform applied to the image as stored, for robustness tests) when given.
    ``mean`` and ``std`` come from the model's ``pretrained_cfg``, never from constants here.
    """
    resize = A.Resize(image_size, image_size)
    finish = [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    if not train:
        return A.Compose([*([corruption] if corruption is not None else []), resize, *finish], seed=seed)
    if augment not in ("recipe", "flip"):
        raise ValueError(f"augment must be 'recipe' or 'flip', got {augment!r}")
    steps = [A.HorizontalFlip(p=0.5)]
    if augment == "recipe":
        steps += [
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02, p=0.5),
            A.OneOf([A.ImageCompression(quality_range=(60, 100), p=1), A.GaussianBlur(blur_limit=(3, 5), p=1)], p=0.3),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        ]
    return A.Compose([resize, *steps, *finish], seed=seed)
