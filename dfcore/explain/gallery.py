"""Which test images to explain: outcomes (TP, TN, FP, FN), the most confident and the borderline ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from dfcore.datasets import read_rgb

OUTCOMES = {
    "TP": "true positives (fakes caught)",
    "TN": "true negatives (reals passed)",
    "FP": "false positives (reals called fake)",
    "FN": "false negatives (fakes missed)",
}


def outcomes(predictions: pd.DataFrame) -> pd.Series:
    """Returns each row's outcome, 'TP', 'TN', 'FP' or 'FN', from its ``label`` and ``prediction`` (1 = fake)."""
    label = predictions["label"].astype(int).to_numpy()
    called = predictions["prediction"].astype(int).to_numpy()
    names = np.where(called == 1, np.where(label == 1, "TP", "FP"), np.where(label == 0, "TN", "FN"))
    return pd.Series(names, index=predictions.index, name="outcome")


def select_outcomes(predictions: pd.DataFrame, *, threshold: float, n_per_group: int,
                    prob: str = "prob_fake_calibrated") -> pd.DataFrame:
    """Returns up to ``n_per_group`` confident and ``n_per_group`` borderline rows of each outcome.

    Confident: furthest from ``threshold`` on the side the model called (highest P(fake) for
    TP and FP, lowest for TN and FN); borderline: closest to it, among the rest, so no image
    is shown twice. ``prob`` is the column the decision compared with ``threshold`` (notebook
    05 decides on calibrated P(fake)). Adds ``outcome``, ``selection`` and ``margin`` (P - threshold).
    """
    table = predictions.assign(outcome=outcomes(predictions), margin=predictions[prob] - threshold)
    chosen = []
    for outcome in OUTCOMES:
        rows = table[table["outcome"] == outcome]
        distance = rows["margin"].abs()
        confident = rows.loc[distance.sort_values(ascending=False, kind="stable").index[:n_per_group]]
        rest = rows.drop(confident.index)
        borderline = rest.loc[rest["margin"].abs().sort_values(kind="stable").index[:n_per_group]]
        chosen += [confident.assign(selection="confident"), borderline.assign(selection="borderline")]
    return pd.concat(chosen)


def load_images(paths, *, data_root, transform, image_size: int) -> tuple[list[np.ndarray], torch.Tensor]:
    """Returns the images at ``paths`` (under ``data_root``) as the model sees them: resized HxWx3 uint8 for
    showing, and the transformed (normalised) B x 3 x H x W batch."""
    originals = [read_rgb(Path(data_root) / p) for p in paths]
    batch = torch.stack([transform(image=img)["image"] for img in originals])
    return [cv2.resize(img, (image_size, image_size)) for img in originals], batch
