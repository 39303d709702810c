"""The built-in demo set: real photographs shipped inside installed wheels, and fakes made from them.

It demonstrates the pipeline offline and in under a minute; it is not a benchmark.

- Real images are random square crops of the photographs that scikit-image and matplotlib
  ship in their wheels (portraits among them: the astronaut, the cameraman, Grace Hopper).
- Fakes are made with two genuine manipulation operations, at the final resolution:
  *self-blending* (a colour/sharpness-perturbed, slightly warped copy of a region blended
  back through a soft elliptical mask, after the Self-Blended Images recipe) and *swaps*
  (a region of a crop of another photograph, colour-matched part of the way, blended in
  through a soft mask).
- Every crop and every fake made from it takes its photograph as its group; photographs
  are assigned to splits whole (so no source crosses splits) and swaps take donors from the
  same split only.

The output is a Kaggle-layout folder (Train/Validation/Test x Real/Fake) with a
``metadata.csv`` naming each file's source, read by `build_manifest` like any other data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import albumentations as A
import cv2
import matplotlib.cbook
import numpy as np
import pandas as pd
import skimage.data
from PIL import Image

from dfcore.datasets.blending import blend, random_ellipse_mask, source_perturbation

# Photographs (not drawings or renderings) shipped inside the scikit-image and matplotlib wheels.
_COLOUR = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
           "motorcycle_left.png", "rocket.jpg", "retina.jpg", "grace_hopper.jpg"]
_GREY = ["camera.png", "coins.png", "brick.png", "grass.png", "gravel.png", "moon.png",
         "microaneurysms.png", "cell.png"]
_SPLIT_FOLDERS = {"train": "Train", "val": "Validation", "test": "Test"}
_VERSION = 1  # bump when the recipe changes, so cached sets are rebuilt


def _photo_path(name: str) -> Path:
    if name == "grace_hopper.jpg":
        return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return Path(skimage.data.data_dir) / name


def _load_photo(name: str) -> np.ndarray:
    """Returns the photograph as an RGB uint8 array."""
    image = np.asarray(Image.open(_photo_path(name)).convert("RGB"))
    return image


def _assign_splits(rng: np.random.Generator) -> dict[str, str]:
    """Assigns whole photographs to splits, colour and grey ones separately so each split has both."""
    split_of = {}
    for names in (_COLOUR, _GREY):
        names = list(rng.permutation(names))
        # one colour and one grey photograph each for validation and test; the rest train
        for split, name in zip(["val", "test"], names[:2]):
            split_of[name] = split
        split_of.update({name: "train" for name in names[2:]})
    return split_of


def _random_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.3, 0.7) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = photo[y:y + side, x:x + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def self_blend(image: np.ndarray, perturb: A.Compose, rng: np.random.Generator) -> np.ndarray:
    """Returns ``image`` with a perturbed copy of a region of itself blended back in."""
    source = perturb(image=image)["image"]
    return blend(image, source, random_ellipse_mask(image.shape[0], rng))


def swap(target: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Returns ``target`` with a region of ``donor`` blended in, its colour matched part of the way."""
    mask = random_ellipse_mask(target.shape[0], rng)
    weights = mask / mask.sum()
    t_mean = (target * weights).sum((0, 1))
    d_mean = (donor * weights).sum((0, 1))
    matched = donor.astype(np.float32) + rng.uniform(0.3, 0.7) * (t_mean - d_mean)
    return blend(target, matched, mask)


def make_demo_set(out_dir, *, seed: int = 0, image_size: int = 96, crops_per_photo: int = 40) -> Path:
    """Returns ``out_dir`` after writing the demo set there (kept as is when already built with these settings).

    For each photograph, ``crops_per_photo`` real crops and as many fakes (half self-blended,
    half swapped) are written as JPEG (quality 95, both classes alike).
    """
    out_dir = Path(out_dir)
    settings = {"version": _VERSION, "seed": seed, "image_size": image_size, "crops_per_photo": crops_per_photo}
    stamp = out_dir / "demo.json"
    if stamp.exists() and json.loads(stamp.read_text()) == settings:
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    rng = np.random.default_rng(seed)
    split_of = _assign_splits(rng)
    perturb = source_perturbation(seed)
    photos = {name: _load_photo(name) for name in _COLOUR + _GREY}
    rows = []
    for name in _COLOUR + _GREY:
        split = split_of[name]
        donors = [n for n in photos if split_of[n] == split and n != name]
        source = Path(name).stem
        for i in range(crops_per_photo):
            real = _random_crop(photos[name], image_size, rng)
            if i % 2 == 0:
                fake = self_blend(real, perturb, rng)
            else:
                donor_photo = photos[donors[rng.integers(len(donors))]]
                fake = swap(real, _random_crop(donor_photo, image_size, rng), rng)
            for label, image in (("real", real), ("fake", fake)):
                rel = f"{_SPLIT_FOLDERS[split]}/{label.capitalize()}/{source}_{i:03d}.jpg"
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(out_dir / rel, quality=95)
                rows.append((rel, label, _SPLIT_FOLDERS[split], source))
    pd.DataFrame(rows, columns=["path", "label", "split", "source"]).to_csv(out_dir / "metadata.csv", index=False)
    stamp.write_text(json.dumps(settings))
    return out_dir
