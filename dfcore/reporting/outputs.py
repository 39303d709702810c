"""Where each stage writes: ``reports/<profile>/{metrics,figures,manifests,checkpoints}``."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageOutputs:
    """The output folders of one profile's run, created on first use."""

    root: Path

    def _dir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def metrics(self) -> Path:
        return self._dir("metrics")

    @property
    def figures(self) -> Path:
        return self._dir("figures")

    @property
    def manifests(self) -> Path:
        return self._dir("manifests")

    @property
    def checkpoints(self) -> Path:
        return self._dir("checkpoints")

    def save_figure(self, fig, name: str) -> Path:
        """Returns the PNG path after saving ``fig`` under ``figures/`` (the notebook still shows it)."""
        path = self.figures / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        return path


def stage_outputs(reports_dir) -> StageOutputs:
    """Returns the output folders under ``reports_dir`` (usually ``reports/<profile>``)."""
    return StageOutputs(Path(reports_dir))


def _clean(value):
    """JSON has no NaN: write it as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):  # numpy / torch scalars
        return _clean(value.item())
    return value


def write_metrics(path, metrics: dict, *, headline: dict | None = None) -> Path:
    """Returns ``path`` after writing ``metrics`` as JSON atomically; ``headline`` numbers go on the report index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _clean({"headline": headline or {}, **metrics})
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=False)
    os.replace(tmp, path)
    return path


def read_metrics(path) -> dict:
    """Returns the metrics JSON an earlier stage wrote; a clear error if that stage has not run."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first (make reproduce).")
    return json.loads(path.read_text())
