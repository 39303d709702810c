"""Everything reported about one scored set: metrics before and after the decision rule, intervals, groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from dfcore import CLASS_NAMES
from dfcore.evaluation.decision import DecisionRule
from dfcore.evaluation.groups import aggregate_groups
from dfcore.evaluation.metrics import binary_metrics, bootstrap_intervals
from dfcore.evaluation.predict import Scores


def evaluate_set(scores: Scores, groups, rule: DecisionRule, *, bootstrap_rounds: int = 1000, seed: int = 0,
                 group_t: float = 0.8, group_min_share: float = 0.4, n_bins: int = 15) -> dict:
    """Returns the metrics of one scored set.

    - ``raw@0.5``: the model's own probabilities at 0.5 (calibration before);
    - ``calibrated@val_threshold``: after the rule's temperature, at its validation threshold
      (calibration after; thresholded numbers at 0.5 are the same either way, since
      temperature scaling keeps P(fake) = 0.5 where it was);
    - ``bootstrap_95``: intervals for AUC and accuracy at both thresholds;
    - ``groups``: per group and label (see `aggregate_groups`), ``mean`` and ``confident`` scores
      at the rule's threshold, beside the frame-level AUC.
    """
    labels = scores.label
    calibrated = rule.prob(scores)
    statistics = {
        "accuracy@0.5": lambda y, p: float(np.mean((p >= 0.5) == y)),
        "accuracy@val_threshold": lambda y, p: float(np.mean((p >= rule.threshold) == y)),
    }
    if len(np.unique(labels)) == 2:
        statistics["auc"] = skm.roc_auc_score
    frames = pd.DataFrame({"group": np.asarray(groups), "label": labels, "prob": calibrated})
    units = aggregate_groups(frames, t=group_t, min_share=group_min_share)
    frame_level = binary_metrics(labels, calibrated, rule.threshold, n_bins=n_bins)
    return {
        "n": int(len(labels)),
        "n_fake": int(labels.sum()),
        "images_per_s": float(scores.images_per_s),
        "raw@0.5": binary_metrics(labels, scores.prob(), 0.5, n_bins=n_bins),
        "calibrated@val_threshold": frame_level,
        "bootstrap_95": bootstrap_intervals(labels, calibrated, statistics, rounds=bootstrap_rounds, seed=seed),
        "groups": {
            "groups": int(frames["group"].nunique()),
            "units": int(len(units)),
            "groups_with_both_labels": int((units.groupby("group")["label"].nunique() > 1).sum()),
            "frame_auc": frame_level["auc"],
            **{strategy: binary_metrics(units["label"], units[strategy], rule.threshold, n_bins=n_bins)
               for strategy in ("mean", "confident")},
        },
    }


def predictions_table(manifest: pd.DataFrame, scores: Scores, rule: DecisionRule) -> pd.DataFrame:
    """Returns path, label, group, P(fake) before and after calibration and the decision, per image."""
    table = manifest[["path", "label", "group"]].reset_index(drop=True)
    if not np.array_equal(table["label"].to_numpy(), scores.label):
        raise ValueError(f"the scores of '{scores.split}' are not in the order of its manifest")
    return table.assign(prob_fake=scores.prob(), prob_fake_calibrated=rule.prob(scores),
                        prediction=rule.predict(scores))


def classification_report_table(decisions: dict) -> pd.DataFrame:
    """Returns scikit-learn's classification report as rows of ``set, class, precision, recall, f1-score,
    support`` for ``{set name: (labels, predictions)}``."""
    tables = []
    for name, (labels, preds) in decisions.items():
        report = skm.classification_report(labels, preds, labels=[0, 1], target_names=CLASS_NAMES,
                                           output_dict=True, zero_division=0)
        report["accuracy"] = {"f1-score": report["accuracy"], "support": len(labels)}  # sklearn gives a bare float
        table = pd.DataFrame(report).T.rename_axis("class").reset_index()
        tables.append(table.assign(set=name))
    return pd.concat(tables, ignore_index=True)[["set", "class", "precision", "recall", "f1-score", "support"]]
