"""The run manifest and the report index of one profile's run.

Run as ``python -m dfcore.reporting.index reports/<profile>`` after the notebooks (the
Makefile does): it writes ``run_manifest.json`` (git commit, package versions, the resolved
parameters of every executed notebook, the sha256 of each data manifest) and ``index.html``
(a link to every stage's report and its headline numbers, thumbnails of the key figures, the scored sets, and the
profile's ``make bench-mim`` result where one was run into the same reports root), from the Jinja2 template
``templates/index.html.j2``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from dfcore.reporting.templates import render

PACKAGES = ["torch", "torchvision", "timm", "albumentations", "scikit-learn", "numpy", "pandas", "papermill",
            "nbconvert", "torchcam", "matplotlib", "seaborn", "scikit-image", "opencv-python-headless"]
# Shown after notebook 01's contact sheets of faces (or its samples) and before notebook 06's gallery.
KEY_FIGURES = ["05_roc", "05_reliability_test", "05_robustness"]
DEMO_NOTE = ("This run used the built-in demo set: crops of sample photographs shipped with scikit-image and "
             "matplotlib, with self-blended and swapped fakes. It demonstrates the pipeline end to end and is "
             "not a benchmark.")


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_manifest(reports_dir) -> dict:
    """Returns the facts that let someone re-run this profile exactly: code, packages, parameters, data."""
    reports_dir = Path(reports_dir)
    parameters = {}
    for nb in sorted((reports_dir / "executed").glob("*.ipynb")):
        parameters[nb.stem] = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": _versions(),
        "parameters": parameters,
        "data_manifests": {p.name: _sha256(p) for p in sorted((reports_dir / "manifests").glob("*.csv"))},
    }


def _fmt(value) -> str:
    """Returns a number as the index shows it: 3 decimals below 10 (AUCs, losses, temperatures), whole numbers above
    (images/s, counts); anything else as text."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if abs(value) >= 10:
            return f"{value:.0f}"
        return f"{value:.1e}" if 0 < abs(value) < 0.001 else f"{value:.3f}"
    return str(value)


def _stage_page(reports_dir: Path, stage_prefix: str) -> str | None:
    """Returns the link (relative to the run folder) of the HTML report of the stage numbered ``stage_prefix``."""
    pages = sorted((reports_dir / "html").glob(f"{stage_prefix}_*.html"))
    return f"html/{pages[0].name}" if pages else None


def key_figures(reports_dir) -> list[dict]:
    """Returns the run's key figures that exist, in stage order: ``{src, href, caption}``, each linking to its
    stage's HTML report (to the image itself where that report is missing)."""
    reports_dir = Path(reports_dir)
    figures = reports_dir / "figures"
    found = [p for p in sorted(figures.glob("01_faces_*.png")) if p.stem != "01_faces_per_video"]
    found = found or [p for p in [figures / "01_samples.png"] if p.exists()]
    found += [figures / f"{name}.png" for name in KEY_FIGURES if (figures / f"{name}.png").exists()]
    found += sorted(figures.glob("06_gallery_*.png"))
    shown = []
    for path in found:
        src = f"figures/{path.name}"
        caption = path.stem[3:].replace("_", " ")
        shown.append({"src": src, "href": _stage_page(reports_dir, path.stem[:2]) or src, "caption": caption})
    return shown


def _sets_rows(reports_dir: Path) -> list[dict]:
    """Returns a row per scored set of notebook 05 but validation (the study's test split and the cross-dataset
    ones): images, frame-level AUC and its interval, unit-level (video or group) AUC by both aggregations; empty
    before notebook 05."""
    path = reports_dir / "metrics" / "05_evaluation.json"
    if not path.exists():
        return []
    sets = json.loads(path.read_text()).get("sets", {})
    rows = []
    for name, result in sets.items():
        if name == "val" or not isinstance(result, dict):
            continue
        groups = result.get("groups", {})
        interval = result.get("bootstrap_95", {}).get("auc")
        cells = [result.get("n"), result.get("raw@0.5", {}).get("auc"),
                 " to ".join(_fmt(v) for v in interval) if interval else "", groups.get("unit", "group"),
                 groups.get("units"), groups.get("mean", {}).get("auc"), groups.get("confident", {}).get("auc")]
        rows.append({"name": name, "cells": [_fmt(c) for c in cells]})
    return rows


def _mim_benches(reports_dir: Path) -> list[dict]:
    """Returns the results of ``make bench-mim`` for this profile (MIM against random initialisation with the same
    budget: each arm's validation and test AUC, fine-tuning epochs and wall time, and its figure), where the
    benchmark has been run into this reports root's ``bench/``; else nothing."""
    bench = reports_dir.parent / "bench"
    sections = []
    for path in sorted(bench.glob(f"mim_vs_random-*-{reports_dir.name}.json")):
        result = json.loads(path.read_text())
        if result.get("profile") != reports_dir.name:  # the glob's * may have taken part of another profile's name
            continue
        rows = []
        for arm, label in (("mim", "MIM pretraining, then fine-tuning"), ("none", "random initialisation")):
            if arm in result:
                r = result[arm]
                rows.append([label, _fmt(r["val_auc"]), _fmt(r["test_auc"]), _fmt(r["p2_epochs"]),
                             f"{r['minutes_total']:.1f}"])
        figure = path.with_suffix(".png")
        gain = result.get("mim_minus_random_test_auc")
        sections.append({"data": str(result.get("data", "")), "rows": rows,
                         "gain": f"{gain:+.3f}" if gain is not None else None,
                         "figure": f"../bench/{figure.name}" if figure.exists() else None})
    return sections


def build_index(reports_dir) -> str:
    """Returns the HTML of the report index: each stage's report link and its headline numbers, thumbnails of the key
    figures, the scored sets and any ``make bench-mim`` result."""
    reports_dir = Path(reports_dir)
    stages, is_demo = [], False
    for page in sorted((reports_dir / "html").glob("*.html")):
        metrics_path = reports_dir / "metrics" / f"{page.stem}.json"
        headline = json.loads(metrics_path.read_text()).get("headline", {}) if metrics_path.exists() else {}
        is_demo = is_demo or bool(headline.get("data") == "built-in demo set")
        stages.append({"name": page.stem, "href": f"html/{page.name}",
                       "headline": [(k, _fmt(v)) for k, v in headline.items()]})
    return render("index.html.j2", profile=reports_dir.name, demo_note=DEMO_NOTE if is_demo else "", stages=stages,
                  figures=key_figures(reports_dir), sets=_sets_rows(reports_dir),
                  benches=_mim_benches(reports_dir))


def main(argv=None) -> None:
    """Writes the run manifest and the index; with ``--index-only`` the index alone (a benchmark run later than the
    notebooks adds its section without restamping the run's commit and parameters)."""
    args = list(argv if argv is not None else sys.argv[1:])
    reports_dir = Path(args[0])
    if "--index-only" not in args:
        (reports_dir / "run_manifest.json").write_text(json.dumps(run_manifest(reports_dir), indent=2))
    (reports_dir / "index.html").write_text(build_index(reports_dir))
    print(f"wrote {reports_dir / 'index.html'}")


if __name__ == "__main__":
    main()
