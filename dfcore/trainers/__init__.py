"""Trainers: MIM pretraining, phase-1 head-only training and phase-2 fine-tuning."""

from dfcore.trainers.classifier import (
    TrainingError,
    build_optimizer,
    build_scheduler,
    class_weights,
    fit,
    freeze_backbone,
    hard_example_weights,
    train_one_epoch,
    unfreeze_last,
    validate,
)
from dfcore.trainers.mim import MAE, MaskedImageModel, SimMIM, backbone_state, build_mim, pretrain

__all__ = [
    "MAE",
    "MaskedImageModel",
    "SimMIM",
    "TrainingError",
    "backbone_state",
    "build_optimizer",
    "build_mim",
    "build_scheduler",
    "class_weights",
    "fit",
    "freeze_backbone",
    "hard_example_weights",
    "pretrain",
    "train_one_epoch",
    "unfreeze_last",
    "validate",
]
