"""Masked-image-modeling pretraining whose loss trains the encoder: MAE for ViTs, SimMIM for other backbones.

`build_mim` picks the method from the backbone's structure:

- a timm ``VisionTransformer`` gets **MAE**: the encoder sees only the visible patches (its
  attention can take any number of tokens), and a light transformer decoder with its own
  positional embeddings and mask tokens predicts every patch's pixels;
- any other backbone gets **SimMIM**: hierarchical transformers (MViTv2, Swin: anything with a
  ``patch_embed``) pool their token grid and cannot drop tokens, so a learnable mask token
  replaces the masked patch embeddings before the blocks; backbones without a patch embedding
  (CNNs) get the mask token in place of the masked pixels. A 1x1 conv + pixel shuffle predicts
  the pixels from the final feature map.

Patches are masked whole, at the ViT's patch size or at the backbone's output stride, and only
masked patches count in the loss (MSE for MAE, L1 for SimMIM, as in their papers), optionally
against per-patch normalised pixels (``norm_pix``). The encoder's features are the decoder's
only input, so every gradient of the loss reaches the encoder (a test checks it).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from dfcore.checkpoint import load_checkpoint, save_checkpoint
from dfcore.distributed import context
from dfcore.models import classifier_names
from dfcore.runtime import autocast
from dfcore.trainers.loop import Task, run


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """Returns B x C x H x W ``images`` as B x (H/p * W/p) x (p*p*C) patches, row by row."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, p: int, size) -> torch.Tensor:
    """Returns the B x C x H x W images of ``patchify``'s patches (``size`` is H, W)."""
    (h, w), b = size, patches.shape[0]
    x = patches.reshape(b, h // p, w // p, p, p, -1)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, -1, h, w)


def feature_map(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Returns the backbone's final features as an NCHW map (token outputs are reshaped, prefix tokens dropped)."""
    features = model.forward_features(images)
    if features.ndim == 3:  # transformer tokens: B x (prefix + h*w) x C
        features = features[:, getattr(model, "num_prefix_tokens", 0):]
        side = int(math.isqrt(features.shape[1]))
        features = features.transpose(1, 2).reshape(features.shape[0], -1, side, side)
    elif getattr(model, "output_fmt", "NCHW") == "NHWC":  # Swin
        features = features.permute(0, 3, 1, 2)
    return features


class MaskedImageModel(nn.Module):
    """An encoder and a pixel decoder; ``forward`` returns ``(loss, reconstruction, mask)``.

    Subclasses implement ``predict``; masking and the loss are shared.
    """

    l1 = True  # L1 (SimMIM) or squared error (MAE)

    def __init__(self, encoder: nn.Module, *, stride: int, mask_ratio: float, norm_pix: bool,
                 mask_patch: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.stride = stride  # the side of the pixel block the decoder predicts from one output position
        self.mask_patch = mask_patch or stride  # the side of a masked patch, the unit of the loss too
        self.mask_ratio = mask_ratio
        self.norm_pix = norm_pix

    def random_mask(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns a B x 1 x H x W mask (1 = masked) of whole ``mask_patch``-sized patches, ``mask_ratio`` of them per
        image."""
        b, _, h, w = images.shape
        p = self.mask_patch
        if h % p or w % p:
            raise ValueError(f"image_size {h}x{w} must be a multiple of the mask patch ({p} pixels).")
        gh, gw = h // p, w // p
        n_masked = max(1, int(round(self.mask_ratio * gh * gw)))
        order = torch.rand(b, gh * gw, generator=generator).argsort(1)
        mask = torch.zeros(b, gh * gw).scatter_(1, order[:, :n_masked], 1.0).to(images.device)
        mask = mask.view(b, 1, gh, gw)
        return mask.repeat_interleave(p, 2).repeat_interleave(p, 3)

    def predict(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Returns the B x 3 x H x W prediction from the masked images (per-patch normalised with ``norm_pix``)."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None):
        """Returns ``(loss, reconstruction, mask)``; the loss is the error on masked patches only.

        With ``norm_pix`` the reconstruction is un-normalised with each true patch's mean and
        standard deviation, to be shown.
        """
        if mask is None:
            mask = self.random_mask(images)
        p = self.mask_patch
        pred = patchify(self.predict(images, mask), p).float()
        target = patchify(images, p)
        mean, std = 0.0, 1.0
        if self.norm_pix:
            mean, std = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True) + 1e-6).sqrt()
            target = (target - mean) / std
        error = (pred - target).abs() if self.l1 else (pred - target) ** 2
        masked = patchify(mask, p)[..., 0]  # B x N, 1 = masked
        loss = (error.mean(-1) * masked).sum() / masked.sum().clamp(min=1)
        return loss, unpatchify(pred * std + mean, p, images.shape[-2:]), mask


class MAE(MaskedImageModel):
    """MAE (He et al. 2022) around a timm ``VisionTransformer``; the encoder sees visible patches only."""

    l1 = False

    def __init__(self, encoder: VisionTransformer, *, mask_ratio: float = 0.75, norm_pix: bool = False,
                 decoder_dim: int = 512, decoder_depth: int = 8, decoder_heads: int = 16):
        super().__init__(encoder, stride=encoder.patch_embed.patch_size[0], mask_ratio=mask_ratio, norm_pix=norm_pix)
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        # fixed 2-D sin-cos positions, as in MAE: the decoder must know where each mask token sits
        pos = build_sincos2d_pos_embed(list(encoder.patch_embed.grid_size), decoder_dim).unsqueeze(0)
        self.register_buffer("decoder_pos_embed", pos, persistent=False)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.stride**2 * 3)

    def encode(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Returns the encoder's output tokens (prefix tokens first) for the visible patches ``keep`` only."""
        enc = self.encoder
        x = enc._pos_embed(enc.patch_embed(images))  # prefix tokens and position embeddings, as timm's forward
        prefix, patches = x[:, :enc.num_prefix_tokens], x[:, enc.num_prefix_tokens:]
        patches = patches.gather(1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return enc.norm(enc.blocks(enc.norm_pre(torch.cat([prefix, patches], 1))))

    def predict(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        visible = 1 - patchify(mask, self.stride)[..., 0]  # B x N
        n_keep = int(visible[0].sum())
        if not (visible.sum(1) == n_keep).all():
            raise ValueError("MAE needs the same number of masked patches in every image of a batch.")
        keep = visible.argsort(dim=1, descending=True, stable=True)[:, :n_keep]  # visible patches, in order
        latent = self.decoder_embed(self.encode(images, keep))
        n_prefix = self.encoder.num_prefix_tokens
        b, n, d = visible.shape[0], visible.shape[1], latent.shape[-1]
        tokens = self.mask_token.to(latent.dtype).expand(b, n, d).scatter(
            1, keep.unsqueeze(-1).expand(-1, -1, d), latent[:, n_prefix:])
        x = torch.cat([latent[:, :n_prefix], tokens + self.decoder_pos_embed.to(latent.dtype)], 1)
        x = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))[:, n_prefix:]
        return unpatchify(x, self.stride, images.shape[-2:])


def _mask_tokens(module, args, output, *, token: torch.Tensor, mask: torch.Tensor):
    """Forward hook on a patch embedding: returns its output with the masked tokens replaced by ``token``.

    Takes B x N x C or B x H x W x C tokens, alone or first in a tuple (MViTv2 also returns the grid size).
    """
    tokens = output[0] if isinstance(output, tuple) else output
    m = mask.reshape(*tokens.shape[:-1], 1).to(tokens.dtype)
    tokens = tokens * (1 - m) + token.to(tokens.dtype) * m
    return (tokens, *output[1:]) if isinstance(output, tuple) else tokens


class SimMIM(MaskedImageModel):
    """SimMIM (Xie et al. 2022): mask token at the input, 1x1 conv + pixel-shuffle decoder on the final feature map."""

    def __init__(self, encoder: nn.Module, *, mask_ratio: float = 0.6, norm_pix: bool = False,
                 mask_patch: int | None = None):
        super().__init__(encoder, stride=encoder.feature_info[-1]["reduction"], mask_ratio=mask_ratio,
                         norm_pix=norm_pix, mask_patch=mask_patch)
        embed = getattr(encoder, "patch_embed", None)
        self.token_stride = embed.proj.stride[0] if embed is not None else 1
        if self.mask_patch % self.token_stride:
            raise ValueError(f"mask_patch {self.mask_patch} must be a multiple of the patch embedding's stride "
                             f"({self.token_stride}): masks replace whole tokens.")
        self.mask_token = nn.Parameter(torch.zeros(embed.proj.out_channels if embed is not None else 3))
        if embed is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            nn.Conv2d(encoder.num_features, self.stride**2 * 3, kernel_size=1),
            nn.PixelShuffle(self.stride),
        )

    def predict(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Masked pixels are zeroed even where tokens are replaced: an overlapping patch embedding
        # (MViTv2's is 7x7 with stride 4) would otherwise let visible tokens see into masked patches.
        masked = images * (1 - mask)
        if self.token_stride == 1:  # no patch embedding: the mask token is a colour
            return self.decoder(feature_map(self.encoder, masked + self.mask_token.view(1, -1, 1, 1) * mask))
        s = self.token_stride
        hook = partial(_mask_tokens, token=self.mask_token, mask=mask[:, 0, ::s, ::s])
        handle = self.encoder.patch_embed.register_forward_hook(hook)
        try:
            return self.decoder(feature_map(self.encoder, masked))
        finally:
            handle.remove()


def build_mim(encoder: nn.Module, *, mask_ratio: float, norm_pix: bool = False, decoder_dim: int = 512,
              decoder_depth: int = 8, decoder_heads: int = 16, mask_patch: int = 0) -> MaskedImageModel:
    """Returns MAE for a timm ``VisionTransformer`` (it can drop masked tokens), SimMIM for any other backbone.

    The decoder sizes apply to MAE only; SimMIM's decoder is one 1x1 convolution. ``mask_patch`` (SimMIM only; 0:
    the backbone's output stride) is the side of a masked patch: finer than the stride, a CNN's masks cover
    parts of what one output position sees (at 64 px a stride-32 CNN would otherwise mask a 2x2 grid).
    """
    if isinstance(encoder, VisionTransformer):
        patch = encoder.patch_embed.patch_size[0]
        if mask_patch and mask_patch != patch:
            raise ValueError(f"MAE masks whole ViT patches: mask_patch must be 0 or {patch}, got {mask_patch}.")
        return MAE(encoder, mask_ratio=mask_ratio, norm_pix=norm_pix, decoder_dim=decoder_dim,
                   decoder_depth=decoder_depth, decoder_heads=decoder_heads)
    return SimMIM(encoder, mask_ratio=mask_ratio, norm_pix=norm_pix, mask_patch=mask_patch or None)


def backbone_state(encoder: nn.Module) -> dict:
    """Returns the encoder's state dict without the classifier (which downstream training replaces)."""
    head = classifier_names(encoder)
    return {k: v for k, v in encoder.state_dict().items() if k not in head}


def snapshot_epochs(epochs: int, count: int) -> list[int]:
    """Returns ``count`` numbers of completed epochs, evenly spread from 0 (before training) to ``epochs``."""
    return sorted({int(round(e)) for e in np.linspace(0, epochs, max(count, 2))})


def reconstruct(mim: MaskedImageModel, images, mask, *, device, dtype=None) -> tuple[float, torch.Tensor]:
    """Returns the masked loss and the reconstruction (on the CPU) of ``images`` under a fixed ``mask``."""
    mim.eval()
    with torch.no_grad(), autocast(device, dtype):
        loss, recon, _ = mim(images.to(device), mask.to(device))
    return loss.item(), recon.float().cpu()


class MIMTask(Task):
    """The masked-patch loss of ``mim`` on unlabelled images; after each epoch (rank 0), the loss of a fixed
    batch ``watch`` of validation images under one fixed mask, whose reconstructions are kept
    (``reconstructions.pt``) after ``snapshots`` points of training, before the first epoch included."""

    kind = "mim-state"
    find_unused_parameters = True  # the encoder's classifier (and a ViT's unused norm) take no part in MIM

    def __init__(self, mim: MaskedImageModel, *, epochs: int, device, dtype=None, watch=None, snapshots: int = 3,
                 seed: int = 0):
        self.mim, self.device, self.dtype, self.shown, self.path = mim, device, dtype, None, None
        self.keep = snapshot_epochs(epochs, snapshots)
        if watch is not None:
            self.shown = {"kind": "mim-reconstructions", "images": watch.cpu(),
                          "mask": mim.random_mask(watch.cpu(), torch.Generator().manual_seed(seed)), "recon": {}}

    def loss(self, model, batch):
        return model(batch[0])[0]

    def _reconstruct(self):
        return reconstruct(self.mim, self.shown["images"], self.shown["mask"], device=self.device, dtype=self.dtype)

    def start(self, out_dir, start_epoch):
        if self.shown is None or not context().main:
            return
        self.path = out_dir / "reconstructions.pt"
        if start_epoch > 0 and self.path.exists():
            self.shown = load_checkpoint(self.path, kind="mim-reconstructions")
        elif start_epoch == 0 and 0 in self.keep:
            self.shown["recon"][0] = self._reconstruct()[1]

    def evaluate(self, model, epoch):
        if self.shown is None or not context().main:
            return {}
        val_loss, recon = self._reconstruct()
        if epoch + 1 in self.keep:
            self.shown["recon"][epoch + 1] = recon
        save_checkpoint(self.shown, self.path)
        return {"val_loss": val_loss}


def pretrain(
    mim: MaskedImageModel,
    loader,
    *,
    epochs: int,
    lr: float,
    out_dir,
    device,
    dtype=None,
    warmup_epochs: float = 0.5,
    weight_decay: float = 0.05,
    accum_steps: int = 1,
    seed: int = 0,
    resume: bool = False,
    watch: torch.Tensor | None = None,
    snapshots: int = 3,
    meta: dict | None = None,
) -> pd.DataFrame:
    """Pretrains ``mim`` through the study's training loop (`dfcore.trainers.loop.run`, DDP under torchrun);
    returns the per-epoch loss history.

    Writes ``history.csv``, ``steps.csv`` (loss and LR per step), ``last.pt`` (the whole MIM state, for
    ``resume``: an interrupted run with the same ``meta`` continues, any other earlier run is kept aside) and
    ``backbone.pt`` (the encoder alone, what notebook 03 loads) under ``out_dir``. With a fixed batch of
    ``watch`` images (validation ones), each epoch also records their masked loss (``val_loss``, one fixed
    mask), and ``reconstructions.pt`` keeps their reconstructions after ``snapshots`` points of training.
    """
    out_dir = Path(out_dir)
    optimizer = torch.optim.AdamW(mim.parameters(), lr=lr, weight_decay=weight_decay)
    task = MIMTask(mim, epochs=epochs, device=device, dtype=dtype, watch=watch, snapshots=snapshots, seed=seed)
    history = run(mim, loader, task, optimizer=optimizer, epochs=epochs, out_dir=out_dir, device=device, dtype=dtype,
                  warmup_epochs=warmup_epochs, accum_steps=accum_steps, seed=seed, resume=resume, meta=meta)
    if context().main:
        save_checkpoint({**(meta or {}), "kind": "mim-backbone", "model": backbone_state(mim.encoder)},
                        out_dir / "backbone.pt")
    return history
