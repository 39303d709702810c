"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers") for timm ViTs.

Written here because no installed or lockable package does it for timm models: torchcam has
CAMs only, pytorch-grad-cam and captum have no rollout, and the reference code
(jacobgil/vit-explain) is a script, not a package. It is a few lines once the attention
matrices are captured.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

from dfcore.explain.cam import cam_target, scale_maps

HEAD_FUSIONS = ("mean", "max", "min")


@contextlib.contextmanager
def _captured_attention(model: VisionTransformer):
    """Yields a list that fills with each block's B x heads x N x N attention (after softmax) as the model runs.

    timm's fused attention (``scaled_dot_product_attention``) never forms the matrix, so each
    block runs its plain path for the duration, where the softmaxed matrix is the input of
    ``attn_drop`` (an identity in eval mode): a hook there sees exactly what the model uses,
    qk-norm and scale included, without re-implementing the attention.
    """
    captured, handles, fused = [], [], []
    try:
        for block in model.blocks:
            attn = block.attn
            if not hasattr(attn, "fused_attn") or not isinstance(getattr(attn, "attn_drop", None), torch.nn.Module):
                raise TypeError(f"{type(attn).__name__} does not expose its attention matrix (no fused_attn/attn_drop)")
            fused.append((attn, attn.fused_attn))
            attn.fused_attn = False
            handles.append(attn.attn_drop.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0])))
        yield captured
    finally:
        for handle in handles:
            handle.remove()
        for attn, value in fused:
            attn.fused_attn = value


def rollout(attentions, *, head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """Returns the B x N x N joint attention (rows sum to 1) from a list of per-layer B x heads x N x N attentions.

    Per layer: heads fused (``mean``, ``max`` or ``min``), the lowest ``discard_ratio`` of the
    weights set to zero (never the class token's attention to itself, as in the reference code,
    so its row keeps its mass), the identity added for the residual path, rows renormalised;
    then the layers multiplied, first layer rightmost.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not 0 <= discard_ratio < 1:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    joint = None
    for attention in attentions:
        fused = getattr(attention.float(), head_fusion)(dim=1)
        fused = fused.values if head_fusion != "mean" else fused
        batch, n, _ = fused.shape
        flat = fused.reshape(batch, -1).clone()
        drop = int(flat.shape[1] * discard_ratio)
        if drop:
            lowest = flat.topk(drop, dim=1, largest=False).indices
            keep_cls = lowest == 0
            flat.scatter_(1, lowest, torch.where(keep_cls, flat.gather(1, lowest), torch.zeros_like(flat[:, :1])))
        layer = flat.reshape(batch, n, n) + torch.eye(n, device=flat.device)
        layer = layer / layer.sum(dim=-1, keepdim=True)
        joint = layer if joint is None else layer @ joint
    return joint


def attention_rollout(model: VisionTransformer, images: torch.Tensor, *, head_fusion: str = "mean",
                      discard_ratio: float = 0.9) -> tuple[np.ndarray, torch.Tensor]:
    """Returns B x H x W rollout maps in [0, 1] at the input's size, and the B x N x N joint attention.

    The map is the class token's row of the joint attention over the patch tokens, on the
    patch grid, upsampled. Rollout follows attention only: it is the same for both classes.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"Attention rollout needs a ViT (timm VisionTransformer), not {type(model).__name__}")
    target = cam_target(model, images.shape[-2:])
    model.eval()
    with torch.no_grad(), _captured_attention(model) as attentions:
        model(images)
    joint = rollout(attentions, head_fusion=head_fusion, discard_ratio=discard_ratio)
    grid = target.reshape(joint[:, 0].unsqueeze(-1)).squeeze(1)  # the class token's row over the patches, B x rows x cols
    return scale_maps(grid, images.shape[-2:]), joint
