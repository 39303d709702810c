import json
import re
import tomllib

import papermill
import yaml

from conftest import ROOT

from dfcore.params import stages

STAGES = stages()


def _lock() -> dict:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_the_stages_are_the_numbered_notebooks_in_order():
    assert STAGES == ["01_data_manifests", "02_mim_pretrain", "03_phase1_head", "04_phase2_finetune",
                      "05_evaluation", "06_gradcam_gallery"]


def test_environment_yml_pins_exactly_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip
    pins = dict(p.lower().split("==") for p in pip if "==" in p)
    assert pins == _lock()


def test_lock_pins_the_tested_torch_and_every_direct_dependency():
    lock = _lock()
    assert lock["torch"] == "2.14.1" and lock["torchvision"] == "0.29.1"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in deps}
    assert names - set(lock) == set()


def test_notebooks_are_committed_clean_with_one_parameters_cell():
    for stage in STAGES:
        nb = json.loads((ROOT / "notebooks" / f"{stage}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), stage
        tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
        assert len(tagged) == 1, stage


def test_every_params_file_sets_only_parameters_its_notebook_declares():
    declared = {s: set(papermill.inspect_notebook(str(ROOT / "notebooks" / f"{s}.ipynb"))) for s in STAGES}
    commons = [ROOT / "params" / "common.yaml", *(ROOT / "params" / "profiles").glob("*/common.yaml")]
    for path in commons:  # shared: each key goes to the stages that declare it, so at least one must
        unused = set(yaml.safe_load(path.read_text()) or {}) - set().union(*declared.values()) - {"extends"}
        assert not unused, f"{path} sets {unused}, which no notebook declares"
    files = list((ROOT / "params").glob("0*.yaml")) + list((ROOT / "params" / "profiles").glob("*/0*.yaml"))
    assert files
    for path in files:
        assert path.stem in declared, f"{path} matches no notebook"
        unknown = set(yaml.safe_load(path.read_text()) or {}) - declared[path.stem]
        assert not unknown, f"{path} sets {unknown}, which {path.stem} does not declare"


def test_a_profiles_common_file_reaches_the_stages_that_declare_its_keys_only():
    from dfcore.params import stage_parameters

    for stage in ("02_mim_pretrain", "03_phase1_head"):
        params = stage_parameters(stage, "dfdc-cpu")
        assert (params["backbone"], params["image_size"]) == ("mobilenetv2_100", 128)
    assert "backbone" not in stage_parameters("05_evaluation", "dfdc-cpu")
    assert stage_parameters("03_phase1_head", "smoke")["image_size"] == 32  # a stage's own file still wins
