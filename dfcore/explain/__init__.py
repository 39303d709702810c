"""Explainability: CAMs (torchcam) for CNNs, ViTs and MViTv2, attention rollout, faithfulness, image selection."""

from dfcore.explain.cam import CamTarget, cam_grid, cam_maps, cam_target
from dfcore.explain.faithfulness import (
    blurred,
    curve_areas,
    deletion_insertion,
    faithfulness_table,
    most_faithful,
)
from dfcore.explain.gallery import OUTCOMES, load_images, outcomes, select_outcomes
from dfcore.explain.rollout import HEAD_FUSIONS, attention_rollout, rollout
from dfcore.explain.saliency import BASELINES, METHOD_NAMES, available_methods, random_maps, saliency_maps

__all__ = [
    "BASELINES",
    "HEAD_FUSIONS",
    "METHOD_NAMES",
    "OUTCOMES",
    "CamTarget",
    "attention_rollout",
    "available_methods",
    "blurred",
    "cam_grid",
    "cam_maps",
    "cam_target",
    "curve_areas",
    "deletion_insertion",
    "faithfulness_table",
    "load_images",
    "most_faithful",
    "outcomes",
    "random_maps",
    "rollout",
    "saliency_maps",
    "select_outcomes",
]
