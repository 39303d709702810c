"""Where and how computation runs: device, mixed-precision dtype, seeding."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """Returns ``cuda`` when asked for 'auto' and a GPU is present, else the named device (or CPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """Returns the autocast dtype for ``device``: bf16 where supported, else fp16 on CUDA; None when AMP is off."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Returns an autocast context for ``dtype``, or a no-op one when it is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def loader_settings(device: torch.device, num_workers: int = -1) -> dict:
    """Returns the DataLoader settings for training on ``device``: ``num_workers`` worker processes (-1 chooses: on
    CUDA, this process's share of the node's CPU cores, up to 8; on CPU none, as the cores already do the training
    and decoding in the loop measured faster than one worker on 2 cores, see ``make bench``), and pinned memory on
    CUDA, where it lets host-to-GPU copies run asynchronously."""
    if num_workers < 0:
        share = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        num_workers = min(8, max(1, share - 1)) if device.type == "cuda" else 0
    return {"num_workers": num_workers, "pin_memory": device.type == "cuda"}


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch, and asks torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN by default, a debugging aid that
    # cost a 2-core CPU fine-tuning step 22% (mobilenetv2, 128 px, batch 32: 61 against 78 images/s).
    # The kernels stay deterministic without it, and the determinism tests still hold.
    torch.utils.deterministic.fill_uninitialized_memory = False


def chdir_project_root() -> Path:
    """Returns the project root after making it the working directory (JupyterLab starts kernels in notebooks/).

    Parameters hold paths relative to the project root, as under ``make reproduce``; the
    root is the nearest folder upwards that holds ``params/common.yaml``.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params" / "common.yaml").is_file():
            os.chdir(folder)
            return folder
    raise FileNotFoundError(f"No project root (a folder with params/common.yaml) at or above {here}.")
