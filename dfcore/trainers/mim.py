"""Masked-image-modeling pretraining (SimMIM-style) for any timm backbone with a spatial feature map.

Masked patches are replaced at the *input* by a learnable mask token, the whole backbone
encodes the image, and a light decoder (1x1 conv + pixel shuffle) predicts the pixels of the
masked patches from the final feature map. The loss covers masked pixels only, so every
gradient reaches the encoder through its features (a test checks encoder gradients are
non-zero). Patches are masked at the backbone's output stride.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from dfcore.checkpoint import load_checkpoint, save_checkpoint
from dfcore.models import classifier_names
from dfcore.runtime import autocast
from dfcore.trainers.classifier import TrainingError, _reseed_epoch, build_scheduler


def feature_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Returns the backbone's final features as an NCHW map (token outputs are reshaped, prefix tokens dropped)."""
    features = model.forward_features(images)
    if features.ndim == 3:  # transformer tokens: B x (prefix + h*w) x C
        features = features[:, getattr(model, "num_prefix_tokens", 0):]
        side = int(math.isqrt(features.shape[1]))
        features = features.transpose(1, 2).reshape(features.shape[0], -1, side, side)
    return features


class SimMIM(nn.Module):
    """Wraps a backbone with an input mask token and a pixel-shuffle decoder; ``forward`` returns the loss."""

    def __init__(self, encoder: nn.Module, *, mask_ratio: float = 0.6):
        super().__init__()
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.stride = encoder.feature_info[-1]["reduction"]
        self.mask_token = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(encoder.num_features, self.stride**2 * 3, kernel_size=1),
            nn.PixelShuffle(self.stride),
        )

    def random_mask(self, images: torch.Tensor) -> torch.Tensor:
        """Returns a B x 1 x H x W mask (1 = masked) of whole stride-sized patches, ``mask_ratio`` of them per image."""
        b, _, h, w = images.shape
        gh, gw = h // self.stride, w // self.stride
        n_masked = max(1, int(round(self.mask_ratio * gh * gw)))
        order = torch.rand(b, gh * gw, device=images.device).argsort(1)
        mask = torch.zeros(b, gh * gw, device=images.device)
        mask.scatter_(1, order[:, :n_masked], 1.0)
        mask = mask.view(b, 1, gh, gw)
        return mask.repeat_interleave(self.stride, 2).repeat_interleave(self.stride, 3)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None):
        """Returns ``(loss, reconstruction, mask)``; the loss is the L1 error on masked pixels only."""
        if mask is None:
            mask = self.random_mask(images)
        masked = images * (1 - mask) + self.mask_token * mask
        recon = self.decoder(feature_map(self.encoder, masked))
        loss = ((recon - images).abs() * mask).sum() / (mask.sum() * images.shape[1]).clamp(min=1)
        return loss, recon, mask


def backbone_state(encoder: nn.Module) -> dict:
    """Returns the encoder's state dict without the classifier (which downstream training replaces)."""
    head = classifier_names(encoder)
    return {k: v for k, v in encoder.state_dict().items() if k not in head}


def pretrain(
    mim: SimMIM,
    loader,
    *,
    epochs: int,
    lr: float,
    out_dir,
    device,
    dtype=None,
    warmup_epochs: float = 0.5,
    weight_decay: float = 0.05,
    seed: int = 0,
    resume: bool = False,
    meta: dict | None = None,
) -> pd.DataFrame:
    """Pretrains ``mim`` and returns the per-epoch loss history.

    Writes ``history.csv``, ``last.pt`` (the whole MIM state, for ``resume``) and
    ``backbone.pt`` (the encoder alone, what notebook 03 loads) under ``out_dir``.
    """
    out_dir = Path(out_dir)
    meta = dict(meta or {})
    optimizer = torch.optim.AdamW(mim.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = build_scheduler(optimizer, epochs=epochs, steps_per_epoch=len(loader), warmup_epochs=warmup_epochs)
    history, start_epoch, step = [], 0, 0
    if resume and (out_dir / "last.pt").exists():
        state = load_checkpoint(out_dir / "last.pt", backbone=meta.get("backbone"), kind="mim-state")
        mim.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        history = pd.read_csv(out_dir / "history.csv").to_dict("records")[:start_epoch]
    mim.to(device)
    for epoch in range(start_epoch, epochs):
        _reseed_epoch(loader, seed, epoch)
        mim.train()
        total, count, start = 0.0, 0, time.perf_counter()
        for i, (images, _) in enumerate(tqdm(loader, desc=f"mim epoch {epoch}", mininterval=30, leave=False)):
            images = images.to(device, non_blocking=True)
            with autocast(device, dtype):
                loss, _, _ = mim(images)
            if not math.isfinite(loss.item()):
                raise TrainingError(
                    f"The MIM loss became {loss.item()} at epoch {epoch}, step {i}. Stopped; {out_dir / 'last.pt'} "
                    "from the epoch before is kept. Lower lr or turn AMP off."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            total += loss.item() * len(images)
            count += len(images)
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "lr": optimizer.param_groups[0]["lr"],
                        "train_images_per_s": count / max(time.perf_counter() - start, 1e-9)})
        save_checkpoint({**meta, "kind": "mim-state", "model": mim.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step}, out_dir / "last.pt")
        pd.DataFrame(history).to_csv(out_dir / "history.csv", index=False)
        print(f"mim epoch {epoch}: loss {history[-1]['train_loss']:.4f}, "
              f"{history[-1]['train_images_per_s']:.0f} img/s", flush=True)
    save_checkpoint({**meta, "kind": "mim-backbone", "model": backbone_state(mim.encoder)}, out_dir / "backbone.pt")
    return pd.DataFrame(history)
