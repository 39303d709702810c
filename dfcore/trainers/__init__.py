"""Trainers: MIM pretraining, phase-1 head-only training and phase-2 fine-tuning, all through one loop (`loop.run`)."""

from dfcore.trainers.classifier import (
    ClassifierTask,
    build_optimizer,
    class_weights,
    fit,
    freeze_backbone,
    hard_example_weights,
    unfreeze_last,
    validate,
)
from dfcore.trainers.loop import Task, TrainingError, build_scheduler, run, train_one_epoch
from dfcore.trainers.mim import MAE, MaskedImageModel, MIMTask, SimMIM, backbone_state, build_mim, pretrain

__all__ = [
    "MAE",
    "ClassifierTask",
    "MIMTask",
    "MaskedImageModel",
    "SimMIM",
    "Task",
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
    "run",
    "train_one_epoch",
    "unfreeze_last",
    "validate",
]
