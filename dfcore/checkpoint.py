"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked to be ours and for the right backbone."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = "dfcore-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint is missing, not one of ours, or for another backbone; the message says which file and what to do."""


def save_checkpoint(state: dict, path) -> Path:
    """Returns ``path`` after writing ``state`` there through a temp file and ``os.replace``.

    A crash mid-write never leaves a half-written checkpoint behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"format": FORMAT, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path, *, backbone: str | None = None, kind: str | None = None) -> dict:
    """Returns the checkpoint dict at ``path``, after checking it is a dfcore checkpoint of that backbone and kind."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist: run the notebook that writes it first (make reproduce).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a checkpoint this study can read ({type(err).__name__}: {err}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a dfcore checkpoint (no '{FORMAT}' marker). For ImageNet weights from timm, "
            "pass the file as pretrained_file instead."
        )
    if backbone is not None and state.get("backbone") != backbone:
        raise CheckpointError(f"{path} holds a '{state.get('backbone')}' model, not '{backbone}': use the same backbone.")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"{path} is a '{state.get('kind')}' checkpoint, not a '{kind}' one.")
    return state
