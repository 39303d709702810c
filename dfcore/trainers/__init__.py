"""Trainers: MIM pretraining, phase-1 head-only training and phase-2 fine-tuning."""

from dfcore.trainers.classifier import (
    TrainingError,
    build_optimizer,
    build_scheduler,
    class_weights,
    fit,
    freeze_backbone,
    train_one_epoch,
    unfreeze_last,
    validate,
)
from dfcore.trainers.mim import SimMIM, backbone_state, pretrain

__all__ = [
    "SimMIM",
    "TrainingError",
    "backbone_state",
    "build_optimizer",
    "build_scheduler",
    "class_weights",
    "fit",
    "freeze_backbone",
    "pretrain",
    "train_one_epoch",
    "unfreeze_last",
    "validate",
]
