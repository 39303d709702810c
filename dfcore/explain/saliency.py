"""One entry point for every saliency method the study compares, and which of them fit a model."""

from __future__ import annotations

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

from dfcore import LABELS
from dfcore.explain.cam import cam_grid, cam_maps, scale_maps
from dfcore.explain.rollout import attention_rollout

METHOD_NAMES = {"gradcam": "Grad-CAM", "layercam": "LayerCAM", "rollout": "attention rollout",
                "random": "random pixels (baseline)", "random_grid": "random on the CAM grid (baseline)"}
BASELINES = ("random", "random_grid")


def available_methods(model, requested=("gradcam", "layercam", "rollout")) -> list[str]:
    """Returns the ``requested`` methods that apply to ``model``: rollout only for ViTs."""
    unknown = set(requested) - set(METHOD_NAMES)
    if unknown:
        raise ValueError(f"Unknown saliency methods {sorted(unknown)}; known: {sorted(METHOD_NAMES)}")
    return [m for m in requested if m != "rollout" or isinstance(model, VisionTransformer)]


def random_maps(shape, *, seed: int = 0, grid: tuple[int, int] | None = None) -> np.ndarray:
    """Returns random maps of ``shape`` (B x H x W) in [0, 1]: saliency that knows nothing, the faithfulness baseline.

    Independent per pixel, or drawn on a coarse ``grid`` and upsampled like a CAM: the fair
    reference for maps that coarse, as removing scattered single pixels adds high-frequency
    noise of its own, which a deepfake detector reads as evidence.
    """
    rng = np.random.default_rng(seed)
    if grid is None:
        return rng.random(shape, dtype=np.float32)
    coarse = torch.from_numpy(rng.random((shape[0], *grid), dtype=np.float32))
    return scale_maps(coarse, shape[-2:])


def saliency_maps(model, images: torch.Tensor, method: str, *, class_idx: int = LABELS["fake"],
                  head_fusion: str = "mean", discard_ratio: float = 0.9, seed: int = 0) -> np.ndarray:
    """Returns B x H x W maps in [0, 1] from ``method``: 'gradcam', 'layercam', 'rollout' (ViTs), or a baseline,
    'random' (per pixel) or 'random_grid' (on the grid of the model's CAM)."""
    if method in ("gradcam", "layercam"):
        return cam_maps(model, images, method=method, class_idx=class_idx)
    if method == "rollout":
        return attention_rollout(model, images, head_fusion=head_fusion, discard_ratio=discard_ratio)[0]
    if method in BASELINES:
        grid = cam_grid(model, images.shape[-2:]) if method == "random_grid" else None
        return random_maps((images.shape[0], *images.shape[-2:]), seed=seed, grid=grid)
    raise ValueError(f"method must be one of {sorted(METHOD_NAMES)}, got {method!r}")
