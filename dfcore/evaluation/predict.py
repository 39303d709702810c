"""Scoring: the probability of fake for every image of a loader, in inference mode."""

from __future__ import annotations

import time

import numpy as np
import torch

from dfcore.runtime import autocast


@torch.inference_mode()
def predict(model, loader, *, device, dtype=None) -> dict:
    """Returns ``{'prob': P(fake), 'label', 'logits', 'loss', 'images_per_s'}`` over the whole loader, in order."""
    model.eval()
    logits, labels = [], []
    start = time.perf_counter()
    for images, targets in loader:
        with autocast(device, dtype):
            out = model(images.to(device, non_blocking=True))
        logits.append(out.float().cpu())
        labels.append(targets)
    elapsed = time.perf_counter() - start
    logits = torch.cat(logits)
    labels = torch.cat(labels)
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return {
        "prob": torch.softmax(logits, 1)[:, 1].numpy(),
        "label": labels.numpy(),
        "logits": logits.numpy(),
        "loss": loss,
        "images_per_s": len(labels) / max(elapsed, 1e-9),
    }
