"""Stage 02, masked-image-modeling pretraining of the backbone (labels ignored): MAE for ViTs, SimMIM otherwise."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dfcore.artifacts import StageOutputs, write_metrics
from dfcore.checkpoint import load_checkpoint
from dfcore.config import MIMConfig as Config
from dfcore.models import data_config
from dfcore.stages.training import build_mim_model, train

__all__ = ["Config", "MIMResult", "run"]


@dataclass
class MIMResult:
    """What notebook 02 shows: the loss per step and epoch, and reconstructions of fixed validation images."""

    config: Config
    skipped: bool
    history: pd.DataFrame | None = None
    steps: pd.DataFrame | None = None
    method: str = ""
    loss_name: str = ""
    mean: tuple = ()
    std: tuple = ()
    reconstructions: dict | None = None  # images, mask, recon at each snapshot


def run(config: Config) -> MIMResult:
    """Pretrains (here or under torchrun), writes ``metrics/02_mim_pretrain.json``; returns the result. With
    ``mim_epochs`` 0 nothing is trained and the metrics say so."""
    c = config
    out = StageOutputs(c.run_dir)
    if c.mim_epochs == 0:
        write_metrics(out.metrics / "02_mim_pretrain.json", {"backbone": c.backbone, "skipped": True},
                      headline={"method": "skipped (mim_epochs is 0)"})
        return MIMResult(c, skipped=True)
    cfg = data_config(build_mim_model(c).encoder)  # the normalisation the reconstructions are shown in
    run_ = train(c)
    history, mim, method = run_.history, run_.model, run_.info["method"]
    last = history.iloc[-1]
    write_metrics(out.metrics / "02_mim_pretrain.json", {
        "backbone": c.backbone,
        "method": method,
        "mask_ratio": c.mask_ratio,
        "mask_patch_pixels": mim.mask_patch,
        "epochs": int(len(history)),
        "images": run_.info["images"],
        "image_sources": run_.info["image_sources"],
        "processes": c.processes,
        "history": history.to_dict("records"),
        "val_masked_loss": float(last["val_loss"]),
        "checkpoint": str(out.mim_backbone),
    }, headline={
        "method": method,
        "MIM loss, first → last epoch": f"{history['train_loss'].iloc[0]:.3f} → {last['train_loss']:.3f}",
        "validation masked loss": float(last["val_loss"]),
    })
    return MIMResult(c, False, history, pd.read_csv(out.mim_dir / "steps.csv"), method,
                     f"{'L1' if mim.l1 else 'squared error'} on masked{' normalised' if c.norm_pix else ''} pixels",
                     cfg["mean"], cfg["std"],
                     load_checkpoint(out.mim_dir / "reconstructions.pt", kind="mim-reconstructions"))
