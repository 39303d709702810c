"""Robustness: the metrics of a set re-scored under common image corruptions at several strengths."""

from __future__ import annotations

import albumentations as A
import cv2
import pandas as pd

from dfcore.evaluation.decision import DecisionRule
from dfcore.evaluation.metrics import binary_metrics

# kind -> (what the severity measures, severities from mild to strong); applied to the image as stored
CORRUPTIONS = {
    "jpeg": ("JPEG quality", (90, 70, 50, 30)),
    "blur": ("Gaussian blur sigma (pixels)", (0.5, 1.0, 2.0, 3.0)),
    "downscale": ("downscale factor (then upscaled back)", (0.75, 0.5, 0.33, 0.25)),
    "noise": ("Gaussian noise std (share of 255)", (0.02, 0.05, 0.1, 0.2)),
}


def corruption(kind: str, severity: float) -> A.BasicTransform:
    """Returns the albumentations transform that applies corruption ``kind`` at ``severity``, always."""
    if kind == "jpeg":
        return A.ImageCompression(quality_range=(int(severity), int(severity)), p=1)
    if kind == "blur":
        return A.GaussianBlur(blur_limit=0, sigma_limit=(severity, severity), p=1)  # kernel size from sigma
    if kind == "downscale":
        return A.Downscale(scale_range=(severity, severity),
                           interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=1)
    if kind == "noise":
        return A.GaussNoise(std_range=(severity, severity), p=1)
    raise ValueError(f"corruption must be one of {sorted(CORRUPTIONS)}, got {kind!r}")


def robustness_sweep(scorer, name: str, manifest: pd.DataFrame, root, rule: DecisionRule, *,
                     corruptions: dict = CORRUPTIONS, seed: int = 0) -> pd.DataFrame:
    """Returns one row per corruption and severity: every `binary_metrics` number of the re-scored set
    (calibrated, at the rule's threshold) and the scoring speed."""
    rows = []
    for kind, (_, severities) in corruptions.items():
        for severity in severities:
            scores = scorer(f"{name}/{kind}{severity}", manifest, root, corruption=corruption(kind, severity),
                            seed=seed)
            rows.append({"corruption": kind, "severity": severity,
                         **binary_metrics(scores.label, rule.prob(scores), rule.threshold),
                         "images_per_s": scores.images_per_s})
    return pd.DataFrame(rows)
