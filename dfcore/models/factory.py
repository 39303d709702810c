"""Building timm backbones with a two-class head, and loading weights into them."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.data import resolve_data_config

from dfcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def build_model(
    name: str,
    *,
    num_classes: int = 2,
    image_size: int | None = None,
    drop_rate: float = 0.0,
    pretrained_file: str | None = None,
    mim_checkpoint: str | None = None,
) -> torch.nn.Module:
    """Returns timm model ``name`` with a ``num_classes`` head.

    Weights: none (random init), ``pretrained_file`` (ImageNet weights from a local file,
    through timm's ``pretrained_cfg_overlay``), or ``mim_checkpoint`` (the backbone written
    by notebook 02). Nothing is downloaded. ``image_size`` is passed to architectures with a
    fixed input size (ViT, MViTv2); convolutional ones take any size.
    """
    if pretrained_file and mim_checkpoint:
        raise ValueError("Give pretrained_file or mim_checkpoint, not both.")
    if pretrained_file and not Path(pretrained_file).is_file():
        raise CheckpointError(
            f"Weights file {pretrained_file} does not exist. Download the timm weights for '{name}' "
            "once (see README, 'Pretrained weights') and point pretrained_file at it."
        )
    kwargs = {}
    if image_size and timm.get_pretrained_cfg(name).fixed_input_size:
        kwargs["img_size"] = image_size
    if pretrained_file:
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained_file)))
    model = timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate, **kwargs)
    _init_head(model)
    if mim_checkpoint:
        state = load_checkpoint(mim_checkpoint, backbone=name, kind="mim-backbone")
        load_backbone_state(model, state["model"], source=mim_checkpoint)
    return model


def _init_head(model: torch.nn.Module) -> None:
    """Re-initialises the new classifier small (std 0.01, zero bias), as MAE and BEiT do for fine-tuning.

    timm's EfficientNet/MobileNet initialisation scales the head by 1/sqrt(num_classes): with
    two classes its initial logits reach tens and the first epochs only undo that.
    """
    for module in model.get_classifier().modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.trunc_normal_(module.weight, std=0.01)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


def load_backbone_state(model: torch.nn.Module, state: dict, *, source="state dict") -> None:
    """Loads every backbone weight of ``state`` into ``model``; only the classifier may be left as initialised."""
    head = classifier_names(model)
    result = model.load_state_dict(state, strict=False)
    missing = set(result.missing_keys) - head
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{source} does not fit this model: missing {sorted(missing)[:10]}, "
            f"unexpected {sorted(result.unexpected_keys)[:10]}."
        )


def classifier_names(model) -> set[str]:
    """Returns the state-dict names of the classifier head's parameters and buffers."""
    head = {id(t) for t in [*model.get_classifier().parameters(), *model.get_classifier().buffers()]}
    return {n for n, t in [*model.named_parameters(), *model.named_buffers()] if id(t) in head}


def data_config(model) -> dict:
    """Returns timm's data config (input size, mean, std, interpolation) from the model's ``pretrained_cfg``."""
    return resolve_data_config({}, model=model)


class Ensemble(torch.nn.Module):
    """Several classifiers scored as one: the mean of their logits (a deep ensemble, Lakshminarayanan et al. 2017).

    Written here because timm has no inference-time ensemble of separately trained models. The members take
    the same input size and normalisation (`save_ensemble` checks); timm's data config comes from the first
    member, and so do the CAMs (`dfcore.explain.cam_target`).
    """

    def __init__(self, members: list[torch.nn.Module]):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.pretrained_cfg = members[0].pretrained_cfg  # what `data_config` reads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(0)


_MEMBER_KEYS = ("backbone", "image_size", "drop_rate", "init", "epoch", "best_metric")


def _classifier(state: dict) -> torch.nn.Module:
    model = build_model(state["backbone"], image_size=state.get("image_size"), drop_rate=state.get("drop_rate", 0.0))
    model.load_state_dict(state["model"])
    return model


def load_classifier(path, *, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Returns the classifier saved in checkpoint ``path`` (built from its own backbone name and size) and the checkpoint.

    An ensemble checkpoint (`save_ensemble`) gives an `Ensemble` of its members.
    """
    state = load_checkpoint(path, kind="classifier")
    model = Ensemble([_classifier(m) for m in state["members"]]) if "members" in state else _classifier(state)
    return model.to(device).eval(), state


def save_ensemble(checkpoints: list, path) -> Path:
    """Returns ``path`` after writing the phase-2 ``checkpoints`` there as one ensemble checkpoint.

    The members' weights are copied (prediction needs the one file); they must share the input size and the
    face-crop settings, else a `CheckpointError` names the member that differs.
    """
    states = [load_checkpoint(c, kind="classifier") for c in checkpoints]
    first = states[0]
    for source, state in zip(checkpoints[1:], states[1:]):
        for key in ("image_size", "face_crop"):
            if state.get(key) != first.get(key):
                raise CheckpointError(f"{source} has {key} {state.get(key)}, but {checkpoints[0]} has {first.get(key)}: "
                                      "the members of an ensemble score the same input. Give them the same value.")
    cfgs = {(cfg.mean, cfg.std) for cfg in map(timm.get_pretrained_cfg, {s["backbone"] for s in states})}
    if len(cfgs) > 1:
        raise CheckpointError(f"The ensemble members {[str(c) for c in checkpoints]} normalise their input differently "
                              f"({sorted(cfgs)}): use backbones with the same normalisation.")
    members = [{**{k: s.get(k) for k in _MEMBER_KEYS}, "model": s["model"], "source": str(c)}
               for c, s in zip(checkpoints, states)]
    return save_checkpoint({"kind": "classifier", "backbone": " + ".join(m["backbone"] for m in members),
                            "image_size": first["image_size"], "face_crop": first.get("face_crop"),
                            "members": members}, path)
