"""Class activation maps (Grad-CAM, LayerCAM) through torchcam."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchcam.methods import GradCAM, LayerCAM

from dfcore import LABELS

_METHODS = {"gradcam": GradCAM, "layercam": LayerCAM}


def target_layer(model: torch.nn.Module) -> str:
    """Returns the name of the layer to hook: the last feature stage timm reports for the model."""
    return model.feature_info[-1]["module"]


def cam_maps(model, images: torch.Tensor, *, method: str = "gradcam", class_idx: int = LABELS["fake"],
             layer: str | None = None) -> np.ndarray:
    """Returns B x H x W maps in [0, 1] at the input's size, explaining the score of ``class_idx`` (fake)."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    model.eval()
    extractor = _METHODS[method](model, target_layer=layer or target_layer(model))
    try:
        with torch.enable_grad():
            images = images.clone().requires_grad_(True)  # gradients flow even through a frozen backbone
            scores = model(images)
            maps = extractor(class_idx=class_idx, scores=scores)[0]
    finally:
        extractor.remove_hooks()
    maps = F.interpolate(maps.unsqueeze(1).float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    maps = maps.squeeze(1).detach()
    low = maps.flatten(1).min(1).values[:, None, None]
    high = maps.flatten(1).max(1).values[:, None, None]
    return ((maps - low) / (high - low).clamp(min=1e-8)).cpu().numpy()
