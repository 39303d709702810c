"""Class activation maps (Grad-CAM, LayerCAM) through torchcam, for CNNs, ViTs (hybrids included) and MViTv2."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.mvitv2 import MultiScaleVit
from timm.models.vision_transformer import VisionTransformer
from torchcam.methods import GradCAM, LayerCAM

from dfcore import LABELS
from dfcore.models import Ensemble

_METHODS = {"gradcam": GradCAM, "layercam": LayerCAM}


@dataclass(frozen=True)
class CamTarget:
    """Where a CAM hooks a model, and how that layer's output becomes a B x C x h x w map.

    Transformers return tokens (B x N x C): ``prefix_tokens`` (class, register) come first and
    are dropped, the rest form a ``grid`` of rows x columns. CNN layers return maps already
    (``grid`` None).
    """

    layer: str
    family: str
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None

    def reshape(self, tokens: torch.Tensor) -> torch.Tensor:
        """Returns the patch tokens of a B x N x C tensor as B x C x rows x cols."""
        rows, cols = self.grid
        patches = tokens[:, self.prefix_tokens:]
        if patches.shape[1] != rows * cols:
            raise ValueError(f"Layer '{self.layer}' gave {patches.shape[1]} patch tokens, not the {rows}x{cols} "
                             "grid expected from the model: is the input the size the model was built for?")
        return patches.transpose(1, 2).reshape(tokens.shape[0], -1, rows, cols)

    @property
    def reshape_transform(self):
        """Returns torchcam's ``reshape_transform`` for this target: None for a CNN."""
        return self.reshape if self.grid is not None else None


def cam_target(model: torch.nn.Module, input_size: tuple[int, int] | None = None) -> CamTarget:
    """Returns the layer to hook and its token-to-map reshape, decided by the model's architecture.

    - ViT (hybrids with a ResNet stem included): the last block's ``norm1``, the input of the last
      attention, as the class token reads the patches only there; the grid is the patch
      embedding's (for ``input_size`` when the model takes dynamic sizes).
    - MViTv2: the final ``norm`` (a stage returns a tuple, not a tensor torchcam can hook); the grid
      is the last stage's feature size, input / 32.
    - anything else (CNNs): the last feature stage timm reports.
    - an `Ensemble`: its first member's layer, so the maps explain that member's share of the mean logit.
    """
    if isinstance(model, Ensemble):
        target = cam_target(model.members[0], input_size)
        return replace(target, layer=f"members.0.{target.layer}")
    if isinstance(model, VisionTransformer):
        embed = model.patch_embed
        grid = (embed.dynamic_feat_size(tuple(input_size)) if getattr(model, "dynamic_img_size", False) and input_size
                else embed.grid_size)
        return CamTarget(f"blocks.{len(model.blocks) - 1}.norm1", "vit", model.num_prefix_tokens, tuple(grid))
    if isinstance(model, MultiScaleVit):
        return CamTarget("norm", "mvitv2", model.num_prefix_tokens, tuple(model.stages[-1].feat_size))
    return CamTarget(model.feature_info[-1]["module"], "cnn")


def cam_grid(model: torch.nn.Module, input_size) -> tuple[int, int]:
    """Returns the rows x columns of the map a CAM of ``model`` gives for ``input_size`` (before upsampling)."""
    if isinstance(model, Ensemble):
        return cam_grid(model.members[0], input_size)
    target = cam_target(model, input_size)
    if target.grid is not None:
        return target.grid
    reduction = model.feature_info[-1]["reduction"]
    return tuple(-(-int(side) // reduction) for side in input_size)


def scale_maps(maps: torch.Tensor, size) -> np.ndarray:
    """Returns B x h x w ``maps`` upsampled (bilinear) to ``size`` and scaled to [0, 1] per image."""
    maps = F.interpolate(maps.unsqueeze(1).float(), size=tuple(size), mode="bilinear", align_corners=False)
    maps = maps.squeeze(1).detach()
    low = maps.flatten(1).min(1).values[:, None, None]
    high = maps.flatten(1).max(1).values[:, None, None]
    return ((maps - low) / (high - low).clamp(min=1e-8)).cpu().numpy()


def cam_maps(model, images: torch.Tensor, *, method: str = "gradcam", class_idx: int = LABELS["fake"],
             layer: str | None = None) -> np.ndarray:
    """Returns B x H x W maps in [0, 1] at the input's size, explaining the score of ``class_idx`` (fake).

    ``layer`` overrides the hooked layer's name; the family's token reshape still applies.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    model.eval()
    target = cam_target(model, images.shape[-2:])
    extractor = _METHODS[method](model, target_layer=layer or target.layer,
                                 reshape_transform=target.reshape_transform)
    try:
        with torch.enable_grad():
            images = images.clone().requires_grad_(True)  # gradients flow even through a frozen backbone
            scores = model(images)
            maps = extractor(class_idx=class_idx, scores=scores)[0]
    finally:
        extractor.remove_hooks()
    return scale_maps(maps, images.shape[-2:])
