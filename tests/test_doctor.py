"""`make doctor`: what a run of a profile needs, and what is missing."""

import shutil

from dfcore.doctor import doctor, environment_checks, profile_checks
from conftest import ROOT


def _project(tmp_path, profile_files: dict):
    (tmp_path / "notebooks").mkdir()
    for stage in ("01_data_manifests", "03_phase1_head", "05_evaluation"):
        shutil.copy(ROOT / "notebooks" / f"{stage}.ipynb", tmp_path / "notebooks")
    (tmp_path / "params" / "profiles" / "p").mkdir(parents=True)
    (tmp_path / "params" / "common.yaml").write_text("seed: 0\n")
    for name, text in profile_files.items():
        (tmp_path / "params" / "profiles" / "p" / name).write_text(text)
    return tmp_path


def test_missing_weights_data_and_extra_sets_are_named(tmp_path):
    root = _project(tmp_path, {
        "01_data_manifests.yaml": "data_dir: data/faces\n",
        "03_phase1_head.yaml": "p1_init: file\npretrained_file: weights/none.safetensors\n",
        "05_evaluation.yaml": "extra_eval_sets: [cross, {path: videos, include: '*'}]\n",
    })
    (root / "cross").mkdir()
    found = {c.what: c for c in profile_checks("p", root=root)}
    assert found["data"].ok is False and "DATA_DIR" in found["data"].detail
    assert found["weights (03_phase1_head)"].ok is False and "none.safetensors" in found["weights (03_phase1_head)"].detail
    extra = [c for c in profile_checks("p", root=root) if c.what.startswith("extra set")]
    assert [(c.detail.split(":")[0], c.ok) for c in extra] == [("cross", True), ("videos", False)]
    (root / "data" / "faces").mkdir(parents=True)
    assert {c.what: c.ok for c in profile_checks("p", root=root)}["data"] is True
    assert profile_checks("nope", root=root)[0].ok is False


def test_this_environment_matches_the_lock_and_the_smoke_profile_is_ready(capsys):
    found = {c.what: c for c in environment_checks(ROOT)}
    assert found["packages"].ok, found["packages"].detail  # make test runs in the locked environment
    assert found["python"].ok and found["gloo"].ok and found["face detectors"].ok
    ready = found["disk"].ok  # the only check here that depends on the machine's state
    assert doctor("smoke") == (0 if ready else 1)
    assert ("Ready to run profile 'smoke'" in capsys.readouterr().out) == ready
