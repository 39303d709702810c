"""Parameters: declared once in dfcore.config; the notebooks' parameters cells and docs/parameters.md are generated
from it; profiles layer, extend each other, and old names are still read."""

import json

import pytest
import yaml

from conftest import ROOT

from dfcore.config import CONFIGS, RENAMED
from dfcore.params import load_config, parameters_cell, profile_chain, reference, stage_parameters, stages


def test_the_stages_are_the_configs_and_the_numbered_notebooks():
    assert list(CONFIGS) == stages()


@pytest.mark.parametrize("stage", list(CONFIGS))
def test_each_notebooks_parameters_cell_is_generated_from_its_config(stage):
    nb = json.loads((ROOT / "notebooks" / f"{stage}.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert "".join(cell["source"]) == parameters_cell(stage), "run: python -m dfcore params --sync"


def test_the_parameter_reference_is_current():
    assert (ROOT / "docs" / "parameters.md").read_text() == reference(), "run: python -m dfcore params --sync"
    assert "| `p2_lr_backbone` | float | `0.001` |" in reference()


def test_every_profile_resolves_to_a_typed_config_for_every_stage():
    for profile in (p.name for p in (ROOT / "params" / "profiles").iterdir() if p.is_dir()):
        for stage, config in CONFIGS.items():
            assert isinstance(load_config(stage, profile), config), (profile, stage)


def test_a_profile_extends_another_and_overrides_only_what_differs(tmp_path):
    mixed = stage_parameters("03_phase1_head", "dfdc-mixed-cpu", defaults=True)
    base = stage_parameters("03_phase1_head", "dfdc-cpu", defaults=True)
    assert mixed == {**base, "train_fakes": "mixed", "profile": "dfdc-mixed-cpu"}
    assert stage_parameters("01_data_manifests", "dfdc-sbi-cpu")["data_dir"] == "../shared/data/dfdc_faces_small"
    assert [p.name for p in profile_chain("dfdc-mixed-cpu")] == ["dfdc-cpu", "dfdc-mixed-cpu"]
    profiles = tmp_path / "params" / "profiles"
    for name, extends in (("a", "b"), ("b", "a"), ("c", "nowhere")):
        (profiles / name).mkdir(parents=True)
        (profiles / name / "common.yaml").write_text(f"extends: {extends}\n")
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        profile_chain("a", tmp_path)
    with pytest.raises(ValueError, match="No profile 'nowhere' \\(extended by c\\)"):
        profile_chain("c", tmp_path)


def test_old_parameter_names_are_read_with_a_warning_and_unknown_ones_refused(tmp_path):
    profile = tmp_path / "params" / "profiles" / "old"
    profile.mkdir(parents=True)
    (profile / "common.yaml").write_text("warmup_epochs: 0.25\n")  # shared: each phase takes it under its new name
    (profile / "03_phase1_head.yaml").write_text("init: none\np1_lr: 0.01\n")
    with pytest.warns(FutureWarning, match="'init' is now 'p1_init'"):
        phase1 = load_config("03_phase1_head", "old", tmp_path)
    assert (phase1.p1_init, phase1.p1_lr_head, phase1.p1_warmup_epochs) == ("none", 0.01, 0.25)
    with pytest.warns(FutureWarning, match="'warmup_epochs' is now 'p2_warmup_epochs'"):
        assert load_config("04_phase2_finetune", "old", tmp_path).p2_warmup_epochs == 0.25
    with pytest.warns(FutureWarning, match="'batch_size' is now 'eval_batch_size'"):
        assert load_config("05_evaluation", "old", tmp_path, batch_size=7).eval_batch_size == 7
    (profile / "04_phase2_finetune.yaml").write_text("p2_epoch: 3\n")
    with pytest.raises(ValueError, match="04_phase2_finetune.yaml sets \\['p2_epoch'\\]"):
        stage_parameters("04_phase2_finetune", "old", tmp_path)
    assert all(old not in CONFIGS[stage].names() for stage, names in RENAMED.items() for old in names)


def test_the_shipped_parameter_files_set_only_what_differs_from_the_defaults():
    for path in [ROOT / "params" / "common.yaml", *(ROOT / "params").glob("0*.yaml")]:
        values = yaml.safe_load(path.read_text()) or {}
        stage = path.stem if path.stem in CONFIGS else None
        for name, value in values.items():
            defaults = [c().as_dict()[name] for s, c in CONFIGS.items() if name in c.names() and stage in (None, s)]
            assert defaults and any(value != d for d in defaults), f"{path}: {name} repeats its default"
