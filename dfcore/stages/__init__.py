"""The study's stages as code: one module per notebook, each with its typed config (`dfcore.config`) and
``run(config) -> result``; the result holds what the notebook plots, and ``run`` has already written the stage's
metrics. The notebook, ``python -m dfcore train`` (under torchrun), the benchmarks and the tests all call the same
functions.

| stage (notebook) | module | config |
|---|---|---|
| 01_data_manifests | `dfcore.stages.data` | `DataConfig` |
| 02_mim_pretrain | `dfcore.stages.mim` | `MIMConfig` |
| 03_phase1_head | `dfcore.stages.phase1` | `Phase1Config` |
| 04_phase2_finetune | `dfcore.stages.phase2` | `Phase2Config` |
| 05_evaluation | `dfcore.stages.evaluation` | `EvaluationConfig` |
| 06_gradcam_gallery | `dfcore.stages.gallery` | `GalleryConfig` |
"""

from __future__ import annotations

import importlib

MODULES = {
    "01_data_manifests": "data",
    "02_mim_pretrain": "mim",
    "03_phase1_head": "phase1",
    "04_phase2_finetune": "phase2",
    "05_evaluation": "evaluation",
    "06_gradcam_gallery": "gallery",
}


def run(stage: str, config):
    """Returns the result of running ``stage`` with ``config`` (its module's ``run``)."""
    if stage not in MODULES:
        raise ValueError(f"No stage '{stage}': the stages are {', '.join(MODULES)}.")
    return importlib.import_module(f"dfcore.stages.{MODULES[stage]}").run(config)
