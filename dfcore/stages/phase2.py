"""Stage 04, phase 2: phase 1's model fine-tuned (the last N blocks or all of it), then any ensemble members, then,
where the data are videos, any temporal heads on its frozen frame embeddings (`dfcore.stages.temporal`)."""

from __future__ import annotations

import dataclasses

from dfcore.artifacts import StageOutputs, write_metrics
from dfcore.checkpoint import aside_path
from dfcore.config import Phase2Config as Config
from dfcore.evaluation.decision import decision_path
from dfcore.models import save_ensemble
from dfcore.stages.phase1 import PhaseResult, headline, phase_metrics
from dfcore.stages.temporal import train_heads
from dfcore.stages.training import train

__all__ = ["Config", "member_config", "run"]

_NOT_PER_MEMBER = {"members", "member", "profile", "reports_root"}


def member_config(config: Config, member: int, overrides: dict) -> Config:
    """Returns the config of ensemble member ``member`` (1, 2, ...): ``config`` with ``overrides``.

    An override must name a notebook-04 parameter (a `ValueError` names one that does not); ``members``,
    ``member`` and where the run writes (``profile``, ``reports_root``) cannot be overridden.
    """
    unknown = sorted((set(overrides) - set(Config.names())) | (set(overrides) & _NOT_PER_MEMBER))
    if unknown:
        raise ValueError(f"Ensemble member {member} sets {unknown}: a member may set notebook 04's training "
                         "parameters only (p2_epochs, p2_init, seed, layer_decay, ...). Fix 'members' in the "
                         "profile's 04_phase2_finetune.yaml.")
    return dataclasses.replace(config, **overrides, members=[], member=member)


def _keep_earlier_ensemble_aside(out: StageOutputs) -> None:
    aside = aside_path(out.ensemble)
    aside.mkdir()
    for path in (out.ensemble, decision_path(out.ensemble)):
        if path.exists():
            path.rename(aside / path.name)
    print(f"No ensemble members: the earlier ensemble was kept aside in {aside}; notebook 05 scores phase 2's model.")


def train_models(config: Config) -> list:
    """Returns the runs of notebook 04: its phase-2 model, then each ensemble member of ``members``, in order.

    With members, their best checkpoints are written as one ensemble (`StageOutputs.ensemble`, scored by notebook 05
    as the mean of the members' logits); without, an ensemble left by an earlier run is moved aside, so that
    notebook 05 scores the phase-2 model.
    """
    out = StageOutputs(config.run_dir)
    runs = [train(config)]
    for member, overrides in enumerate(config.members, 1):
        print(f"ensemble member {member}: {overrides}")
        runs.append(train(member_config(config, member, overrides)))
    if config.members:
        save_ensemble([out.member_dir(member) / "best.pt" for member in range(len(runs))], out.ensemble)
    elif out.ensemble.exists():
        _keep_earlier_ensemble_aside(out)
    return runs


def run(config: Config) -> PhaseResult:
    """Trains phase 2 and its members (here or under torchrun), writes ``metrics/04_phase2_finetune.json``; returns
    the result."""
    out = StageOutputs(config.run_dir)
    runs = train_models(config)
    temporal = train_heads(config)
    first = runs[0]
    member_bests = [float(r.history["val_auc"].max()) for r in runs[1:]]
    members = [{"changes": changes, "epochs_run": int(len(r.history)), "best_val_auc": auc,
                "history": r.history.to_dict("records"), "checkpoint": str(out.member_dir(member) / "best.pt")}
               for member, (changes, r, auc) in enumerate(zip(config.members, runs[1:], member_bests), 1)]
    numbers = headline(first)
    write_metrics(out.metrics / "04_phase2_finetune.json", phase_metrics(
        config, first, out.phase2_best, phase1_val_auc=first.info["phase1_val_auc"], members=members,
        study_model=str(out.study_model), temporal=None if temporal is None else {
            "heads": {name: {"best_val_video_auc": temporal.best_val_auc[name], "epochs_run": len(history),
                             "history": history.to_dict("records")} for name, history in temporal.histories.items()},
            "chosen": temporal.chosen, "checkpoint": str(out.temporal_head), "train_videos": temporal.train_videos,
            "val_videos": temporal.val_videos}), headline={
        "best validation AUC": numbers["best validation AUC"], "phase 1 validation AUC": first.info["phase1_val_auc"],
        **{f"member {member} best validation AUC": auc for member, auc in enumerate(member_bests, 1)},
        **({f"temporal {name} best validation video AUC": auc for name, auc in temporal.best_val_auc.items()}
           if temporal else {}),
        "train images/s": numbers["train images/s"]})
    return PhaseResult(config, runs, temporal)
