"""Parameters of the study's stages, in one place: the stage list and the layering that ``make``, the
``python -m dfcore`` commands and the benchmarks all use.

Layering, later winning: ``params/common.yaml``, ``params/<stage>.yaml``, ``params/profiles/<profile>/common.yaml``,
``params/profiles/<profile>/<stage>.yaml``, then what the caller sets (profile, data_dir, ...). A ``common.yaml``
declares once what several stages share (a profile's backbone and image size, say); each stage takes from it the
parameters its notebook declares. The stages are the numbered notebooks themselves (``notebooks/NN_*.ipynb``):
adding one adds a stage.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def stages(root: Path = ROOT) -> list[str]:
    """Returns the stage names in run order: the stems of ``notebooks/NN_*.ipynb``."""
    return sorted(p.stem for p in (Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def notebook_defaults(stage: str, root: Path = ROOT) -> dict:
    """Returns the defaults of ``stage``'s parameters cell (what papermill leaves as they are)."""
    import ast

    import papermill

    declared = papermill.inspect_notebook(str(Path(root) / "notebooks" / f"{stage}.ipynb"))
    return {name: ast.literal_eval(spec["default"]) for name, spec in declared.items()}


def parameter_files(stage: str, profile: str, root: Path = ROOT) -> list[Path]:
    """Returns the parameter files of ``stage`` under ``profile`` that exist, in layering order."""
    params, mine = Path(root) / "params", Path(root) / "params" / "profiles" / profile
    candidates = [params / "common.yaml", params / f"{stage}.yaml", mine / "common.yaml", mine / f"{stage}.yaml"]
    return [path for path in candidates if path.is_file()]


def stage_parameters(stage: str, profile: str, root: Path = ROOT, *, defaults: bool = False, **overrides) -> dict:
    """Returns the parameters ``stage`` runs with under ``profile``: its files layered, then ``overrides``; with
    ``defaults``, on top of the notebook's own defaults (every parameter then has a value)."""
    if not (Path(root) / "params" / "profiles" / profile).is_dir():
        raise ValueError(f"No profile '{profile}': expected a folder params/profiles/{profile}/.")
    if stage not in stages(root):
        raise ValueError(f"No stage '{stage}': the stages are {', '.join(stages(root))}.")
    declared = notebook_defaults(stage, root)
    params = dict(declared) if defaults else {}
    for path in parameter_files(stage, profile, root):
        values = yaml.safe_load(path.read_text()) or {}
        if path.name == "common.yaml":  # shared by several stages: this one takes what its notebook declares
            values = {k: v for k, v in values.items() if k in declared}
        params.update(values)
    return {**params, "profile": profile, **overrides}
