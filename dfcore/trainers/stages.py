"""The three training stages, MIM pretraining (notebook 02), phase 1 (notebook 03) and phase 2 (notebook 04), as
functions of a notebook's resolved parameters: the notebook calls them in its kernel, and ``python -m dfcore train``
calls them in every process that ``torchrun`` starts (papermill's kernel cannot host several processes). Either way
the results are files: ``history.csv``, ``steps.csv`` and the checkpoints, which the notebook reads back to plot and
report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from dfcore.checkpoint import aside_path, load_checkpoint
from dfcore.datasets import (
    BlendedDataset,
    BlendSettings,
    load_manifests,
    manifest_info,
    manifests_sha256,
    split_loader,
    training_rows,
)
from dfcore.distributed import context
from dfcore.evaluation.decision import decision_path
from dfcore.evaluation.sets import load_eval_set
from dfcore.models import build_model, data_config, load_classifier, save_ensemble
from dfcore.reporting import stage_outputs
from dfcore.runtime import amp_dtype, loader_settings, resolve_device, seed_everything
from dfcore.trainers.classifier import (
    build_optimizer,
    class_weights,
    fit,
    freeze_backbone,
    hard_example_weights,
    unfreeze_last,
)
from dfcore.trainers.mim import build_mim, pretrain

MIM = "02_mim_pretrain"
PHASES = ("03_phase1_head", "04_phase2_finetune")


@dataclass
class StageRun:
    """What a training stage leaves for its notebook: the history, the model and the numbers it reports
    (``fake_share``: the share of fakes the classifier's loss effectively sees; None for MIM)."""

    history: pd.DataFrame
    model: torch.nn.Module | None
    info: dict
    fake_share: float | None = None


def micro_batch(batch_size: int, accum_steps: int) -> int:
    """Returns the batch a loader yields when ``accum_steps`` of them make one optimizer step of ``batch_size`` (the
    global batch: `split_loader` divides it further among DDP processes)."""
    if accum_steps < 1 or batch_size % accum_steps:
        raise ValueError(f"batch_size {batch_size} must be a multiple of accum_steps {accum_steps}: every optimizer "
                         "step averages accum_steps equal batches. Change one of the two.")
    return batch_size // accum_steps


def _outputs(params: dict):
    """Returns the output folders of the run ``params`` describe (reports_root/profile)."""
    return stage_outputs(Path(params["reports_root"]) / params["profile"])


def blend_settings(params: dict) -> BlendSettings:
    """Returns the pseudo-fake settings a notebook's ``sbi_*`` parameters describe."""
    return BlendSettings(colour=params["sbi_colour"], sharpness=params["sbi_sharpness"], scale=params["sbi_scale"],
                         shift=params["sbi_shift"], elastic=params["sbi_elastic"],
                         ratio=(params["sbi_ratio_min"], 1.0), face_share=params["sbi_face_share"])


def blend_examples(params: dict, n: int) -> tuple[list, list[str]]:
    """Returns ``n`` real training faces each followed by its pseudo-fake and blend mask, with titles."""
    manifests, data_root = load_manifests(_outputs(params).manifests)
    dataset = BlendedDataset(manifests["train"], data_root, transform=None, fakes=params["train_fakes"],
                             settings=blend_settings(params), seed=params["seed"])
    return dataset.examples(n)


def _device(params: dict) -> torch.device:
    device = resolve_device(params["device"])
    ctx = context()
    return torch.device("cuda", ctx.local_rank) if device.type == "cuda" and ctx.active else device


def build_mim_model(params: dict):
    """Returns the masked-image model notebook 02's parameters describe (MAE for ViTs, SimMIM otherwise), untrained."""
    p = params
    encoder = build_model(p["backbone"], image_size=p["image_size"])
    return build_mim(encoder, mask_ratio=p["mask_ratio"], norm_pix=p["norm_pix"], decoder_dim=p["decoder_dim"],
                     decoder_depth=p["decoder_depth"], decoder_heads=p["decoder_heads"], mask_patch=p["mask_patch"])


def _mim_info(mim, n_images: int) -> dict:
    n_encoder = sum(q.numel() for q in mim.encoder.parameters())
    return {"method": type(mim).__name__, "encoder_parameters": n_encoder,
            "decoder_parameters": sum(q.numel() for q in mim.parameters()) - n_encoder, "images": n_images}


def mim_images(params: dict) -> tuple[pd.DataFrame, dict]:
    """Returns the images MIM pretrains on (paths absolute) and how many came from where.

    They are the training split's (``mim_images``: 'all', or 'real' only) and, labels ignored, those of every
    folder in ``mim_extra_sets``: data roots in any layout the study reads, videos included (their faces are cut
    with the study's crop settings under ``reports/<profile>/faces/mim/``). Images of the validation or test
    split, by content hash, and images of their groups (source videos) are left out, with a note.
    """
    out = _outputs(params)
    manifests, data_root = load_manifests(out.manifests)
    train = manifests["train"]
    if params["mim_images"] == "real":
        train = train[train["label"] == 0]
    elif params["mim_images"] != "all":
        raise ValueError(f"mim_images must be 'all' or 'real', got {params['mim_images']!r}")
    frames, counts = [train.assign(path=[str((data_root / q).resolve()) for q in train["path"]])], {"train": len(train)}
    held_out = pd.concat([manifests["val"], manifests["test"]])
    crop = manifest_info(out.manifests).get("face_crop")
    for source in params["mim_extra_sets"]:
        name, extra, root = load_eval_set(source, crops_dir=out.root / "faces" / "mim", crop=crop)
        leak = extra["sha256"].isin(set(held_out["sha256"])) | extra["group"].isin(set(held_out["group"]))
        if leak.any():
            print(f"MIM images from {name}: left out {int(leak.sum())} that are validation or test images, or of "
                  "their source videos.")
        extra = extra[~leak]
        frames.append(extra.assign(path=[str((root / q).resolve()) for q in extra["path"]]))
        counts[name] = len(extra)
    return pd.concat(frames, ignore_index=True), counts


def run_mim(params: dict) -> StageRun:
    """Pretrains notebook 02's masked-image model with ``params``; returns the run (``info``: method and sizes)."""
    p = params
    out = _outputs(p)
    seed_everything(p["seed"])
    dev = _device(p)
    manifests, data_root = load_manifests(out.manifests)
    mim = build_mim_model(p)
    cfg = data_config(mim.encoder)
    images, counts = mim_images(p)
    loader = split_loader({"mim": images}, Path("/"), "mim", image_size=p["image_size"], mean=cfg["mean"],
                          std=cfg["std"], batch_size=micro_batch(p["mim_batch_size"], p["accum_steps"]), train=True,
                          augment="flip", seed=p["seed"], cache_dir=out.root / "cache" if p["decode_cache"] else None,
                          **loader_settings(dev, p["num_workers"]))
    val = split_loader(manifests, data_root, "val", image_size=p["image_size"], mean=cfg["mean"], std=cfg["std"],
                       batch_size=p["recon_images"], seed=p["seed"]).dataset
    watch = torch.stack([val[i][0] for i in np.linspace(0, len(val) - 1, p["recon_images"]).astype(int)])
    info = {**_mim_info(mim, len(loader.dataset)), "image_sources": counts}
    if context().main:
        out.mim_dir.mkdir(parents=True, exist_ok=True)
        (out.mim_dir / "images.json").write_text(json.dumps(counts, indent=1))
        print(f"{info['method']} on {p['backbone']}: {info['encoder_parameters'] / 1e6:.1f} M encoder and "
              f"{info['decoder_parameters'] / 1e6:.2f} M decoder parameters, masking {p['mask_ratio']:.0%} of "
              f"{mim.mask_patch}-pixel patches, {info['images']} images on {dev}, {context().world_size} process(es)")
    history = pretrain(mim, loader, epochs=p["mim_epochs"], lr=p["mim_lr"], out_dir=out.mim_dir, device=dev,
                       dtype=amp_dtype(dev, p["amp"]), warmup_epochs=p["mim_warmup_epochs"],
                       accum_steps=p["accum_steps"], seed=p["seed"], resume=p["resume"], watch=watch,
                       snapshots=p["recon_snapshots"],
                       meta={"backbone": p["backbone"], "image_size": p["image_size"], "params": params,
                             "data_sha256": manifests_sha256({**manifests, "mim": images})})
    return StageRun(history, mim, info)


def run_phase(stage: str, params: dict) -> StageRun:
    """Trains ``stage`` (phase 1 or phase 2) with ``params`` (a notebook's resolved parameters); returns the run.

    Paths in ``params`` are relative to the project root, the working directory.
    """
    if stage not in PHASES:
        raise ValueError(f"stage must be one of {PHASES}, got {stage!r}")
    p = params
    out = _outputs(p)
    seed_everything(p["seed"])
    dev = _device(p)
    dtype = amp_dtype(dev, p["amp"])
    manifests, data_root = load_manifests(out.manifests)
    cache_dir = out.root / "cache" if p["decode_cache"] else None
    train_labels = training_rows(manifests["train"], p["train_fakes"])["label"]  # pseudo-fakes count as fakes
    loss_weights, sampler, fake_share = class_weights(train_labels, p["balance"])
    say = print if context().main else (lambda *a, **k: None)
    say(f"training fakes '{p['train_fakes']}': {len(train_labels)} images, fake share {train_labels.mean():.3f}; "
        f"balance '{p['balance']}': the loss effectively sees {fake_share:.3f}")
    if stage == "03_phase1_head":
        weights = {"mim": dict(mim_checkpoint=out.mim_backbone), "file": dict(pretrained_file=p["pretrained_file"]),
                   "none": {}}[p["init"]]
        model = build_model(p["backbone"], image_size=p["image_size"], drop_rate=p["drop_rate"], **weights).to(dev)
        freeze_backbone(model)
        meta = {"backbone": p["backbone"], "image_size": p["image_size"], "drop_rate": p["drop_rate"],
                "init": p["init"], "face_crop": manifest_info(out.manifests).get("face_crop")}  # for prediction
        info = {"backbone": p["backbone"], "init": p["init"]}
    else:
        model, phase1 = load_classifier(out.phase1_best, device=dev)
        meta = {k: phase1[k] for k in ("backbone", "image_size", "drop_rate", "init", "face_crop")}
        if p["p2_init"] == "none":  # an ensemble member trained from nothing: phase 1's backbone, not its weights
            model = build_model(meta["backbone"], image_size=meta["image_size"], drop_rate=meta["drop_rate"]).to(dev)
            meta["init"] = "none"
        elif p["p2_init"] != "phase1":
            raise ValueError(f"p2_init must be 'phase1' or 'none', got {p['p2_init']!r}")
        unfreeze_last(model, p["trainable_blocks"])
        info = {"backbone": phase1["backbone"], "phase1_val_auc": float(phase1["best_metric"]),
                "phase1_epoch": int(phase1["epoch"])}
    image_size, cfg = meta["image_size"], data_config(model)
    hard = None  # hard examples: the training split's own images that phase 1 misclassifies, never val or test
    if stage == "04_phase2_finetune" and p["hard_example_weight"] != 1:
        scored = split_loader(manifests, data_root, "train", image_size=image_size, mean=cfg["mean"], std=cfg["std"],
                              batch_size=p["batch_size"], cache_dir=cache_dir)
        hard = hard_example_weights(model, scored, weight=p["hard_example_weight"], device=dev, dtype=dtype)
        say(f"hard examples: {int((hard > 1).sum())} of {len(hard)} training images misclassified by phase 1, "
            f"drawn {p['hard_example_weight']}x as often")
    loaders = {split: split_loader(manifests, data_root, split, image_size=image_size, mean=cfg["mean"], std=cfg["std"],
                                   batch_size=micro_batch(p["batch_size"], p["accum_steps"]) if split == "train"
                                   else p["batch_size"], train=split == "train", augment=p["augment"],
                                   balance=sampler, seed=p["seed"], **loader_settings(dev, p["num_workers"]),
                                   fakes=p["train_fakes"], blend=blend_settings(p), cache_dir=cache_dir, weights=hard,
                                   group_batches=p["group_batches"])
               for split in ("train", "val")}
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    say(f"{meta['backbone']} ({'head only' if stage == '03_phase1_head' else 'fine-tuning'}): {trainable / 1e6:.3f} M "
        f"trainable parameters, {len(loaders['train'].dataset)} training images, {dev}, "
        f"{context().world_size} process(es); normalisation {cfg['mean']} / {cfg['std']}")
    if stage == "03_phase1_head":
        optimizer = build_optimizer(model, lr_head=p["p1_lr"], weight_decay=p["weight_decay"])
        epochs, grad_clip, out_dir = p["p1_epochs"], 0.0, out.phase1_dir
    else:
        optimizer = build_optimizer(model, lr_head=p["p2_lr_head"], lr_backbone=p["p2_lr_backbone"],
                                    weight_decay=p["weight_decay"], layer_decay=p["layer_decay"])
        epochs, grad_clip, out_dir = p["p2_epochs"], p["grad_clip"], out.member_dir(p.get("member", 0))
    history = fit(model, loaders["train"], loaders["val"], optimizer=optimizer, epochs=epochs,
                  warmup_epochs=p["warmup_epochs"], out_dir=out_dir, device=dev, dtype=dtype, patience=p["patience"],
                  grad_clip=grad_clip, accum_steps=p["accum_steps"], seed=p["seed"], resume=p["resume"],
                  loss_weights=loss_weights,
                  meta={**meta, "params": params, "data_sha256": manifests_sha256(manifests)})
    info["trainable_parameters"] = trainable
    return StageRun(history, model, info, fake_share)


def member_params(params: dict, member: int, overrides: dict) -> dict:
    """Returns notebook 04's parameters for ensemble member ``member`` (1, 2, ...): ``params`` with ``overrides``.

    An override must name a notebook-04 parameter (a `ValueError` names one that does not); ``members``,
    ``member`` and where the run writes (``profile``, ``reports_root``) cannot be overridden.
    """
    unknown = sorted((set(overrides) - set(params)) | (set(overrides) & {"members", "member", "profile", "reports_root"}))
    if unknown:
        raise ValueError(f"Ensemble member {member} sets {unknown}: a member may set notebook 04's training "
                         "parameters only (p2_epochs, p2_init, seed, layer_decay, ...). Fix 'members' in the "
                         "profile's 04_phase2_finetune.yaml.")
    return {**params, **overrides, "members": [], "member": member}


def run_stage(stage: str, params: dict) -> StageRun:
    """Trains ``stage`` (MIM or one of `PHASES`) with ``params`` in this process (one rank of it under torchrun)."""
    return run_mim(params) if stage == MIM else run_phase(stage, params)


def launch_torchrun(stage: str, params: dict, *, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                    rdzv_endpoint: str = "") -> StageRun:
    """Runs ``stage`` under ``torchrun`` (DDP, ``nproc_per_node`` processes on each of ``nnodes`` nodes) with the
    same parameters, streaming its log; returns the run as read back from the files it wrote."""
    member = f".member{params['member']}" if params.get("member") else ""
    params_file = _outputs(params).root / "params" / f"{stage}{member}.torchrun.yaml"
    params_file.parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    where = (["--nnodes", str(nnodes), "--node_rank", str(node_rank), "--rdzv_backend", "c10d",
              "--rdzv_endpoint", rdzv_endpoint] if nnodes > 1 else ["--standalone"])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc_per_node), *where,
               "-m", "dfcore", "train", stage, "--params-file", str(params_file)]
    print(" ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        print(line, end="", flush=True)
    if process.wait() != 0:
        raise RuntimeError(f"torchrun for {stage} exited with {process.returncode}: see its log above. The epochs "
                           "it finished are in last.pt; running the stage again continues from there.")
    return read_run(stage, params)


def read_run(stage: str, params: dict) -> StageRun:
    """Returns a finished stage's run from its files (history.csv, and best.pt or backbone.pt), as `run_stage` would
    have."""
    out = _outputs(params)
    if stage == MIM:
        mim = build_mim_model(params)
        mim.encoder.load_state_dict(load_checkpoint(out.mim_backbone, kind="mim-backbone")["model"], strict=False)
        counts = json.loads((out.mim_dir / "images.json").read_text())
        info = {**_mim_info(mim, sum(counts.values())), "image_sources": counts}
        return StageRun(pd.read_csv(out.mim_dir / "history.csv"), mim, info)
    manifests, _ = load_manifests(out.manifests)
    _, _, fake_share = class_weights(training_rows(manifests["train"], params["train_fakes"])["label"],
                                     params["balance"])
    folder = out.phase1_dir if stage == "03_phase1_head" else out.member_dir(params.get("member", 0))
    model, state = load_classifier(folder / "best.pt")
    if stage == "03_phase1_head":
        freeze_backbone(model)
        info = {"backbone": state["backbone"], "init": state["init"]}
    else:
        unfreeze_last(model, params["trainable_blocks"])
        phase1 = load_checkpoint(out.phase1_best, kind="classifier")
        info = {"backbone": state["backbone"], "phase1_val_auc": float(phase1["best_metric"]),
                "phase1_epoch": int(phase1["epoch"])}
    info["trainable_parameters"] = sum(q.numel() for q in model.parameters() if q.requires_grad)
    return StageRun(pd.read_csv(folder / "history.csv"), model, info, fake_share)


def train(stage: str, params: dict, *, nproc_per_node: int = 1, nnodes: int = 1, node_rank: int = 0,
          rdzv_endpoint: str = "") -> StageRun:
    """Returns the run of ``stage``: trained here with one process, or under torchrun with several."""
    if nproc_per_node > 1 or nnodes > 1:
        return launch_torchrun(stage, params, nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank,
                               rdzv_endpoint=rdzv_endpoint)
    return run_stage(stage, params)


def train_phase2(params: dict, **launch) -> list[StageRun]:
    """Returns the runs of notebook 04: its phase-2 model, then each ensemble member of ``members``, in order.

    ``launch`` goes to `train` (torchrun settings). With members, their best checkpoints are written as one
    ensemble (`StageOutputs.ensemble`, scored by notebook 05 as the mean of the members' logits); without, an
    ensemble left by an earlier run is moved aside, so that notebook 05 scores the phase-2 model.
    """
    out = _outputs(params)
    runs = [train("04_phase2_finetune", params, **launch)]
    for member, overrides in enumerate(params["members"], 1):
        print(f"ensemble member {member}: {overrides}")
        runs.append(train("04_phase2_finetune", member_params(params, member, overrides), **launch))
    if params["members"]:
        save_ensemble([out.member_dir(member) / "best.pt" for member in range(len(runs))], out.ensemble)
    elif out.ensemble.exists():
        aside = aside_path(out.ensemble)
        aside.mkdir()
        for path in (out.ensemble, decision_path(out.ensemble)):
            if path.exists():
                path.rename(aside / path.name)
        print(f"No ensemble members: the earlier ensemble was kept aside in {aside}; notebook 05 scores phase 2's model.")
    return runs
