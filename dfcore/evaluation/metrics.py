"""Metrics over a whole split (never averaged per batch), computed with scikit-learn where it has them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from dfcore import CLASS_NAMES


def eer_threshold(labels, probs) -> tuple[float, float]:
    """Returns ``(eer, threshold)``: the equal error rate and the score threshold where FPR equals FNR."""
    fpr, tpr, thresholds = skm.roc_curve(labels, probs)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(min(thresholds[i], 1.0))


def reliability_table(labels, probs, n_bins: int = 15) -> pd.DataFrame:
    """Returns one row per non-empty equal-width bin of P(fake): mean probability, share of fakes, count.

    The bins are those of scikit-learn's ``calibration_curve(strategy='uniform')``, which
    returns the first two columns but not the counts that the calibration error weighs by.
    """
    labels = np.asarray(labels, dtype=float)
    probs = np.asarray(probs, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], probs)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    return pd.DataFrame({
        "bin_low": edges[:-1][keep],
        "bin_high": edges[1:][keep],
        "mean_prob": np.bincount(bins, weights=probs, minlength=n_bins)[keep] / count[keep],
        "fake_share": np.bincount(bins, weights=labels, minlength=n_bins)[keep] / count[keep],
        "count": count[keep],
    })


def expected_calibration_error(labels, probs, n_bins: int = 15) -> float:
    """Returns the expected calibration error of P(fake): the count-weighted mean gap between each
    bin's mean probability and its share of fakes (scikit-learn has no ECE)."""
    table = reliability_table(labels, probs, n_bins)
    return float((table["count"] * (table["mean_prob"] - table["fake_share"]).abs()).sum() / table["count"].sum())


def binary_metrics(labels, probs, threshold: float = 0.5, *, n_bins: int = 15) -> dict:
    """Returns ranking (AUC, average precision, EER), probability (log loss, Brier, ECE) and thresholded
    metrics (accuracy, balanced accuracy, per-class precision, recall and F1); fake is the positive class."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    pred = (probs >= threshold).astype(int)
    two_classes = len(np.unique(labels)) == 2
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, pred, labels=[0, 1],
                                                                         zero_division=0)
    per_class = {
        f"{name}_{what}": float(values[i])
        for i, name in enumerate(CLASS_NAMES)
        for what, values in (("precision", precision), ("recall", recall), ("f1", f1), ("support", support))
    }
    return {
        "n": int(len(labels)),
        "auc": float(skm.roc_auc_score(labels, probs)) if two_classes else float("nan"),
        "average_precision": float(skm.average_precision_score(labels, probs)) if two_classes else float("nan"),
        "eer": eer_threshold(labels, probs)[0] if two_classes else float("nan"),
        "log_loss": float(skm.log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(skm.brier_score_loss(labels, probs, pos_label=1)),
        "ece": expected_calibration_error(labels, probs, n_bins),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, pred)),
        **per_class,
    }


def bootstrap_intervals(labels, probs, statistics: dict, *, rounds: int = 1000, level: float = 0.95,
                        seed: int = 0) -> dict:
    """Returns ``{name: [low, high]}``: percentile bootstrap intervals of each ``statistic(labels, probs)``.

    Resampling is stratified by class (the class counts stay fixed), so every resample has both
    classes and AUC stays defined; ``scipy.stats.bootstrap`` resamples pairs freely and cannot
    promise that.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    values = {name: [] for name in statistics}
    for _ in range(rounds):
        idx = np.concatenate([rng.choice(members, len(members)) for members in by_class])
        for name, statistic in statistics.items():
            values[name].append(statistic(labels[idx], probs[idx]))
    tail = (1 - level) / 2 * 100
    return {name: [float(v) for v in np.nanpercentile(found, [tail, 100 - tail])] for name, found in values.items()}
