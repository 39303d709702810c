"""Evaluation: scoring a model, the metrics the study reports, and the decision rule fitted on validation."""

from dfcore.evaluation.decision import (
    TEMPERATURE_RANGE,
    DecisionRule,
    decision_path,
    fit_decision_rule,
    fit_temperature,
    fit_threshold,
    load_decision_rule,
    save_decision_rule,
)
from dfcore.evaluation.groups import aggregate_groups, confident_mean, scoring_units
from dfcore.evaluation.metrics import (
    binary_metrics,
    bootstrap_intervals,
    eer_threshold,
    expected_calibration_error,
    reliability_table,
)
from dfcore.evaluation.predict import Scorer, Scores, predict
from dfcore.evaluation.robustness import CORRUPTIONS, corruption, robustness_sweep
from dfcore.evaluation.sets import load_eval_set, load_eval_sets
from dfcore.evaluation.summary import classification_report_table, evaluate_set, predictions_table

__all__ = [
    "CORRUPTIONS",
    "TEMPERATURE_RANGE",
    "DecisionRule",
    "Scorer",
    "Scores",
    "aggregate_groups",
    "binary_metrics",
    "bootstrap_intervals",
    "classification_report_table",
    "confident_mean",
    "corruption",
    "decision_path",
    "eer_threshold",
    "evaluate_set",
    "expected_calibration_error",
    "fit_decision_rule",
    "fit_temperature",
    "fit_threshold",
    "load_decision_rule",
    "load_eval_set",
    "load_eval_sets",
    "predict",
    "predictions_table",
    "reliability_table",
    "robustness_sweep",
    "save_decision_rule",
    "scoring_units",
]
