"""Image transforms (albumentations): seeded training augmentation, plain resize-and-normalise for evaluation."""

from __future__ import annotations

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

AUGMENTS = ("recipe", "shift", "flip")


def build_transforms(image_size: int, mean, std, *, train: bool, augment: str = "recipe", seed: int = 0,
                     corruption: A.BasicTransform | None = None) -> A.Compose:
    """Returns the training (augmenting) or evaluation transform for HxWx3 uint8 RGB arrays.

    Training uses the MViTv2 recipe's set: horizontal flip, colour jitter, one of JPEG
    compression or Gaussian blur, and Gaussian noise (``augment='recipe'``); ``augment='shift'``: horizontal flip,
    a shift of up to 1/12 of the side in whole pixels (mirrored border, nothing resampled) and contrast up to
    +-20%, with no blur, noise or recompression; ``augment='flip'`` keeps only the flip. Evaluation only resizes
    and normalises, after ``corruption`` (an albumentations transform applied to the image as stored, for
    robustness tests) when given.
    ``mean`` and ``std`` come from the model's ``pretrained_cfg``, never from constants here.
    """
    resize = A.Resize(image_size, image_size)
    finish = [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    if not train:
        return A.Compose([*([corruption] if corruption is not None else []), resize, *finish], seed=seed)
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    steps = [A.HorizontalFlip(p=0.5)]
    if augment == "shift":
        pad = max(1, image_size // 12)
        steps += [
            A.PadIfNeeded(image_size + 2 * pad, image_size + 2 * pad, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(image_size, image_size),
            A.ColorJitter(brightness=0.0, contrast=0.2, saturation=0.0, hue=0.0, p=1.0),
        ]
    elif augment == "recipe":
        steps += [
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02, p=0.5),
            A.OneOf([A.ImageCompression(quality_range=(60, 100), p=1), A.GaussianBlur(blur_limit=(3, 5), p=1)], p=0.3),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        ]
    return A.Compose([resize, *steps, *finish], seed=seed)
