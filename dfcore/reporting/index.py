"""The run manifest and the report index of one profile's run.

Run as ``python -m dfcore.reporting.index reports/<profile>`` after the notebooks (the
Makefile does): it writes ``run_manifest.json`` (git commit, package versions, the resolved
parameters of every executed notebook, the sha256 of each data manifest) and ``index.html``
(a link to every stage's report and its headline numbers, and the profile's ``make bench-mim`` result
where one was run into the same reports root).
"""

from __future__ import annotations

import hashlib
import html
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ["torch", "torchvision", "timm", "albumentations", "scikit-learn", "numpy", "pandas", "papermill",
            "nbconvert", "torchcam", "matplotlib", "seaborn", "scikit-image", "opencv-python-headless"]
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
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.4f}"
    return html.escape(str(value))


def _sets_table(reports_dir: Path) -> str:
    """Returns an HTML table of every scored set of notebook 05 (the study's test split and the cross-dataset
    ones): frame-level AUC and unit-level (video or group) AUC by both aggregations; empty before notebook 05."""
    path = reports_dir / "metrics" / "05_evaluation.json"
    if not path.exists():
        return ""
    sets = json.loads(path.read_text()).get("sets", {})
    rows = []
    for name, result in sets.items():
        if name == "val":
            continue
        groups = result.get("groups", {})
        cells = [result.get("n"), result.get("raw@0.5", {}).get("auc"), groups.get("unit", "group"),
                 groups.get("units"), groups.get("mean", {}).get("auc"), groups.get("confident", {}).get("auc")]
        rows.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
    return ("<h2>Scored sets (notebook 05)</h2><table><tr><th>set</th><th>images</th><th>frame AUC</th><th>unit</th>"
            "<th>units</th><th>unit AUC (mean)</th><th>unit AUC (confident)</th></tr>" + "".join(rows) + "</table>")


def _mim_bench_section(reports_dir: Path) -> str:
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
                cells = [label, r["val_auc"], r["test_auc"], r["p2_epochs"], f"{r['minutes_total']:.1f}"]
                rows.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
        figure = path.with_suffix(".png")
        image = (f'<p><img src="../bench/{html.escape(figure.name)}" style="max-width:100%"></p>'
                 if figure.exists() else "")
        gain = result.get("mim_minus_random_test_auc")
        sections.append(
            f"<h2>MIM against random initialisation, same budget (<code>make bench-mim</code>, "
            f"{html.escape(str(result.get('data', '')))})</h2><table><tr><th>arm</th><th>validation AUC</th>"
            f"<th>test AUC</th><th>phase-2 epochs</th><th>minutes, notebooks 01-05</th></tr>{''.join(rows)}</table>"
            + (f"<p>MIM minus random, test AUC: <b>{gain:+.3f}</b></p>" if gain is not None else "") + image)
    return "".join(sections)


def build_index(reports_dir) -> str:
    """Returns the HTML of the report index: each stage's report link and its headline numbers."""
    reports_dir = Path(reports_dir)
    rows, is_demo = [], False
    for page in sorted((reports_dir / "html").glob("*.html")):
        metrics_path = reports_dir / "metrics" / f"{page.stem}.json"
        headline = json.loads(metrics_path.read_text()).get("headline", {}) if metrics_path.exists() else {}
        is_demo = is_demo or bool(headline.get("data") == "built-in demo set")
        numbers = "<br>".join(f"{html.escape(k)}: <b>{_fmt(v)}</b>" for k, v in headline.items())
        rows.append(f'<tr><td><a href="html/{page.name}">{html.escape(page.stem)}</a></td><td>{numbers}</td></tr>')
    note = f'<p class="note">{DEMO_NOTE}</p>' if is_demo else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dfcore report: {html.escape(reports_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td{{padding:.4em 1em;vertical-align:top;
border-bottom:1px solid #ddd}} .note{{background:#fff4d6;padding:.6em}}</style></head>
<body><h1>Deepfake-detection study: profile <code>{html.escape(reports_dir.name)}</code></h1>
{note}
<table><tr><th>stage</th><th>headline numbers</th></tr>
{''.join(rows)}
</table>
{_sets_table(reports_dir)}
{_mim_bench_section(reports_dir)}
<p><a href="run_manifest.json">run_manifest.json</a>: git commit, package versions, parameters, data manifest hashes.</p>
</body></html>
"""


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
