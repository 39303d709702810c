"""Metrics over a whole split (never averaged per batch), computed with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def eer_threshold(labels, probs) -> tuple[float, float]:
    """Returns ``(eer, threshold)``: the equal error rate and the score threshold where FPR equals FNR."""
    fpr, tpr, thresholds = skm.roc_curve(labels, probs)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(min(thresholds[i], 1.0))


def binary_metrics(labels, probs, threshold: float = 0.5) -> dict:
    """Returns AUC, average precision, log loss and the thresholded accuracy metrics (fake = positive class)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    pred = (probs >= threshold).astype(int)
    two_classes = len(np.unique(labels)) == 2
    return {
        "n": int(len(labels)),
        "auc": float(skm.roc_auc_score(labels, probs)) if two_classes else float("nan"),
        "average_precision": float(skm.average_precision_score(labels, probs)) if two_classes else float("nan"),
        "log_loss": float(skm.log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, pred)),
        "f1_fake": float(skm.f1_score(labels, pred, zero_division=0)),
    }
