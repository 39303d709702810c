"""Explainability: class activation maps through torchcam, and overlays."""

from dfcore.explain.cam import cam_maps, target_layer

__all__ = ["cam_maps", "target_layer"]
