"""Reporting: where a stage's outputs go, figures and metrics files, the run manifest and the report index."""

from dfcore.reporting.figures import (
    plot_confusion,
    plot_face_counts,
    plot_faithfulness,
    plot_history,
    plot_image_grid,
    plot_mim_history,
    plot_overlays,
    plot_pr,
    plot_reconstructions,
    plot_reliability,
    plot_robustness,
    plot_roc,
    plot_score_histograms,
    plot_timeline,
)
from dfcore.reporting.browser import browser
from dfcore.reporting.outputs import StageOutputs, read_metrics, stage_outputs, write_metrics

__all__ = [
    "StageOutputs",
    "browser",
    "plot_confusion",
    "plot_face_counts",
    "plot_faithfulness",
    "plot_history",
    "plot_image_grid",
    "plot_mim_history",
    "plot_overlays",
    "plot_pr",
    "plot_reconstructions",
    "plot_reliability",
    "plot_robustness",
    "plot_roc",
    "plot_score_histograms",
    "plot_timeline",
    "read_metrics",
    "stage_outputs",
    "write_metrics",
]
