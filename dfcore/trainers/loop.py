"""The one training loop of the study: classifier phases and MIM pretraining both run through `run`.

The loop owns what every training run needs: forward, loss, backward, gradient accumulation, clipping, the fp16
GradScaler, the optimizer and per-step LR schedule, the finiteness check, DistributedDataParallel, per-epoch
history, a per-step scalar log, atomic checkpoints from rank 0 and resume. What differs between tasks is passed
in as a `Task`: how a batch becomes a loss, what is measured after an epoch, and which number (if any) picks the
best checkpoint.

Files written under ``out_dir`` (rank 0 only):

- ``history.csv``: one row per epoch (training loss, the task's measures, the LR of each parameter group at the
  epoch's start, images per second);
- ``steps.csv``: the scalar log, one row per optimizer step (training loss averaged over the ranks and the
  accumulated micro-batches, and the LR of each group), for a per-step loss curve in a notebook or any CSV
  reader;
- ``last.pt`` after every epoch, and ``best.pt`` whenever the task's ``monitor`` improves.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import pandas as pd
import torch
from timm.scheduler import CosineLRScheduler
from tqdm import tqdm

from dfcore.checkpoint import resumable_state, run_key, save_checkpoint
from dfcore.datasets import seed_augmentation
from dfcore.datasets.dataset import RANK_STRIDE
from dfcore.distributed import barrier, context, sum_all
from dfcore.runtime import autocast


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, say); the message says where it stopped and what was kept."""


class Task:
    """The task-specific part of a training run; subclasses say how a batch becomes a loss.

    ``kind`` names the checkpoints; ``monitor`` is the `evaluate` key whose highest value picks ``best.pt`` and
    drives early stopping (None: neither); ``find_unused_parameters`` is handed to DDP for models whose forward
    leaves some parameters out (an encoder's classifier during MIM).
    """

    kind: str = "state"
    monitor: str | None = None
    find_unused_parameters: bool = False

    def loss(self, model: torch.nn.Module, batch) -> torch.Tensor:
        """Returns the loss of one (micro-)batch; ``model`` is the trained module (DDP-wrapped under torchrun)."""
        raise NotImplementedError

    def start(self, out_dir: Path, start_epoch: int) -> None:
        """Called once the run knows where it starts (0, or the epoch after the one ``last.pt`` holds)."""

    def evaluate(self, model: torch.nn.Module, epoch: int) -> dict:
        """Returns the measures of the model (unwrapped) after ``epoch``: history columns, ``val_`` ones first."""
        return {}

    def checkpoint_items(self) -> dict:
        """Returns extra items stored in every checkpoint."""
        return {}


def build_scheduler(optimizer, *, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0):
    """Returns a per-step cosine schedule with linear warm-up (timm), decaying to 0."""
    total = max(1, epochs * steps_per_epoch)
    return CosineLRScheduler(
        optimizer,
        t_initial=total,
        lr_min=0.0,
        warmup_t=int(warmup_epochs * steps_per_epoch),
        warmup_lr_init=0.0,
        warmup_prefix=True,
        t_in_epochs=False,
    )


def optimizer_steps(loader, accum_steps: int) -> int:
    """Returns the optimizer steps of one epoch over ``loader`` when ``accum_steps`` batches make one step."""
    return math.ceil(len(loader) / accum_steps)


def set_train_mode(model: torch.nn.Module) -> None:
    """Puts the model in training mode, but keeps frozen normalisation layers (and their running stats) in eval."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


def reseed_epoch(loader, seed: int, epoch: int) -> None:
    """Seeds shuffling and augmentation from (seed, epoch), so a resumed run replays the same epochs.

    The shuffle is the same on every rank (each takes its share of it); augmentation differs by rank.
    """
    torch.manual_seed(seed * 1000 + epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 1000 + epoch)
    seed_augmentation(loader.dataset, seed * 1000 + epoch + RANK_STRIDE * context().rank)


def check_finite(value: float, *, epoch: int, step: int) -> None:
    """Raises `TrainingError` naming the epoch and step when a loss is NaN or infinite."""
    if not math.isfinite(value):
        raise TrainingError(
            f"The loss became {value} at epoch {epoch}, step {step} of that epoch. Training stopped; the last good "
            "checkpoint (last.pt, from the epoch before) is kept. Lower the learning rate, turn on grad_clip, "
            "or turn AMP off."
        )


def grad_scaler(dtype) -> torch.amp.GradScaler | None:
    """Returns the one GradScaler a whole fp16 run needs (None for fp32 and bf16, which need none)."""
    return torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


def restore(state: dict, model, optimizer, scheduler, scaler=None) -> None:
    """Loads a ``last.pt`` state into the model, optimizer, scheduler and (when used) the GradScaler."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])


def _lrs(optimizer) -> dict:
    """Returns each parameter group's LR as ``lr_<group name>`` (plain ``lr`` for one unnamed group)."""
    groups = optimizer.param_groups
    if len(groups) == 1 and "name" not in groups[0]:
        return {"lr": groups[0]["lr"]}
    return {f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(groups)}


def _to_device(batch, device):
    """Returns ``batch`` (a tensor, or a tuple of them) on ``device``; 4-D image batches channels-last."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if batch.ndim == 4:
        return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
    return batch.to(device, non_blocking=True)


def train_one_epoch(model, loader, task: Task, optimizer, scheduler, *, device, dtype=None, scaler=None,
                    grad_clip: float = 0.0, accum_steps: int = 1, epoch: int = 0, step: int = 0,
                    log: list | None = None) -> dict:
    """Returns ``{'loss', 'images_per_s', 'step'}`` after one pass over ``loader``; stops on a NaN/inf loss.

    Every ``accum_steps`` batches make one optimizer step (the gradients of the group are averaged, and DDP
    synchronises only on the group's last batch); the epoch's last group may be shorter. ``log`` gets one row
    per optimizer step: the step, the epoch as a fraction, the loss and the LRs.
    """
    set_train_mode(model)
    params = [p for p in model.parameters() if p.requires_grad]
    distributed = context().active
    n_batches, total, count, group_loss = len(loader), 0.0, 0, 0.0
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(tqdm(loader, desc=f"epoch {epoch}", mininterval=30, leave=False)):
        batch = _to_device(batch, device)
        group_start = i - i % accum_steps
        group_size = min(accum_steps, n_batches - group_start)
        last_of_group = i == group_start + group_size - 1
        sync = model.no_sync if distributed and not last_of_group else contextlib.nullcontext
        with sync():
            with autocast(device, dtype):
                loss = task.loss(model, batch)
            scaled = loss / group_size
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        value, n = loss.item(), len(batch[0] if isinstance(batch, (tuple, list)) else batch)
        group_loss += value / group_size
        total += value * n
        count += n
        if not last_of_group:
            continue
        # every rank checks the same number (a NaN anywhere makes the sum NaN) and stops together:
        # one rank leaving the lock-step alone would hang the others
        mean = sum_all([group_loss])[0] / context().world_size if distributed else group_loss
        check_finite(mean, epoch=epoch, step=i)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if log is not None:
            log.append({"step": step, "epoch": epoch + (i + 1) / n_batches, "train_loss": mean, **_lrs(optimizer)})
        step += 1
        scheduler.step_update(step)
        group_loss = 0.0
    elapsed = time.perf_counter() - start
    total, count = sum_all([total, count])  # the whole batch of every rank
    return {"loss": total / max(count, 1), "images_per_s": count / max(elapsed, 1e-9), "step": step}


def run(
    model: torch.nn.Module,
    loader,
    task: Task,
    *,
    optimizer,
    epochs: int,
    out_dir,
    device,
    dtype=None,
    warmup_epochs: float = 0.0,
    grad_clip: float = 0.0,
    accum_steps: int = 1,
    patience: int | None = None,
    seed: int = 0,
    resume: bool = False,
    meta: dict | None = None,
) -> pd.DataFrame:
    """Trains ``model`` on ``loader`` for ``task``; returns the per-epoch history (see the module's files).

    ``meta`` (backbone, resolved parameters, the data's hash, ...) is stored in every checkpoint. With
    ``resume``, the ``last.pt`` of an interrupted run with the same ``meta`` is continued (`resumable_state`);
    any other earlier run in ``out_dir`` is kept aside, never overwritten. With a ``monitor``, training stops
    after ``patience`` epochs without a better value. Under torchrun the model is wrapped in
    DistributedDataParallel; the checkpoints hold the model itself (no ``module.`` prefixes).
    """
    if accum_steps < 1:
        raise ValueError(f"accum_steps must be 1 or more, got {accum_steps}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    ctx = context()
    scheduler = build_scheduler(optimizer, epochs=epochs, steps_per_epoch=optimizer_steps(loader, accum_steps),
                                warmup_epochs=warmup_epochs)
    scaler = grad_scaler(dtype)
    history, steps, start_epoch, best, stale, step = [], [], 0, -math.inf, 0, 0
    state = resumable_state(out_dir, meta, resume=resume, kind=task.kind)
    if state is not None:
        restore(state, model, optimizer, scheduler, scaler)
        start_epoch, best, stale, step = state["epoch"] + 1, state["best_metric"], state["stale"], state["step"]
        history = pd.read_csv(out_dir / "history.csv").to_dict("records")[:start_epoch]
        if (out_dir / "steps.csv").exists():
            steps = pd.read_csv(out_dir / "steps.csv").to_dict("records")[:step]
    task.start(out_dir, start_epoch)
    # NHWC is oneDNN's and cuDNN's fast convolution layout (a bf16 mobilenetv2 step ran 1.4x faster on 2 CPU
    # cores); set before DDP wraps the model, as DDP keeps views of the parameters
    model.to(device=device, memory_format=torch.channels_last)
    trained = model
    if ctx.active:  # gradients averaged over the ranks
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if device.type == "cuda" else None,
            find_unused_parameters=task.find_unused_parameters)
    for epoch in range(start_epoch, epochs):
        if task.monitor is not None and patience is not None and stale >= patience:
            break
        reseed_epoch(loader, seed, epoch)
        lrs = _lrs(optimizer)
        train = train_one_epoch(trained, loader, task, optimizer, scheduler, device=device, dtype=dtype,
                                scaler=scaler, grad_clip=grad_clip, accum_steps=accum_steps, epoch=epoch, step=step,
                                log=steps)
        step = train["step"]
        measures = task.evaluate(model, epoch)
        improved = False
        if task.monitor is not None:
            improved = measures[task.monitor] > best
            best, stale = (measures[task.monitor], 0) if improved else (best, stale + 1)
        row = {"epoch": epoch, "train_loss": train["loss"], **measures, **lrs,
               "train_images_per_s": train["images_per_s"]}
        history.append(row)
        state = {
            **meta, **task.checkpoint_items(), "kind": task.kind, "run_key": run_key(meta),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch, "step": step, "best_metric": best, "stale": stale, "measures": measures,
        }
        if ctx.main:  # one writer; the others wait for the files before going on
            if improved:
                save_checkpoint(state, out_dir / "best.pt")
            save_checkpoint(state, out_dir / "last.pt")
            pd.DataFrame(history).to_csv(out_dir / "history.csv", index=False)
            pd.DataFrame(steps).to_csv(out_dir / "steps.csv", index=False)
            shown = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in measures.items()
                              if isinstance(v, float))
            print(f"epoch {epoch}: train loss {train['loss']:.4f}" + (f", {shown}" if shown else "")
                  + f", {train['images_per_s']:.0f} img/s" + (" *" if improved else ""), flush=True)
        barrier()
    return pd.DataFrame(history)
