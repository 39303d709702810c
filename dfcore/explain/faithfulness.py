"""Faithfulness of saliency maps: deletion and insertion curves (Petsiuk et al. 2018, RISE) and their areas.

Deletion replaces the most salient pixels first by a blurred copy of the image, insertion
starts from that blurred copy and reveals the most salient pixels first; both track P(fake).
A blurred copy rather than the mean or black: it removes the fine detail a deepfake detector
reads while keeping the image's colours and layout, so the intermediate images stay closer to
the data than ones with flat holes (whose sharp edges are evidence of their own). A faithful map
makes P(fake) fall fast under deletion (low area) and rise fast under insertion (high area).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import auc
from torchvision.transforms.functional import gaussian_blur

from dfcore import LABELS


def blurred(images: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Returns ``images`` under a Gaussian blur of ``sigma`` pixels (default: 1/16 of the longer side)."""
    sigma = sigma or max(images.shape[-2:]) / 16
    kernel = 2 * math.ceil(3 * sigma) + 1
    kernel = min(kernel, 2 * (min(images.shape[-2:]) // 2) - 1)  # reflect padding needs kernel // 2 < side
    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def _rank(saliency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Returns each pixel's place when sorted most salient first; ties (flat CAM regions) in random order."""
    flat = saliency.ravel()
    order = np.lexsort((rng.random(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(saliency.shape)


def deletion_insertion(model, images: torch.Tensor, maps, *, steps: int = 20, class_idx: int = LABELS["fake"],
                       temperature: float = 1.0, blur_sigma: float | None = None, seed: int = 0) -> dict:
    """Returns the deletion and insertion curves of ``maps`` (B x H x W saliency) on ``images`` (normalised B x 3 x H x W).

    The result holds ``fractions`` (steps + 1 values from 0 to 1: the share of pixels removed or
    revealed) and ``deletion`` and ``insertion``, each B x (steps + 1) arrays of P(class_idx),
    softmax of the logits over ``temperature`` (the decision rule's, for calibrated P(fake)).
    """
    model.eval()
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0, 1, steps + 1)
    pixels = images.shape[-2] * images.shape[-1]
    counts = torch.as_tensor(np.round(fractions * pixels), dtype=torch.int64)
    curves = {"deletion": [], "insertion": []}
    with torch.no_grad():
        for image, saliency in zip(images, np.asarray(maps)):
            image = image.to(device)
            canvas = blurred(image[None], blur_sigma)[0]
            ranks = torch.as_tensor(_rank(saliency, rng), device=device)
            chosen = (ranks[None] < counts.to(device)[:, None, None]).unsqueeze(1).float()  # S+1 x 1 x H x W
            for name, start, end in (("deletion", image, canvas), ("insertion", canvas, image)):
                batch = start[None] * (1 - chosen) + end[None] * chosen
                probs = torch.softmax(model(batch).float() / temperature, dim=1)[:, class_idx]
                curves[name].append(probs.cpu().numpy())
    return {"fractions": fractions, **{name: np.stack(c) for name, c in curves.items()}}


def curve_areas(curves: dict) -> pd.DataFrame:
    """Returns one row per image: the area under its deletion and insertion curves (trapezoids over the fraction)."""
    x = curves["fractions"]
    return pd.DataFrame({name: [auc(x, y) for y in curves[name]] for name in ("deletion", "insertion")})


def faithfulness_table(curves_by_method: dict) -> pd.DataFrame:
    """Returns per method the mean deletion and insertion areas over the images, insertion minus deletion, and
    the mean P(fake) of the images and of their blurred copies (where the curves end).

    ``curves_by_method`` maps a method name to `deletion_insertion`'s result. Lower deletion,
    higher insertion and so a higher difference mean a more faithful explanation.
    """
    rows = []
    for method, curves in curves_by_method.items():
        areas = curve_areas(curves)
        rows.append({"method": method, "images": len(areas),
                     "deletion_auc": areas["deletion"].mean(), "insertion_auc": areas["insertion"].mean(),
                     "insertion_minus_deletion": (areas["insertion"] - areas["deletion"]).mean(),
                     "p_fake_image": float(np.mean(curves["deletion"][:, 0])),
                     "p_fake_blurred": float(np.mean(curves["insertion"][:, 0]))})
    return pd.DataFrame(rows)


def most_faithful(table: pd.DataFrame) -> str:
    """Returns the method with the largest insertion-minus-deletion area, leaving out the random baselines."""
    candidates = table[~table["method"].str.startswith("random")]
    return str(candidates.loc[candidates["insertion_minus_deletion"].idxmax(), "method"])
