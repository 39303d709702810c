"""Models: timm backbones with a two-class head, built from nothing, a local weights file or our MIM checkpoint."""

from dfcore.models.factory import (
    build_model,
    classifier_names,
    data_config,
    load_backbone_state,
    load_classifier,
)

__all__ = ["build_model", "classifier_names", "data_config", "load_backbone_state", "load_classifier"]
