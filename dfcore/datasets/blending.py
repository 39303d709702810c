"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from each real face and a
perturbed copy of itself, blended back through a soft face mask.

A detector trained on them learns the traces every face swap leaves (a blending boundary, a
colour and sharpness mismatch between face and surroundings), not one generator's
fingerprints; that is why SBI travels across data sets. The mask comes from the face's
landmarks where the manifest has them (MTCNN's five points, extrapolated to the face region,
convex hull) or from an ellipse on the face box, and is deformed and blurred; the source copy is
perturbed in colour, sharpness, scale and position; the blend ratio is random. Every random
draw comes from a generator reseeded per (seed, epoch, worker) like the rest of augmentation,
so a resumed run replays it exactly.

The demo set's fakes are made by the same functions (`source_perturbation`, `blend`,
`random_ellipse_mask`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import albumentations as A
import cv2
import numpy as np
import pandas as pd

from dfcore import LABELS

TRAIN_FAKES = ("real", "sbi", "mixed")
MASK_SIDE = 64  # blend masks are made on this grid, then resized to the image


@dataclass(frozen=True)
class BlendSettings:
    """How pseudo-fakes are made; each perturbation has its own knob."""

    colour: float = 1.0  # strength of the colour shift of the source copy (RGB shift, hue/saturation, brightness)
    sharpness: float = 1.0  # strength of the blur-or-sharpen of the source copy
    scale: float = 0.1  # the source copy is resized by up to +-scale (then back into the frame)
    shift: float = 0.05  # and moved by up to +-shift of the side
    elastic: float = 1.0  # strength of the mask's random deformation (0: the hull as it is)
    blur: tuple[float, float] = (0.02, 0.06)  # mask edge blur sigma, as a share of the side
    ratio: tuple[float, float] = (0.5, 1.0)  # blend ratio range (the share of the source inside the mask)
    face_share: float = 0.65  # without landmarks: the face box's side as a share of a pre-cropped face image

    def as_dict(self) -> dict:
        return asdict(self)


def source_perturbation(seed: int, settings: BlendSettings = BlendSettings()) -> A.Compose:
    """Returns the perturbation of the source copy: colour, then blur or sharpen, then a small scale and shift.

    At the default settings this is the demo set's recipe.
    """
    c, s = settings.colour, settings.sharpness
    return A.Compose(
        [
            A.OneOf([
                A.RGBShift(r_shift_limit=30 * c, g_shift_limit=30 * c, b_shift_limit=30 * c, p=1),
                A.HueSaturationValue(hue_shift_limit=15 * c, sat_shift_limit=30 * c, val_shift_limit=30 * c, p=1),
                A.RandomBrightnessContrast(brightness_limit=(0.15 * c, 0.3 * c), contrast_limit=0.2 * c, p=1),
            ], p=1),
            A.OneOf([
                A.GaussianBlur(blur_limit=(5, 9), p=1),
                A.Sharpen(alpha=(0.5 * s, min(1.0, 0.8 * s)), p=1),
            ], p=1 if s > 0 else 0),
            A.Affine(scale=(1 - settings.scale, 1 + settings.scale),
                     translate_percent=(-settings.shift, settings.shift), p=1),
        ],
        seed=seed,
    )


def blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Returns ``mask * source + (1 - mask) * target`` as uint8 (``mask``: HxWx1 in [0, 1])."""
    out = mask * source.astype(np.float32) + (1 - mask) * target.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def random_ellipse_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Returns a soft elliptical mask in [0, 1], HxWx1, at a random place, size and angle (the demo set's)."""
    mask = np.zeros((size, size), np.float32)
    centre = tuple(int(v) for v in rng.uniform(0.35, 0.65, 2) * size)
    axes = tuple(int(v) for v in rng.uniform(0.15, 0.32, 2) * size)
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    sigma = rng.uniform(0.01, 0.04) * size
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask *= rng.uniform(0.8, 1.0)  # blend ratio, as in SBI
    return mask[..., None]


def face_polygon(landmarks) -> np.ndarray:
    """Returns points outlining the face region from MTCNN's five landmarks (eyes, nose, mouth corners).

    Five points only span eyes to mouth; SBI's hull spans brows to chin. The outline is
    extrapolated along the face's own axes, in units of the eye distance: brows above the
    eyes, cheeks beside them, jaw and chin below the mouth.
    """
    le, re, nose, lm, rm = (np.asarray(p, np.float32) for p in landmarks)
    across = re - le
    d = float(np.linalg.norm(across)) or 1.0
    x = across / d  # the face's horizontal axis
    y = np.array([-x[1], x[0]], np.float32)  # and its downward one
    mouth = (lm + rm) / 2
    points = [le - 0.45 * d * y - 0.25 * d * x, re - 0.45 * d * y + 0.25 * d * x,  # brows
              le - 0.55 * d * x, re + 0.55 * d * x,  # cheeks at the eyes
              lm - 0.45 * d * x + 0.1 * d * y, rm + 0.45 * d * x + 0.1 * d * y,  # jaw at the mouth
              mouth + 0.55 * d * y, nose]  # chin
    return np.array(points, np.float32)


def face_mask(shape, landmarks=None, *, face_share: float = 0.65) -> np.ndarray:
    """Returns a hard HxW float mask of the face: the convex hull of `face_polygon`, or without landmarks an
    ellipse on the central face box (``face_share`` of the side) of a pre-cropped face image."""
    height, width = shape[:2]
    mask = np.zeros((height, width), np.float32)
    if landmarks is not None:
        hull = cv2.convexHull(face_polygon(landmarks).round().astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0)
    else:
        axes = (int(face_share * width / 2 * 0.85), int(face_share * height / 2))
        cv2.ellipse(mask, (width // 2, int(height * 0.52)), axes, 0, 0, 360, 1.0, -1)
    return mask


class SelfBlender:
    """Makes a pseudo-fake of a real face: ``blender(image, landmarks)`` returns ``(fake, mask)``.

    Its generators are reseeded with `set_random_seed`, as albumentations' transforms are.
    """

    def __init__(self, settings: BlendSettings = BlendSettings(), seed: int = 0):
        self.settings = settings
        self.perturb = source_perturbation(seed, settings)
        # on the MASK_SIDE grid: a displacement field of up to ~5% of the side, smooth over ~4%
        self._deform = A.ElasticTransform(alpha=17 * settings.elastic, sigma=2.3, p=1 if settings.elastic > 0 else 0)
        self.set_random_seed(seed)

    def set_random_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.perturb.set_random_seed(seed)
        self._deform_compose = A.Compose([self._deform], seed=seed)

    def mask(self, image: np.ndarray, landmarks=None) -> np.ndarray:
        """Returns the soft HxWx1 blending mask (deformed, blurred, times a random ratio).

        The mask is drawn, deformed and blurred on a MASK_SIDE grid and then resized: it is smooth
        anyway, and at 224 px the deformation and the blur cost 9 ms a face, a quarter of a
        training step's budget on two cores (against under 1 ms on the grid).
        """
        s = self.settings
        height, width = image.shape[:2]
        scale = np.array([MASK_SIDE / width, MASK_SIDE / height])
        points = None if landmarks is None else [np.asarray(p, np.float32) * scale for p in landmarks]
        mask = face_mask((MASK_SIDE, MASK_SIDE), points, face_share=s.face_share)
        if s.elastic > 0:
            mask = self._deform_compose(image=mask)["image"]
        mask = cv2.GaussianBlur(mask, (0, 0), self.rng.uniform(*s.blur) * MASK_SIDE)
        mask = mask / max(float(mask.max()), 1e-6) * self.rng.uniform(*s.ratio)
        return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]

    def __call__(self, image: np.ndarray, landmarks=None) -> tuple[np.ndarray, np.ndarray]:
        source = self.perturb(image=image)["image"]
        mask = self.mask(image, landmarks)
        return blend(image, source, mask), mask


def parse_landmarks(value):
    """Returns the landmarks of a manifest row (a JSON list of [x, y]) or None where it has none."""
    if not isinstance(value, str) or not value.strip():
        return None
    points = json.loads(value)
    return points if points and len(points) == 5 else None


def training_rows(manifest: pd.DataFrame, fakes: str) -> pd.DataFrame:
    """Returns the rows a training epoch draws from, with ``synthetic`` marking the pseudo-fakes.

    'real': the manifest as it is. 'sbi': its real faces, and one pseudo-fake of each (label 1),
    real fakes left out. 'mixed': every row, plus one pseudo-fake of each real face. The labels
    include the pseudo-fakes, so class balancing counts them.
    """
    if fakes not in TRAIN_FAKES:
        raise ValueError(f"train_fakes must be one of {TRAIN_FAKES}, got {fakes!r}")
    rows = manifest.reset_index(drop=True)
    rows = rows.assign(row=np.arange(len(rows)), synthetic=False)  # row: where its image is in the manifest
    if fakes == "real":
        return rows
    real = rows[rows["label"] == LABELS["real"]]
    synthetic = real.assign(label=LABELS["fake"], synthetic=True)
    kept = real if fakes == "sbi" else rows
    return pd.concat([kept, synthetic], ignore_index=True)
