"""Evaluation: scoring a model over a loader, and the metrics the study reports."""

from dfcore.evaluation.metrics import binary_metrics, eer_threshold
from dfcore.evaluation.predict import predict

__all__ = ["binary_metrics", "eer_threshold", "predict"]
