"""``python -m dfcore compare``: the comparison of runs, read from hand-written reports folders (no notebook runs)."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dfcore.__main__ import main
from dfcore.reporting.compare import best_cells, comparison_table, find_runs, read_run, write_comparison

STAGES = ["01_data_manifests", "02_mim_pretrain", "03_phase1_head", "04_phase2_finetune", "05_evaluation",
          "06_gradcam_gallery"]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _scored(auc, *, video=False):
    """Returns notebook 05's record of one set, its other numbers derived from ``auc``."""
    return {"n": 200, "n_fake": 100, "raw@0.5": {"auc": auc, "ece": 0.2},
            "calibrated@val_threshold": {"accuracy": round(auc - 0.1, 3), "ece": round(1 - auc, 3) / 2},
            "bootstrap_95": {"auc": [auc - 0.05, min(1.0, auc + 0.04)]},
            "groups": {"unit": "video" if video else "group", "units": 20,
                       "mean": {"auc": auc + 0.01}, "confident": {"auc": auc + 0.02}}}


def make_run(root, profile, *, sets=None, stages=STAGES, commit="0123456789abcdef", init="mim", data_root=None,
             minutes=1.0, video=()):
    """Writes a run folder: metrics of 01, 03 and 05 (``sets`` = {name: AUC}), executed notebooks with papermill's
    duration (``minutes`` each), and the run manifest when every stage ran."""
    run = root / profile
    if "01_data_manifests" in stages:
        _write(run / "metrics" / "01_data_manifests.json", {
            "headline": {"data": data_root or "built-in demo set"}, "data_root": data_root or "data/demo",
            "uses_demo_set": data_root is None})
    if "03_phase1_head" in stages:
        _write(run / "metrics" / "03_phase1_head.json", {
            "headline": {}, "backbone": "resnet10t", "init": init,
            "params": {"backbone": "resnet10t", "image_size": 64, "init": init,
                       "pretrained_file": "weights/resnet10t.safetensors" if init == "file" else ""}})
    if "05_evaluation" in stages:
        sets = sets if sets is not None else {"val": 0.9, "test": 0.85}
        _write(run / "metrics" / "05_evaluation.json", {
            "headline": {}, "backbone": "resnet10t",
            "sets": {name: _scored(auc, video=name in video) for name, auc in sets.items()},
            "robustness": [{"corruption": c, "severity": s,
                            "auc": sets["test"] - 0.01 * s - (0.1 if c == "noise" else 0)}
                           for c in ("jpeg", "noise") for s in (1, 2)] if "test" in sets else []})
    for stage in stages:
        _write(run / "executed" / f"{stage}.ipynb",
               {"cells": [], "metadata": {"papermill": {"duration": minutes * 60}}})
    if list(stages) == STAGES:
        _write(run / "run_manifest.json", {"git_commit": commit, "git_dirty": False, "parameters": {}})
    return run


def _classes(page, text):
    """Returns the class sets of the page's table cells that show ``text``."""
    return [set(found.split()) for found in re.findall(rf'<td class="([^"]*)"[^>]*>{re.escape(text)}</td>', page)]


def _row(table, profile, root=None):
    hit = table[(table[("run", "profile")] == profile)
                & ((table[("run", "reports root")] == str(root)) if root is not None else True)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_best_value_of_each_column_is_marked_in_html_markdown_and_latex(tmp_path):
    make_run(tmp_path, "alpha", sets={"val": 0.95, "test": 0.90})
    make_run(tmp_path, "beta", sets={"val": 0.80, "test": 0.70})
    runs = [read_run(path, root) for path, root in find_runs([tmp_path])]
    table = comparison_table(runs)
    best = best_cells(table)
    profiles = list(table[("run", "profile")])
    assert best[("test", "AUC")].tolist() == [p == "alpha" for p in profiles]
    assert best[("test", "ECE, calibrated")].tolist() == [p == "alpha" for p in profiles]  # lower is better
    assert best[("test robustness", "worst AUC")].tolist() == [p == "alpha" for p in profiles]
    assert not best[("run", "training min")].any() and not best[("test", "AUC 95% low")].any()

    paths = write_comparison([tmp_path])
    page = paths["index.html"].read_text()
    assert _classes(page, "0.900") == [{"num", "best", "sep"}]
    assert _classes(page, "0.700")[0] == {"num", "sep"}  # beta's test AUC (then its val accuracy)
    assert "best" in _classes(page, "0.050")[0] and "best" not in _classes(page, "0.150")[0]  # test ECE
    markdown = paths["compare.md"].read_text()
    assert "**0.900**" in markdown and "**0.700**" not in markdown and "| 0.700 |" in markdown
    latex = paths["compare.tex"].read_text()
    assert "\\textbf{0.900}" in latex and "\\textbf{0.700}" not in latex


def test_a_set_a_run_did_not_score_is_blank_not_zero(tmp_path):
    make_run(tmp_path, "alpha", sets={"val": 0.95, "test": 0.90, "celebdf": 0.66}, video=("celebdf",))
    make_run(tmp_path, "beta", sets={"val": 0.80, "test": 0.70})
    paths = write_comparison([tmp_path])
    csv = pd.read_csv(paths["compare.csv"]).set_index("profile")
    assert csv.loc["alpha", "celebdf: AUC"] == pytest.approx(0.66)
    assert pd.isna(csv.loc["beta", "celebdf: AUC"]) and pd.isna(csv.loc["beta", "celebdf: video AUC, mean"])
    assert csv.loc["alpha", "celebdf: video AUC, confident"] == pytest.approx(0.68)
    assert "test: video AUC, mean" not in csv.columns  # no run scored test per video
    beta_line = next(line for line in paths["compare.md"].read_text().splitlines() if line.startswith("| beta"))
    assert "0.000" not in beta_line and "|  |" in beta_line
    # order of the column groups: test, the extra sets, then val
    groups = list(dict.fromkeys(c.split(": ")[0] for c in csv.columns if ": " in c))
    assert groups == ["test", "celebdf", "val", "test robustness"]
    # a single value in a column is not marked "best"
    assert _classes(paths["index.html"].read_text(), "0.660") == [{"num", "sep"}]


def test_a_run_that_stopped_half_way_is_listed_with_its_missing_stages(tmp_path):
    make_run(tmp_path, "done")
    partial = make_run(tmp_path, "partial", stages=STAGES[:3], data_root="/data/dfdc_faces_small")
    _write(partial / "executed" / "04_phase2_finetune.failed.ipynb", {"cells": [], "metadata": {"papermill": {
        "exception": True, "start_time": "2026-01-02T03:04:05", "end_time": "2026-01-02T03:05:00"}}})
    running = make_run(tmp_path, "running", stages=STAGES[:1])
    _write(running / "executed" / "02_mim_pretrain.failed.ipynb", {"cells": [], "metadata": {"papermill": {
        "exception": None, "start_time": "2026-01-02T03:04:05.123", "end_time": None}}})
    paths = write_comparison([tmp_path])
    run = read_run(partial, str(tmp_path))
    assert run.info["stages"] == "3/6, no 04 05 06"
    assert run.info["backbone"] == "resnet10t" and run.info["training data"] == "/data/dfdc_faces_small"
    assert run.info["git commit"] is None and run.sets == {}
    notes = " ".join(run.notes)
    assert "04_phase2_finetune failed" in notes and "05_evaluation" in notes and "run_manifest.json" in notes
    assert "02_mim_pretrain started 2026-01-02 03:04 UTC and has not finished" in " ".join(
        read_run(running, str(tmp_path)).notes)
    csv = pd.read_csv(paths["compare.csv"]).set_index("profile")
    assert pd.isna(csv.loc["partial", "test: AUC"]) and csv.loc["done", "test: AUC"] == pytest.approx(0.85)
    page = paths["index.html"].read_text()
    assert "04_phase2_finetune failed" in page and "Not in the figure (no notebook 05 scores): partial" in page


def test_metrics_of_an_older_layout_are_read_where_possible_and_named_in_a_note(tmp_path):
    old = tmp_path / "old"
    # notebook 05's first layout: '<set>@0.5' keys, no 'sets'; notebook 03 without 'params'
    _write(old / "metrics" / "05_evaluation.json", {"headline": {}, "backbone": "resnet10t",
                                                    "test@0.5": {"auc": 0.71, "accuracy": 0.6},
                                                    "test@val_eer_threshold": {"accuracy": 0.64},
                                                    "val@0.5": {"auc": 0.75}})
    _write(old / "metrics" / "03_phase1_head.json", {"headline": {}, "backbone": "resnet10t", "init": "none"})
    _write(old / "run_manifest.json",
           {"git_commit": "feedface00", "parameters": {"03_phase1_head": {"image_size": 96}}})
    # a set missing keys, a robustness list that is not one, and a file that is not JSON
    odd = make_run(tmp_path, "odd", sets={"val": 0.9, "test": 0.8})
    evaluation = json.loads((odd / "metrics" / "05_evaluation.json").read_text())
    del evaluation["sets"]["test"]["bootstrap_95"], evaluation["sets"]["val"]["calibrated@val_threshold"]
    evaluation["robustness"] = {"jpeg": 0.7}
    _write(odd / "metrics" / "05_evaluation.json", evaluation)
    (odd / "metrics" / "04_phase2_finetune.json").write_text("{not json")

    # a metrics file whose values have types no version wrote
    strange = make_run(tmp_path, "strange")
    _write(strange / "metrics" / "03_phase1_head.json", {"init": ["mim"], "params": {"image_size": "big"}})
    _write(strange / "metrics" / "05_evaluation.json", {"sets": {"test": {"raw@0.5": {"auc": "high"}, "groups": []}},
                                                        "robustness": [{"auc": None}, "jpeg"]})

    paths = write_comparison([tmp_path])
    run = read_run(old, str(tmp_path))
    assert run.sets["test"]["AUC"] == pytest.approx(0.71) and run.sets["test"]["accuracy at val. threshold"] == 0.64
    assert run.info["input size"] == 96 and run.info["weights"] == "none (random)"
    assert run.info["git commit"] == "feedfac"
    assert any("first version's layout" in n for n in run.notes)
    odd_run = read_run(odd, str(tmp_path))
    notes = " ".join(odd_run.notes)
    assert "set 'test' has no AUC 95% low" in notes and "'robustness' is not a list" in notes
    assert "04_phase2_finetune.json could not be read" in notes
    assert odd_run.sets["test"]["AUC"] == pytest.approx(0.8) and odd_run.sets["test"]["AUC 95% low"] is None
    csv = pd.read_csv(paths["compare.csv"]).set_index("profile")
    assert csv.loc["old", "test: AUC"] == pytest.approx(0.71) and pd.isna(csv.loc["old", "test: AUC 95% low"])
    assert pd.isna(csv.loc["strange", "test: AUC"]) and pd.isna(csv.loc["strange", "input size"])
    assert "'robustness' records have no AUC" in csv.loc["strange", "notes"]
    assert "could not be read" not in csv.loc["strange", "notes"]  # read by the checks, not by the last resort


def test_the_same_profile_in_two_roots_is_listed_twice_with_its_commit(tmp_path):
    first, second, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    make_run(first, "demo", commit="1111111aaaa", sets={"val": 0.9, "test": 0.8})
    make_run(second, "demo", commit="2222222bbbb", sets={"val": 0.9, "test": 0.85}, init="file",
             data_root="../shared/data/dfdc_faces_small")
    assert main(["compare", str(first), str(second), "--out", str(out)]) == 0
    runs = [read_run(path, root) for path, root in find_runs([first, second])]
    table = comparison_table(runs)
    assert _row(table, "demo", first)[("run", "git commit")] == "1111111"
    assert _row(table, "demo", second)[("run", "git commit")] == "2222222"
    assert _row(table, "demo", second)[("run", "weights")] == "ImageNet file (resnet10t.safetensors)"
    assert _row(table, "demo", first)[("run", "training data")] == "built-in demo set"
    page = (out / "index.html").read_text()
    assert page.count(">demo</a>") == 2 and 'href="../a/demo"' in page
    assert "also has a run under another root: this one is at commit 2222222" in page
    assert "dfdc\\_faces\\_small" in (out / "compare.tex").read_text()  # LaTeX-escaped


def test_every_output_is_written_and_the_wall_time_sums_the_stages(tmp_path):
    make_run(tmp_path, "alpha", minutes=2.0)
    make_run(tmp_path, "beta", minutes=0.5, sets={"val": 0.7, "test": 0.6})
    paths = write_comparison([tmp_path])
    assert sorted(p.name for p in paths.values()) == sorted(
        ["index.html", "compare.csv", "compare.md", "compare.tex", "compare_auc.png"])
    csv = pd.read_csv(paths["compare.csv"]).set_index("profile")
    assert csv.loc["alpha", "training min"] == pytest.approx(6.0)  # notebooks 02-04, 2 minutes each
    assert csv.loc["alpha", "total min"] == pytest.approx(12.0)
    assert csv.loc["beta", "test robustness: worst corruption"] == "noise 2"
    assert csv.loc["beta", "test robustness: mean AUC"] == pytest.approx(0.6 - 0.015 - 0.05)
    latex = paths["compare.tex"].read_text()
    assert "\\begin{tabular}" in latex and "\\toprule" in latex and "\\multicolumn" in latex
    assert "test robustness" in latex and "training min" in latex
    image = np.asarray(Image.open(paths["compare_auc.png"]).convert("L"), dtype=float)
    assert image.shape[0] > 100 and image.std() > 5  # a drawn figure, not a blank canvas
    assert '<img class="figure" src="compare_auc.png"' in paths["index.html"].read_text()


def test_nothing_to_compare_is_an_error_not_an_empty_page(tmp_path, capsys):
    (tmp_path / "bench").mkdir()  # a reports root's benchmark folder is not a run
    assert main(["compare", str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists()
