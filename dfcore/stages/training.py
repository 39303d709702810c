"""The three training stages, MIM pretraining (02), phase 1 (03) and phase 2 (04), as functions of their typed config:
the stage's ``run`` calls `train`, which trains in this process or launches ``torchrun``, whose every process runs
``python -m dfcore train`` and so `train_here` (papermill's kernel cannot host several processes). Either way the
results are files: ``history.csv``, ``steps.csv`` and the checkpoints, read back by `read_run`.
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

from dfcore.artifacts import StageOutputs
from dfcore.checkpoint import load_checkpoint
from dfcore.config import ClassifierConfig, MIMConfig, Phase1Config, Phase2Config, TrainingConfig
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
from dfcore.evaluation.sets import load_eval_set
from dfcore.models import build_model, data_config, load_classifier
from dfcore.runtime import amp_dtype, loader_settings, resolve_device, seed_everything
from dfcore.trainers import build_mim, build_optimizer, class_weights, fit, freeze_backbone, hard_example_weights
from dfcore.trainers import pretrain, unfreeze_last

MIM, PHASE1, PHASE2 = "02_mim_pretrain", "03_phase1_head", "04_phase2_finetune"


@dataclass
class StageRun:
    """What a training stage leaves: the history, the model and the numbers it reports (``fake_share``: the share of
    fakes the classifier's loss effectively sees; None for MIM)."""

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


def blend_settings(config: ClassifierConfig) -> BlendSettings:
    """Returns the pseudo-fake settings of a phase's ``sbi_*`` parameters."""
    c = config
    return BlendSettings(colour=c.sbi_colour, sharpness=c.sbi_sharpness, scale=c.sbi_scale, shift=c.sbi_shift,
                         elastic=c.sbi_elastic, ratio=(c.sbi_ratio_min, 1.0), face_share=c.sbi_face_share)


def blend_examples(config: ClassifierConfig, n: int) -> tuple[list, list[str]]:
    """Returns ``n`` real training faces each followed by its pseudo-fake and blend mask, with titles."""
    manifests, data_root = load_manifests(StageOutputs(config.run_dir).manifests)
    dataset = BlendedDataset(manifests["train"], data_root, transform=None, fakes=config.train_fakes,
                             settings=blend_settings(config), seed=config.seed)
    return dataset.examples(n)


def _device(config: TrainingConfig) -> torch.device:
    device = resolve_device(config.device)
    ctx = context()
    return torch.device("cuda", ctx.local_rank) if device.type == "cuda" and ctx.active else device


def build_mim_model(config: MIMConfig):
    """Returns the masked-image model of notebook 02's ``config`` (MAE for ViTs, SimMIM otherwise), untrained."""
    c = config
    encoder = build_model(c.backbone, image_size=c.image_size)
    return build_mim(encoder, mask_ratio=c.mask_ratio, norm_pix=c.norm_pix, decoder_dim=c.decoder_dim,
                     decoder_depth=c.decoder_depth, decoder_heads=c.decoder_heads, mask_patch=c.mask_patch)


def _mim_info(mim, n_images: int) -> dict:
    n_encoder = sum(q.numel() for q in mim.encoder.parameters())
    return {"method": type(mim).__name__, "encoder_parameters": n_encoder,
            "decoder_parameters": sum(q.numel() for q in mim.parameters()) - n_encoder, "images": n_images}


def mim_images(config: MIMConfig) -> tuple[pd.DataFrame, dict]:
    """Returns the images MIM pretrains on (paths absolute) and how many came from where.

    They are the training split's (``mim_images``: 'all', or 'real' only) and, labels ignored, those of every
    folder in ``mim_extra_sets``: data roots in any layout the study reads, videos included (their faces are cut
    with the study's crop settings under ``reports/<profile>/faces/mim/``). Images of the validation or test
    split, by content hash, and images of their groups (source videos) are left out, with a note.
    """
    out = StageOutputs(config.run_dir)
    manifests, data_root = load_manifests(out.manifests)
    train = manifests["train"]
    if config.mim_images == "real":
        train = train[train["label"] == 0]
    elif config.mim_images != "all":
        raise ValueError(f"mim_images must be 'all' or 'real', got {config.mim_images!r}")
    frames, counts = [train.assign(path=[str((data_root / q).resolve()) for q in train["path"]])], {"train": len(train)}
    held_out = pd.concat([manifests["val"], manifests["test"]])
    crop = manifest_info(out.manifests).get("face_crop")
    for source in config.mim_extra_sets:
        name, extra, root = load_eval_set(source, crops_dir=out.root / "faces" / "mim", crop=crop)
        leak = extra["sha256"].isin(set(held_out["sha256"])) | extra["group"].isin(set(held_out["group"]))
        if leak.any():
            print(f"MIM images from {name}: left out {int(leak.sum())} that are validation or test images, or of "
                  "their source videos.")
        extra = extra[~leak]
        frames.append(extra.assign(path=[str((root / q).resolve()) for q in extra["path"]]))
        counts[name] = len(extra)
    return pd.concat(frames, ignore_index=True), counts


def train_mim(config: MIMConfig) -> StageRun:
    """Pretrains notebook 02's masked-image model; returns the run (``info``: method and sizes)."""
    c = config
    out = StageOutputs(c.run_dir)
    seed_everything(c.seed)
    dev = _device(c)
    manifests, data_root = load_manifests(out.manifests)
    mim = build_mim_model(c)
    cfg = data_config(mim.encoder)
    images, counts = mim_images(c)
    loader = split_loader({"mim": images}, Path("/"), "mim", image_size=c.image_size, mean=cfg["mean"],
                          std=cfg["std"], batch_size=micro_batch(c.mim_batch_size, c.accum_steps), train=True,
                          augment="flip", seed=c.seed, cache_dir=out.root / "cache" if c.decode_cache else None,
                          **loader_settings(dev, c.num_workers))
    val = split_loader(manifests, data_root, "val", image_size=c.image_size, mean=cfg["mean"], std=cfg["std"],
                       batch_size=c.recon_images, seed=c.seed).dataset
    watch = torch.stack([val[i][0] for i in np.linspace(0, len(val) - 1, c.recon_images).astype(int)])
    info = {**_mim_info(mim, len(loader.dataset)), "image_sources": counts}
    if context().main:
        out.mim_dir.mkdir(parents=True, exist_ok=True)
        (out.mim_dir / "images.json").write_text(json.dumps(counts, indent=1))
        print(f"{info['method']} on {c.backbone}: {info['encoder_parameters'] / 1e6:.1f} M encoder and "
              f"{info['decoder_parameters'] / 1e6:.2f} M decoder parameters, masking {c.mask_ratio:.0%} of "
              f"{mim.mask_patch}-pixel patches, {info['images']} images on {dev}, {context().world_size} process(es)")
    history = pretrain(mim, loader, epochs=c.mim_epochs, lr=c.mim_lr, out_dir=out.mim_dir, device=dev,
                       dtype=amp_dtype(dev, c.amp), warmup_epochs=c.mim_warmup_epochs, accum_steps=c.accum_steps,
                       seed=c.seed, resume=c.resume, watch=watch, snapshots=c.recon_snapshots,
                       meta={"backbone": c.backbone, "image_size": c.image_size, "params": c.as_dict(),
                             "data_sha256": manifests_sha256({**manifests, "mim": images})})
    return StageRun(history, mim, info)


@dataclass
class _Classifier:
    """What a phase sets up before the shared training: its model, checkpoint metadata, optimizer and schedule."""

    model: torch.nn.Module
    meta: dict
    info: dict
    optimizer: torch.optim.Optimizer | None
    epochs: int
    warmup_epochs: float
    grad_clip: float
    out_dir: Path


def _phase1_model(config: Phase1Config, out: StageOutputs, dev) -> _Classifier:
    c = config
    weights = {"mim": dict(mim_checkpoint=out.mim_backbone), "file": dict(pretrained_file=c.pretrained_file),
               "none": {}}
    if c.p1_init not in weights:
        raise ValueError(f"p1_init must be one of {sorted(weights)}, got {c.p1_init!r}")
    model = build_model(c.backbone, image_size=c.image_size, drop_rate=c.drop_rate, **weights[c.p1_init]).to(dev)
    freeze_backbone(model)
    meta = {"backbone": c.backbone, "image_size": c.image_size, "drop_rate": c.drop_rate, "init": c.p1_init,
            "face_crop": manifest_info(out.manifests).get("face_crop")}  # for prediction
    return _Classifier(model, meta, {"backbone": c.backbone, "init": c.p1_init},
                       build_optimizer(model, lr_head=c.p1_lr_head, weight_decay=c.weight_decay), c.p1_epochs,
                       c.p1_warmup_epochs, 0.0, out.phase1_dir)


def _phase2_model(config: Phase2Config, out: StageOutputs, dev) -> _Classifier:
    c = config
    model, phase1 = load_classifier(out.phase1_best, device=dev)
    meta = {k: phase1[k] for k in ("backbone", "image_size", "drop_rate", "init", "face_crop")}
    if c.p2_init == "none":  # an ensemble member trained from nothing: phase 1's backbone, not its weights
        model = build_model(meta["backbone"], image_size=meta["image_size"], drop_rate=meta["drop_rate"]).to(dev)
        meta["init"] = "none"
    elif c.p2_init != "phase1":
        raise ValueError(f"p2_init must be 'phase1' or 'none', got {c.p2_init!r}")
    unfreeze_last(model, c.trainable_blocks)
    info = {"backbone": phase1["backbone"], "phase1_val_auc": float(phase1["best_metric"]),
            "phase1_epoch": int(phase1["epoch"])}
    optimizer = build_optimizer(model, lr_head=c.p2_lr_head, lr_backbone=c.p2_lr_backbone,
                                weight_decay=c.weight_decay, layer_decay=c.layer_decay)
    return _Classifier(model, meta, info, optimizer, c.p2_epochs, c.p2_warmup_epochs, c.grad_clip,
                       out.member_dir(c.member))


def train_classifier(config: ClassifierConfig) -> StageRun:
    """Trains phase 1 (a `Phase1Config`) or phase 2 (a `Phase2Config`); returns the run.

    Paths in ``config`` are relative to the project root, the working directory.
    """
    c = config
    out = StageOutputs(c.run_dir)
    seed_everything(c.seed)
    dev = _device(c)
    dtype = amp_dtype(dev, c.amp)
    manifests, data_root = load_manifests(out.manifests)
    cache_dir = out.root / "cache" if c.decode_cache else None
    train_labels = training_rows(manifests["train"], c.train_fakes)["label"]  # pseudo-fakes count as fakes
    loss_weights, sampler, fake_share = class_weights(train_labels, c.balance)
    say = print if context().main else (lambda *a, **k: None)
    say(f"training fakes '{c.train_fakes}': {len(train_labels)} images, fake share {train_labels.mean():.3f}; "
        f"balance '{c.balance}': the loss effectively sees {fake_share:.3f}")
    phase = _phase2_model(c, out, dev) if isinstance(c, Phase2Config) else _phase1_model(c, out, dev)
    model, cfg = phase.model, data_config(phase.model)
    image_size = phase.meta["image_size"]
    hard = None  # hard examples: the training split's own images that phase 1 misclassifies, never val or test
    if isinstance(c, Phase2Config) and c.hard_example_weight != 1:
        scored = split_loader(manifests, data_root, "train", image_size=image_size, mean=cfg["mean"], std=cfg["std"],
                              batch_size=c.batch_size, cache_dir=cache_dir)
        hard = hard_example_weights(model, scored, weight=c.hard_example_weight, device=dev, dtype=dtype)
        say(f"hard examples: {int((hard > 1).sum())} of {len(hard)} training images misclassified by phase 1, "
            f"drawn {c.hard_example_weight}x as often")
    loaders = {split: split_loader(manifests, data_root, split, image_size=image_size, mean=cfg["mean"], std=cfg["std"],
                                   batch_size=micro_batch(c.batch_size, c.accum_steps) if split == "train"
                                   else c.batch_size, train=split == "train", augment=c.augment,
                                   balance=sampler, seed=c.seed, **loader_settings(dev, c.num_workers),
                                   fakes=c.train_fakes, blend=blend_settings(c), cache_dir=cache_dir, weights=hard,
                                   group_batches=c.group_batches)
               for split in ("train", "val")}
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    say(f"{phase.meta['backbone']} ({'fine-tuning' if isinstance(c, Phase2Config) else 'head only'}): "
        f"{trainable / 1e6:.3f} M trainable parameters, {len(loaders['train'].dataset)} training images, {dev}, "
        f"{context().world_size} process(es); normalisation {cfg['mean']} / {cfg['std']}")
    history = fit(model, loaders["train"], loaders["val"], optimizer=phase.optimizer, epochs=phase.epochs,
                  warmup_epochs=phase.warmup_epochs, out_dir=phase.out_dir, device=dev, dtype=dtype,
                  patience=c.patience, grad_clip=phase.grad_clip, accum_steps=c.accum_steps, seed=c.seed,
                  resume=c.resume, loss_weights=loss_weights,
                  meta={**phase.meta, "params": c.run_params(), "data_sha256": manifests_sha256(manifests)})
    return StageRun(history, model, {**phase.info, "trainable_parameters": trainable}, fake_share)


def train_here(config: TrainingConfig) -> StageRun:
    """Trains the stage of ``config`` in this process (one rank of it under torchrun)."""
    return train_mim(config) if isinstance(config, MIMConfig) else train_classifier(config)


def _stage(config: TrainingConfig) -> str:
    return MIM if isinstance(config, MIMConfig) else PHASE2 if isinstance(config, Phase2Config) else PHASE1


def launch_torchrun(config: TrainingConfig) -> StageRun:
    """Runs the stage of ``config`` under ``torchrun`` (DDP, ``nproc_per_node`` processes on each of ``nnodes``
    nodes) with the same config, streaming its log; returns the run as read back from the files it wrote."""
    stage = _stage(config)
    member = f".member{config.member}" if getattr(config, "member", 0) else ""
    params_file = StageOutputs(config.run_dir).root / "params" / f"{stage}{member}.torchrun.yaml"
    params_file.parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(config.as_dict(), sort_keys=False))
    c = config
    where = (["--nnodes", str(c.nnodes), "--node_rank", str(c.node_rank), "--rdzv_backend", "c10d",
              "--rdzv_endpoint", c.rdzv_endpoint] if c.nnodes > 1 else ["--standalone"])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(c.nproc_per_node), *where,
               "-m", "dfcore", "train", stage, "--params-file", str(params_file)]
    print(" ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        print(line, end="", flush=True)
    if process.wait() != 0:
        raise RuntimeError(f"torchrun for {stage} exited with {process.returncode}: see its log above. The epochs "
                           "it finished are in last.pt; running the stage again continues from there.")
    return read_run(config)


def read_run(config: TrainingConfig) -> StageRun:
    """Returns a finished stage's run from its files (history.csv, and best.pt or backbone.pt), as `train_here`
    would have."""
    out = StageOutputs(config.run_dir)
    if isinstance(config, MIMConfig):
        mim = build_mim_model(config)
        mim.encoder.load_state_dict(load_checkpoint(out.mim_backbone, kind="mim-backbone")["model"], strict=False)
        counts = json.loads((out.mim_dir / "images.json").read_text())
        info = {**_mim_info(mim, sum(counts.values())), "image_sources": counts}
        return StageRun(pd.read_csv(out.mim_dir / "history.csv"), mim, info)
    manifests, _ = load_manifests(out.manifests)
    _, _, fake_share = class_weights(training_rows(manifests["train"], config.train_fakes)["label"], config.balance)
    phase2 = isinstance(config, Phase2Config)
    folder = out.member_dir(config.member) if phase2 else out.phase1_dir
    model, state = load_classifier(folder / "best.pt")
    if phase2:
        unfreeze_last(model, config.trainable_blocks)
        phase1 = load_checkpoint(out.phase1_best, kind="classifier")
        info = {"backbone": state["backbone"], "phase1_val_auc": float(phase1["best_metric"]),
                "phase1_epoch": int(phase1["epoch"])}
    else:
        freeze_backbone(model)
        info = {"backbone": state["backbone"], "init": state["init"]}
    info["trainable_parameters"] = sum(q.numel() for q in model.parameters() if q.requires_grad)
    return StageRun(pd.read_csv(folder / "history.csv"), model, info, fake_share)


def train(config: TrainingConfig) -> StageRun:
    """Returns the run of the stage of ``config``: trained here with one process, or under torchrun with several."""
    return launch_torchrun(config) if config.processes > 1 else train_here(config)

