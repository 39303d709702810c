"""Stage 03, phase 1: the backbone frozen (from MIM, an ImageNet file or random init), the two-class head trained."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dfcore.artifacts import StageOutputs, write_metrics
from dfcore.config import Phase1Config as Config
from dfcore.stages.training import StageRun, blend_examples, train

__all__ = ["Config", "PhaseResult", "blend_examples", "run", "phase_metrics"]


@dataclass
class PhaseResult:
    """What notebooks 03 and 04 show: each trained model's history (the first is the phase's model; the others
    notebook 04's ensemble members)."""

    config: Config
    runs: list[StageRun]
    temporal: object | None = None  # notebook 04 on videos: `dfcore.stages.temporal.TemporalResult`

    @property
    def history(self) -> pd.DataFrame:
        return self.runs[0].history

    @property
    def backbone(self) -> str:
        return self.runs[0].info["backbone"]


def phase_metrics(config, run_: StageRun, checkpoint, **extra) -> dict:
    """Returns the metrics of a classifier phase's ``run_``: the resolved parameters, the best validation epoch,
    the history, where its checkpoint is, and ``extra``."""
    history = run_.history
    best = history.loc[history["val_auc"].idxmax()]
    metrics = {"backbone": run_.info["backbone"], "params": config.as_dict(), "effective_fake_share": run_.fake_share,
               "processes": config.processes, "trainable_parameters": run_.info["trainable_parameters"],
               "epochs_run": int(len(history)), "best_epoch": int(best["epoch"]),
               "best_val_auc": float(best["val_auc"]), "history": history.to_dict("records"),
               "checkpoint": str(checkpoint), **extra}
    return metrics


def headline(run_: StageRun) -> dict:
    """Returns the numbers of a phase's ``run_`` that the report index shows."""
    best = run_.history.loc[run_.history["val_auc"].idxmax()]
    return {"best validation AUC": float(best["val_auc"]), "epoch": int(best["epoch"]),
            "train images/s": float(run_.history["train_images_per_s"].median())}


def run(config: Config) -> PhaseResult:
    """Trains phase 1 (here or under torchrun), writes ``metrics/03_phase1_head.json``; returns the result."""
    out = StageOutputs(config.run_dir)
    run_ = train(config)
    write_metrics(out.metrics / "03_phase1_head.json", phase_metrics(config, run_, out.phase1_best,
                                                                     init=config.p1_init), headline=headline(run_))
    return PhaseResult(config, [run_])
