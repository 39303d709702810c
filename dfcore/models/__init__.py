"""Models: timm backbones with a two-class head, built from nothing, a local weights file or our MIM checkpoint."""

from dfcore.models.factory import (
    Ensemble,
    build_model,
    classifier_names,
    data_config,
    load_backbone_state,
    load_classifier,
    save_ensemble,
)

__all__ = ["Ensemble", "build_model", "classifier_names", "data_config", "load_backbone_state", "load_classifier",
           "save_ensemble"]
