"""Reporting: figures, the image browser, the run manifest and the report index (it only formats what the stages
wrote; where files live is `dfcore.artifacts`)."""

from dfcore.reporting.figures import (
    heat_overlay,
    plot_confusion,
    plot_face_counts,
    plot_face_geometry,
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
    plot_temporal_evidence,
    plot_timeline,
)
from dfcore.reporting.browser import browser

__all__ = [
    "browser",
    "heat_overlay",
    "plot_confusion",
    "plot_face_counts",
    "plot_face_geometry",
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
    "plot_temporal_evidence",
    "plot_timeline",
]
