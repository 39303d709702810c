"""Checkpoints: written atomically, loaded with ``weights_only=True``, checked to be ours and for the right backbone."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
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


_NOT_THE_RUN = ("resume", "members")  # parameters that do not change what a run computes (members: the others)
# The code a training run's numbers depend on; reporting, explanations and prediction are not in it, so
# editing a figure re-runs a training notebook in seconds (its finished run is resumed, not repeated).
_TRAINING_CODE = ("datasets", "models", "trainers", "stages/training.py", "config.py", "evaluation/metrics.py",
                  "evaluation/predict.py", "evaluation/sets.py", "runtime.py", "checkpoint.py")


# The temporal heads' own code: a run of a head hashes it in its metadata (`TEMPORAL_CODE`), and editing it never
# re-runs phases 1 and 2, which do not use it.
TEMPORAL_CODE = ("models/temporal.py", "trainers/temporal.py")


def code_sha256(parts=_TRAINING_CODE, *, leave_out=()) -> str:
    """Returns one sha256 over the source files of ``parts`` (folders or files of the package) but ``leave_out``."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for part in parts:
        for path in sorted((package / part).rglob("*.py")) if (package / part).is_dir() else [package / part]:
            name = path.relative_to(package).as_posix()
            if name not in leave_out:
                digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()


def training_code_sha256() -> str:
    """Returns one sha256 over the source files of the code that training depends on (`_TRAINING_CODE`, the temporal
    heads' aside)."""
    return code_sha256(_TRAINING_CODE, leave_out=TEMPORAL_CODE)


def run_key(meta: dict) -> str:
    """Returns the sha256 of what makes a training run this run: ``meta`` (backbone, resolved parameters, the data
    manifests' hash, ...) with ``resume`` left out, and the training code."""
    params = {k: v for k, v in (meta.get("params") or {}).items() if k not in _NOT_THE_RUN}
    payload = {**{k: v for k, v in meta.items() if k != "params"}, "params": params, "code": training_code_sha256()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def aside_path(path) -> Path:
    """Returns where an earlier result at ``path`` is kept aside: ``<name>.replaced-<time>`` beside it
    (a file's name without its suffix), the one naming of everything this package moves out of the way."""
    path = Path(path)
    return path.with_name(f"{path.stem if path.is_file() else path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")


def resumable_state(out_dir, meta: dict, *, resume: bool, kind: str) -> dict | None:
    """Returns the ``last.pt`` state of an interrupted run to continue from, or None to start fresh.

    With ``resume``, a ``last.pt`` of the same run (same `run_key`: parameters, data and training
    code) is continued; a finished one is then simply read back. Any other earlier run in
    ``out_dir`` (other parameters or data, an unreadable checkpoint, or ``resume`` off) is moved
    aside to ``<out_dir>.replaced-<time>``, with a printed note, so that nothing computed is lost.
    """
    from dfcore.distributed import barrier, context

    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    barrier()  # under DDP every rank looks at the same files, before anything is moved
    if not last.exists():
        return None
    try:
        state = load_checkpoint(last, backbone=meta.get("backbone"), kind=kind)
    except CheckpointError:
        state = {}
    if resume and state.get("run_key") == run_key(meta):
        if context().main:
            print(f"Resuming the interrupted run in {out_dir} after epoch {state['epoch']} (same parameters and data).")
        return state
    barrier()  # every rank decided the same from the same file; one of them moves it
    if context().main:
        aside = aside_path(out_dir)
        out_dir.rename(aside)
        out_dir.mkdir(parents=True)
        why = "resume is off" if not resume else "it was made with other parameters or data"
        print(f"{out_dir} held an earlier run ({why}): kept aside as {aside}; starting fresh.")
    barrier()
    return None
