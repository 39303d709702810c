"""Supervised training of a real/fake classifier: phase 1 (head only) and phase 2 (fine-tuning).

`validate` is a plain function returning a dict of metrics; `ClassifierTask` is the classifier's part of the
study's one training loop (`dfcore.trainers.loop`), and `fit` runs it with early stopping on validation AUC.
No callback framework.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from timm.models import group_parameters

from dfcore import LABELS
from dfcore.distributed import context, gather_rows
from dfcore.evaluation import binary_metrics, predict
from dfcore.trainers.loop import Task, run


def freeze_backbone(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freezes every parameter but the classifier's; returns the trainable ones."""
    unfreeze_last(model, 0)
    return [p for p in model.parameters() if p.requires_grad]


def unfreeze_last(model: torch.nn.Module, n_blocks: int) -> list[str]:
    """Makes the last ``n_blocks`` blocks or stages and the head trainable, the rest frozen; returns the trainable names.

    Blocks are timm's coarse parameter groups (``model.group_matcher(coarse=True)``): stages of
    a CNN or MViTv2, blocks of a ViT. ``n_blocks < 0`` unfreezes everything.
    """
    groups = list(group_parameters(model, model.group_matcher(coarse=True)).values())
    head, body = groups[-1], groups[:-1]  # timm puts the classifier in the last group
    chosen = body if n_blocks < 0 else body[len(body) - min(n_blocks, len(body)):]
    trainable = {name for group in chosen for name in group} | set(head)
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    return [name for name, _ in model.named_parameters() if name in trainable]


def class_weights(labels, mode: str) -> tuple[torch.Tensor | None, bool, float]:
    """Returns ``(loss weights or None, use a balanced sampler, fake share the loss effectively sees)``.

    ``mode``: 'none' (data as is), 'sampler' (weighted sampling to 1:1) or 'loss'
    (cross-entropy weighted by inverse class frequency).
    """
    counts = torch.bincount(torch.as_tensor(list(labels)), minlength=2).double()
    if mode == "none":
        return None, False, float(counts[1] / counts.sum())
    if mode == "sampler":
        return None, True, 0.5
    if mode == "loss":
        weights = (counts.sum() / (2 * counts.clamp(min=1))).float()
        return weights, False, float(weights[1] * counts[1] / (weights * counts).sum())
    raise ValueError(f"balance must be 'none', 'sampler' or 'loss', got {mode!r}")


def build_optimizer(model, *, lr_head: float, lr_backbone: float = 0.0, weight_decay: float = 0.05,
                    layer_decay: float = 1.0):
    """Returns AdamW with one group for the classifier and one for the trainable backbone parameters.

    ``layer_decay`` < 1 splits the backbone by depth instead (layer-wise LR decay, as MAE and BEiT fine-tune): the
    layer ``k`` steps below the head gets ``lr_backbone * layer_decay**k``, so early layers, which pretraining
    taught the most general features, move least. Layers are timm's fine parameter groups
    (``model.group_matcher(coarse=False)``: the stem, each block, the head), the ones timm's own
    ``param_groups_layer_decay`` uses; that function is not called because it also takes biases and norms out
    of weight decay, which would change this optimizer in more than one way.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) in head_ids]
    backbone = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": lr_head, "name": "head"}]
    if backbone and layer_decay == 1:
        groups.append({"params": [p for _, p in backbone], "lr": lr_backbone, "name": "backbone"})
    elif backbone:
        layer_of = group_parameters(model, model.group_matcher(coarse=False), reverse=True)  # name -> layer
        top = max(layer_of.values())  # the head's layer
        layers: dict[int, list] = {}
        for name, p in backbone:
            layers.setdefault(layer_of[name], []).append(p)
        groups += [{"params": params, "lr": lr_backbone * layer_decay ** (top - layer), "name": f"backbone{layer}"}
                   for layer, params in sorted(layers.items())]
    return torch.optim.AdamW(groups, weight_decay=weight_decay)


def hard_example_weights(model, loader, *, weight: float, device, dtype=None) -> pd.Series:
    """Returns a sampling weight per image path of ``loader`` (a training split, scored in order without
    augmentation): ``weight`` for the images ``model`` gets wrong at P(fake) 0.5, 1 for the rest.

    Only ever the training split's own images: re-weighting validation or test failures would
    make their numbers optimistic.
    """
    scores = predict(model, loader, device=device, dtype=dtype)
    wrong = (scores["prob"] >= 0.5).astype(int) != scores["label"]
    paths = loader.dataset.manifest["path"].to_numpy()
    return pd.Series(np.where(wrong, float(weight), 1.0), index=paths)


def validate(model, loader, *, device, dtype=None) -> dict:
    """Returns loss, AUC and accuracy over the whole validation set (never averaged per batch; under DDP each rank
    scores its share and the scores of all ranks are gathered first)."""
    scores = predict(model, loader, device=device, dtype=dtype)
    logits, labels = scores["logits"], scores["label"]
    if context().active:
        indices = np.fromiter(iter(loader.sampler), dtype=np.int64)
        logits, labels = gather_rows(logits, indices), gather_rows(labels, indices)
    logits_t = torch.as_tensor(logits)
    loss = torch.nn.functional.cross_entropy(logits_t, torch.as_tensor(labels)).item()
    m = binary_metrics(labels, torch.softmax(logits_t, 1)[:, 1].numpy())
    return {"loss": loss, "auc": m["auc"], "accuracy": m["accuracy"]}




class ClassifierTask(Task):
    """Cross-entropy on (images, labels) batches; after each epoch, loss, AUC and accuracy on the validation split,
    the AUC picking ``best.pt``."""

    kind, monitor = "classifier", "val_auc"

    def __init__(self, val_loader, *, device, dtype=None, loss_weights: torch.Tensor | None = None):
        self.val_loader, self.device, self.dtype = val_loader, device, dtype
        self.loss_weights = loss_weights.to(device) if loss_weights is not None else None

    def loss(self, model, batch):
        images, labels = batch
        return torch.nn.functional.cross_entropy(model(images), labels, weight=self.loss_weights)

    def evaluate(self, model, epoch):
        val = validate(model, self.val_loader, device=self.device, dtype=self.dtype)
        return {"val_loss": val["loss"], "val_auc": val["auc"], "val_accuracy": val["accuracy"]}

    def checkpoint_items(self):
        return {"label_map": LABELS}


def fit(
    model,
    train_loader,
    val_loader,
    *,
    optimizer,
    epochs: int,
    out_dir,
    device,
    dtype=None,
    warmup_epochs: float = 0.0,
    patience: int = 3,
    grad_clip: float = 0.0,
    accum_steps: int = 1,
    seed: int = 0,
    resume: bool = False,
    meta: dict | None = None,
    loss_weights: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Trains with early stopping on validation AUC; returns the per-epoch history.

    Writes ``history.csv``, ``steps.csv``, ``last.pt`` (every epoch) and ``best.pt`` (best validation AUC)
    under ``out_dir`` (see `dfcore.trainers.loop.run`, which also explains ``resume`` and ``accum_steps``).
    ``meta`` (backbone name, image size, resolved parameters, ...) is stored in both checkpoints with the
    label map.
    """
    task = ClassifierTask(val_loader, device=device, dtype=dtype, loss_weights=loss_weights)
    return run(model, train_loader, task, optimizer=optimizer, epochs=epochs, out_dir=out_dir, device=device,
               dtype=dtype, warmup_epochs=warmup_epochs, grad_clip=grad_clip, accum_steps=accum_steps,
               patience=patience, seed=seed, resume=resume, meta=meta)
