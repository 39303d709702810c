"""The files that pass between stages: where each one lives under ``reports/<profile>/`` (`StageOutputs`), and the
metrics JSON every stage writes (`write_metrics`, `read_metrics`). Below every other layer: trainers, evaluation,
inference and reporting all read and write through it."""

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

    # The files that pass between stages, named here once (paths only: the stage writing one makes its folder).
    @property
    def mim_dir(self) -> Path:
        return self.root / "checkpoints" / "mim"

    @property
    def mim_backbone(self) -> Path:
        """Notebook 02's pretrained encoder, which notebook 03 starts from with ``init: mim``."""
        return self.mim_dir / "backbone.pt"

    @property
    def phase1_dir(self) -> Path:
        return self.root / "checkpoints" / "phase1"

    @property
    def phase1_best(self) -> Path:
        return self.phase1_dir / "best.pt"

    @property
    def phase2_dir(self) -> Path:
        return self.root / "checkpoints" / "phase2"

    @property
    def phase2_best(self) -> Path:
        """Phase 2's model (its first ensemble member when notebook 04 trains several)."""
        return self.phase2_dir / "best.pt"

    def member_dir(self, member: int) -> Path:
        """Where phase 2 trains ensemble member ``member`` (0 is the phase-2 model itself)."""
        return self.phase2_dir if member == 0 else self.root / "checkpoints" / f"phase2-member{member}"

    @property
    def temporal_dir(self) -> Path:
        """The temporal heads' runs, one folder per head (``lstm/``, ``gru/``, ``attention/``)."""
        return self.root / "checkpoints" / "temporal"

    @property
    def temporal_head(self) -> Path:
        """The study's temporal head: the one best on validation, copied with what scoring it needs."""
        return self.temporal_dir / "study.pt"

    @property
    def ensemble(self) -> Path:
        """Notebook 04's ensemble of its phase-2 members, when it trains more than one."""
        return self.root / "checkpoints" / "ensemble.pt"

    @property
    def study_model(self) -> Path:
        """The study's model: the ensemble when notebook 04 wrote one, else phase 2's best checkpoint. Notebook 05
        fits its decision rule; 06 and predict use it."""
        return self.ensemble if self.ensemble.is_file() else self.phase2_best

    def predictions(self, name: str) -> Path:
        """Notebook 05's per-image predictions of one scored set (06 reads ``test``)."""
        return self.root / f"predictions_{name}.csv"

    @property
    def classification_report(self) -> Path:
        return self.root / "classification_report.csv"

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
