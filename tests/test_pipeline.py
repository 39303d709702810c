"""End to end: `make reproduce PROFILE=smoke` runs all six notebooks with papermill into a temp folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import ROOT
from test_environment import STAGES

from dfcore.checkpoint import load_checkpoint

pytestmark = pytest.mark.e2e


def _make(*args, reports_root):
    venv = Path(sys.prefix)  # the environment running the tests is the one make set up
    return subprocess.run(["make", *args, "PROFILE=smoke", f"REPORTS_ROOT={reports_root}", f"VENV={venv}"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    reports_root = tmp_path_factory.mktemp("reports")
    run = _make("reproduce", reports_root=reports_root)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return reports_root / "smoke", reports_root


def test_every_stage_leaves_an_executed_notebook_without_errors_and_an_html_report(smoke_run):
    out, _ = smoke_run
    for stage in STAGES:
        nb = json.loads((out / "executed" / f"{stage}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, stage
        assert (out / "html" / f"{stage}.html").stat().st_size > 10_000
        assert (out / "metrics" / f"{stage}.json").exists()
    index = (out / "index.html").read_text()
    assert all(f"html/{stage}.html" in index for stage in STAGES)
    assert "not a benchmark" in index


def test_figures_are_not_blank(smoke_run):
    out, _ = smoke_run
    figures = sorted((out / "figures").glob("*.png"))
    assert {f.name.split("_")[0] for f in figures} >= {"01", "02", "03", "04", "05", "06"}
    for figure in figures:
        pixels = np.asarray(Image.open(figure).convert("L"), dtype=float)
        assert pixels.std() > 10, figure.name


def test_metrics_are_computed_from_the_stage_before(smoke_run):
    out, _ = smoke_run
    evaluation = json.loads((out / "metrics" / "05_evaluation.json").read_text())
    assert 0 <= evaluation["sets"]["test"]["raw@0.5"]["auc"] <= 1
    assert evaluation["checkpoint"].endswith("checkpoints/ensemble.pt")  # the smoke profile has an ensemble member
    phase2 = json.loads((out / "metrics" / "04_phase2_finetune.json").read_text())
    phase1 = json.loads((out / "metrics" / "03_phase1_head.json").read_text())
    assert phase2["phase1_val_auc"] == pytest.approx(phase1["best_val_auc"])
    assert phase2["study_model"] == evaluation["checkpoint"]
    member = phase2["members"][0]
    assert len(phase2["members"]) == 1 and member["changes"] == {"p2_init": "none", "seed": 1}
    ensemble = load_checkpoint(out / "checkpoints" / "ensemble.pt", kind="classifier")
    assert [m["source"] for m in ensemble["members"]] == [phase2["checkpoint"], member["checkpoint"]]
    assert [m["init"] for m in ensemble["members"]] == ["mim", "none"]
    first = load_checkpoint(phase2["checkpoint"], kind="classifier")["model"]
    assert all(torch.equal(first[k], v) for k, v in ensemble["members"][0]["model"].items())


def test_run_manifest_records_commit_versions_parameters_and_data_hashes(smoke_run):
    out, _ = smoke_run
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["packages"]["torch"] == "2.14.1"
    assert set(manifest["parameters"]) == set(STAGES)
    assert manifest["parameters"]["02_mim_pretrain"]["mim_epochs"] == 1  # the smoke profile's value won
    assert manifest["parameters"]["01_data_manifests"]["profile"] == "smoke"
    assert set(manifest["data_manifests"]) == {"train.csv", "val.csv", "test.csv"}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert manifest["git_commit"] == (head or None)  # the commit the run was made from, not just a key


def test_an_up_to_date_run_is_not_repeated(smoke_run):
    _, reports_root = smoke_run
    again = _make("reproduce", reports_root=reports_root)
    assert again.returncode == 0
    assert "papermill" not in again.stdout


def test_evaluation_applies_the_stored_validation_rule_and_reports_every_set(smoke_run):
    out, _ = smoke_run
    evaluation = json.loads((out / "metrics" / "05_evaluation.json").read_text())
    rule = json.loads((out / "checkpoints" / "ensemble.decision.json").read_text())
    assert rule["fitted_on"] == "val" and rule["threshold"] == evaluation["decision_rule"]["threshold"]
    assert set(evaluation["sets"]) == {"val", "test", "demo-smoke"}  # the smoke profile's extra set
    test = evaluation["sets"]["test"]
    assert test["calibrated@val_threshold"]["threshold"] == rule["threshold"]
    assert {"auc", "accuracy@val_threshold"} <= set(test["bootstrap_95"])
    assert {"mean", "confident", "frame_auc"} <= set(test["groups"])
    assert {r["corruption"] for r in evaluation["robustness"]} == {"jpeg", "blur", "downscale", "noise"}
    predictions = pd.read_csv(out / "predictions_test.csv")
    assert list(predictions.columns) == ["path", "label", "group", "prob_fake", "prob_fake_calibrated", "prediction"]
    assert (predictions["prediction"] == (predictions["prob_fake_calibrated"] >= rule["threshold"])).all()
    report = pd.read_csv(out / "classification_report.csv")
    assert set(report["set"]) == {"test", "demo-smoke"}
