"""Parameters of the study's stages as a run sees them: the stage list and the layering of ``params/*.yaml`` that
``make``, the ``python -m dfcore`` commands and the benchmarks all use. What each parameter is, and its default,
is declared once in `dfcore.config`.

Layering, later winning: the stage's defaults (`dfcore.config`), ``params/common.yaml``, ``params/<stage>.yaml``,
then for the profile (after the profiles it ``extends``, base first) its ``common.yaml`` and ``<stage>.yaml``, then
what the caller sets (profile, data_dir, ...). A ``common.yaml`` declares once what several stages share (a
profile's backbone and image size, say); each stage takes from it the parameters it declares. A profile's
``common.yaml`` may say ``extends: <other profile>`` to start from that profile's files instead of copying them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml

from dfcore.config import CONFIGS, RENAMED, StageConfig

ROOT = Path(__file__).resolve().parents[1]


def stages(root: Path = ROOT) -> list[str]:
    """Returns the stage names in run order: the stems of ``notebooks/NN_*.ipynb``."""
    return sorted(p.stem for p in (Path(root) / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _read(path: Path) -> dict:
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold 'name: value' lines, got {type(values).__name__}.")
    return values


def profile_chain(profile: str, root: Path = ROOT) -> list[Path]:
    """Returns the folders of ``profile`` and of the profiles it extends, the base first; a `ValueError` names a
    missing profile or a cycle."""
    chain, name = [], profile
    while name:
        folder = Path(root) / "params" / "profiles" / name
        if not folder.is_dir():
            known = ", ".join(sorted(p.name for p in (Path(root) / "params" / "profiles").iterdir() if p.is_dir()))
            via = f" (extended by {chain[-1].name})" if chain else ""
            raise ValueError(f"No profile '{name}'{via}: expected a folder params/profiles/{name}/ (have: {known}).")
        if folder in chain:
            raise ValueError(f"Profiles extend each other in a cycle: {' -> '.join(p.name for p in [*chain, folder])}.")
        chain.append(folder)
        common = folder / "common.yaml"
        name = _read(common).get("extends", "") if common.is_file() else ""
    return chain[::-1]


def parameter_files(stage: str, profile: str, root: Path = ROOT) -> list[Path]:
    """Returns the parameter files of ``stage`` under ``profile`` that exist, in layering order."""
    params = Path(root) / "params"
    candidates = [params / "common.yaml", params / f"{stage}.yaml"]
    for folder in profile_chain(profile, root):
        candidates += [folder / "common.yaml", folder / f"{stage}.yaml"]
    return [path for path in candidates if path.is_file()]


def _renamed(stage: str, values: dict, where: str) -> dict:
    """Returns ``values`` with the old names of `dfcore.config.RENAMED` replaced by the new ones, warning of each."""
    renames = RENAMED.get(stage, {})
    out = {}
    for name, value in values.items():
        if name in renames:
            warnings.warn(f"{where}: '{name}' is now '{renames[name]}' for {stage}; the old name is read until the "
                          "next release. Rename it.", FutureWarning, stacklevel=3)
            name = renames[name]
        out[name] = value
    return out


def stage_parameters(stage: str, profile: str, root: Path = ROOT, *, defaults: bool = False, **overrides) -> dict:
    """Returns the parameters ``stage`` runs with under ``profile``: its files layered, then ``overrides``; with
    ``defaults``, on top of the stage's declared defaults (every parameter then has a value). A `ValueError` names a
    profile or stage that does not exist, and a stage file that sets a parameter its stage does not declare."""
    if stage not in CONFIGS:
        raise ValueError(f"No stage '{stage}': the stages are {', '.join(CONFIGS)}.")
    config = CONFIGS[stage]
    declared = set(config.names())
    params = {k: v for k, v in config().as_dict().items() if k in declared} if defaults else {}
    for path in parameter_files(stage, profile, root):
        values = _renamed(stage, _read(path), str(path))
        values.pop("extends", None)
        if path.name == "common.yaml":  # shared by several stages: this one takes what it declares
            values = {k: v for k, v in values.items() if k in declared}
        unknown = sorted(set(values) - declared)
        if unknown:
            raise ValueError(f"{path} sets {unknown}, which {stage} does not declare (see docs/parameters.md).")
        params.update(values)
    return {**params, "profile": profile, **_renamed(stage, overrides, "an override")}


def load_config(stage: str, profile: str, root: Path = ROOT, **overrides) -> StageConfig:
    """Returns the typed config ``stage`` runs with under ``profile`` (`stage_parameters` with defaults)."""
    return CONFIGS[stage](**stage_parameters(stage, profile, root, defaults=True, **overrides))


def _literal(value) -> str:
    """Returns ``value`` as a Python literal the way the parameters cells write it (strings in double quotes)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def parameters_cell(stage: str) -> str:
    """Returns the source of ``stage``'s notebook parameters cell, generated from its config: one typed line per
    parameter with its default and meaning (papermill replaces the values)."""
    config = CONFIGS[stage]
    defaults = config().as_dict()
    return "\n".join(f"{f.name}: {f.type} = {_literal(defaults[f.name])}  # {f.metadata['help']}"
                     for f in config.parameters())


def reference() -> str:
    """Returns ``docs/parameters.md``: every stage's parameters with their type, default and meaning, and the old
    names still read."""
    lines = ["# Parameters", "",
             "Generated from `dfcore/config.py` by `python -m dfcore params --sync`; do not edit by hand (a test "
             "checks that it is current).", "",
             "Each stage (notebook) takes the parameters below. A profile sets only what differs from these defaults, "
             "in `params/profiles/<profile>/common.yaml` (shared by the stages that declare a name) and "
             "`params/profiles/<profile>/<stage>.yaml`; `extends: <profile>` in its `common.yaml` starts from another "
             "profile's files. `python -m dfcore params <stage> --profile <profile>` prints what a stage runs with.", ""]
    for stage, config in CONFIGS.items():
        defaults = config().as_dict()
        lines += [f"## {stage}", "", (config.__doc__ or "").strip().splitlines()[0], "",
                  "| parameter | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{f.name}` | {f.type} | `{_literal(defaults[f.name])}` | {f.metadata['help'].replace('|', '/')} |"
                  for f in config.parameters()]
        lines.append("")
    lines += ["## Renamed parameters", "", "Read under their old names, with a warning, until the next release.", "",
              "| stage | old name | new name |", "|---|---|---|"]
    lines += [f"| {stage} | `{old}` | `{new}` |" for stage, names in RENAMED.items() for old, new in names.items()]
    return "\n".join(lines) + "\n"


def sync(root: Path = ROOT) -> list[Path]:
    """Returns the files rewritten after generating every notebook's parameters cell and ``docs/parameters.md``
    from `dfcore.config` (files already current are left alone)."""
    import nbformat

    changed = []
    for stage in CONFIGS:
        path = Path(root) / "notebooks" / f"{stage}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        if cell.source != parameters_cell(stage):
            cell.source = parameters_cell(stage)
            nbformat.write(notebook, path)
            changed.append(path)
    docs = Path(root) / "docs" / "parameters.md"
    if not docs.is_file() or docs.read_text() != reference():
        docs.parent.mkdir(exist_ok=True)
        docs.write_text(reference())
        changed.append(docs)
    return changed
