"""The comparison of profile runs: ``python -m dfcore compare [REPORTS_DIRS...]`` (``make compare``).

Every run folder under the given reports roots (``<root>/<profile>/`` with ``metrics/*.json``, ``run_manifest.json``,
``executed/``), finished or not, is read from its metrics files, run manifest and executed notebooks' metadata
only; nothing is re-run. One row per run: what it trained (backbone, input size, initial weights, data), how long
it took, at which commit, and per scored set of notebook 05 the frame AUC with its bootstrap interval, video AUC,
accuracy at the validation threshold and ECE after calibration, and the robustness sweep's mean and worst test
AUC. Written beside each other into the output folder: ``index.html`` (template ``templates/compare.html.j2``),
``compare.csv`` (numbers unrounded, intervals as low/high columns), ``compare.md``, ``compare.tex`` and
``compare_auc.png``.

Files from older versions of the notebooks are read where their layout allows and named in a note where not;
a run that stopped half-way is listed with what it has and the stages it lacks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from dfcore.reporting.templates import render

DEMO = "built-in demo set"
TRAINING_STAGES = ("02_mim_pretrain", "03_phase1_head", "04_phase2_finetune")
WEIGHTS = {"file": "ImageNet file", "mim": "MIM", "none": "none (random)"}  # notebook 03's init
OUTPUTS = ("index.html", "compare.csv", "compare.md", "compare.tex", "compare_auc.png")

# The run's columns (what it is), then per scored set and for the robustness sweep the score columns. Each score
# column says which way is better (for marking the best run) or None (not marked).
RUN_COLUMNS = ["profile", "reports root", "backbone", "input size", "weights", "training data",
               "training min", "total min", "git commit", "stages"]
SET_COLUMNS = {"AUC": max, "AUC 95% low": None, "AUC 95% high": None, "video AUC, mean": max,
               "video AUC, confident": max, "video AUC, temporal": max, "accuracy at val. threshold": max,
               "ECE, calibrated": min}
VIDEO_COLUMNS = ("video AUC, mean", "video AUC, confident", "video AUC, temporal")
ROBUSTNESS = "test robustness"
ROBUSTNESS_COLUMNS = {"mean AUC": max, "worst AUC": max, "worst corruption": None}
DECIMALS = 3
SHORT = {"AUC 95% low": "95% interval", "accuracy at val. threshold": "accuracy", "ECE, calibrated": "ECE",
         "video AUC, mean": "video AUC (mean)", "video AUC, confident": "video AUC (conf.)",
         "video AUC, temporal": "video AUC (temporal)"}  # the pages' headers


@dataclass
class Run:
    """One profile's run as its files tell it."""

    path: Path
    root: str
    info: dict = field(default_factory=dict)  # RUN_COLUMNS' values
    sets: dict = field(default_factory=dict)  # {set name: {SET_COLUMNS name: value}}
    robustness: dict = field(default_factory=dict)  # {ROBUSTNESS_COLUMNS name: value}
    notes: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.root})"


def _number(value) -> float | None:
    """Returns ``value`` as a finite float, or None (missing, null, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _get(mapping, *keys):
    """Returns ``mapping[k0][k1]...``, or None where a key is missing or a level is not a mapping."""
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _read_json(path: Path, notes: list) -> dict | None:
    """Returns the JSON object in ``path``; None, with a note, where it is missing, unreadable or not an object."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        notes.append(f"{path.parent.name}/{path.name} could not be read ({type(err).__name__}: {err}); left out")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path.parent.name}/{path.name} holds a {type(data).__name__}, not an object; left out")
        return None
    return data


def _expected_stages() -> list[str]:
    from dfcore.params import stages

    return stages()


def is_run(path: Path) -> bool:
    """Returns whether ``path`` is a profile's run folder (it has metrics, executed notebooks or a run manifest)."""
    return path.is_dir() and any((path / name).exists() for name in ("metrics", "executed", "run_manifest.json"))


def find_runs(roots) -> list[tuple[Path, str]]:
    """Returns ``(run folder, root as given)`` for every run folder directly under each root (a root that is itself
    a run folder counts as one), in root order, then by profile."""
    found = []
    for root in roots:
        root_path = Path(root)
        if is_run(root_path):
            found.append((root_path, str(root_path.parent)))
            continue
        found += [(p, str(root)) for p in sorted(root_path.iterdir()) if is_run(p)] if root_path.is_dir() else []
    return found


def _durations(run_dir: Path) -> dict:
    """Returns ``{stage: seconds}`` from papermill's metadata of the executed notebooks (their last execution)."""
    seconds = {}
    for nb in sorted((run_dir / "executed").glob("*.ipynb")):
        if nb.name.endswith(".failed.ipynb"):
            continue
        try:
            notebook = json.loads(nb.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        duration = _number(_get(notebook, "metadata", "papermill", "duration"))
        if duration is None:  # papermill also times each cell
            cells = [_number(_get(c, "metadata", "papermill", "duration")) for c in notebook.get("cells", [])]
            cells = [c for c in cells if c is not None]
            duration = sum(cells) if cells else None
        if duration is not None:
            seconds[nb.stem] = duration
    return seconds


def _attempt(notebook: Path) -> str | None:
    """Returns how the unfinished execution in ``notebook`` (papermill's output, renamed by make on success) ended:
    failed, or not ended (running now, or stopped); None where there is none."""
    if not notebook.is_file():
        return None
    try:
        meta = _get(json.loads(notebook.read_text()), "metadata", "papermill") or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        meta = {}
    if meta.get("exception"):
        return "failed"
    if not meta.get("end_time"):
        started = str(meta.get("start_time") or "")[:16].replace("T", " ")
        return "started" + (f" {started} UTC" if started else "") + " and has not finished (running, or stopped)"
    return "finished but was not kept (make keeps a stage's notebook only when it succeeds)"


def _stage_parameters(run_dir: Path, manifest: dict | None, stage: str) -> dict:
    """Returns the parameters ``stage`` ran with: from the run manifest, else from ``params/<stage>.yaml``."""
    found = _get(manifest, "parameters", stage)
    if isinstance(found, dict) and found:
        return found
    path = run_dir / "params" / f"{stage}.yaml"
    if path.is_file():
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _read_sets(evaluation: dict, notes: list) -> dict:
    """Returns ``{set name: {column: value}}`` from notebook 05's metrics: the ``sets`` layout, or the first
    version's ``<set>@0.5`` / ``<set>@val_..._threshold`` keys."""
    found = {}
    sets = evaluation.get("sets")
    temporal = {row.get("set"): _number(row.get("video AUC")) for row in _get(evaluation, "temporal", "videos") or []
                if isinstance(row, dict) and str(row.get("method", "")).endswith("(study)")}  # the study's head
    if isinstance(sets, dict):
        for name, result in sets.items():
            if not isinstance(result, dict):
                notes.append(f"05_evaluation.json: set '{name}' is not an object; left out")
                continue
            interval = _get(result, "bootstrap_95", "auc")
            interval = interval if isinstance(interval, list) and len(interval) == 2 else [None, None]
            video = _get(result, "groups", "unit") == "video"
            row = {"AUC": _number(_get(result, "raw@0.5", "auc")),
                   "AUC 95% low": _number(interval[0]), "AUC 95% high": _number(interval[1]),
                   "video AUC, mean": _number(_get(result, "groups", "mean", "auc")) if video else None,
                   "video AUC, confident": _number(_get(result, "groups", "confident", "auc")) if video else None,
                   "video AUC, temporal": temporal.get(name),
                   "accuracy at val. threshold": _number(_get(result, "calibrated@val_threshold", "accuracy")),
                   "ECE, calibrated": _number(_get(result, "calibrated@val_threshold", "ece"))}
            missing = [k for k in ("AUC", "AUC 95% low", "accuracy at val. threshold", "ECE, calibrated")
                       if row[k] is None]
            if missing:
                notes.append(f"05_evaluation.json: set '{name}' has no {', '.join(missing)} (older layout or "
                             "a single-class set)")
            found[name] = row
        return found
    old = {key: value for key, value in evaluation.items() if "@" in key and isinstance(value, dict)}
    for key, value in old.items():
        name, at = key.split("@", 1)
        row = found.setdefault(name, {})
        if at == "0.5":
            row["AUC"] = _number(value.get("auc"))
        elif "threshold" in at:
            row["accuracy at val. threshold"] = _number(value.get("accuracy"))
            row["ECE, calibrated"] = _number(value.get("ece"))
    if found:
        notes.append("05_evaluation.json is in the first version's layout (no 'sets'): AUC and accuracy read from "
                     f"its {', '.join(sorted(old))} keys; it has no intervals or video-level scores")
    else:
        notes.append("05_evaluation.json holds no scored sets this version can read (keys: "
                     f"{', '.join(sorted(evaluation)) or 'none'})")
    return found


def _read_robustness(evaluation: dict, notes: list) -> dict:
    """Returns the mean and worst test AUC over notebook 05's corruption sweep, and the worst corruption."""
    records = evaluation.get("robustness")
    if records is None or records == []:
        return {}
    if not isinstance(records, list):
        notes.append("05_evaluation.json: 'robustness' is not a list of records; left out")
        return {}
    scored = [(r, _number(r.get("auc"))) for r in records if isinstance(r, dict)]
    scored = [(r, auc) for r, auc in scored if auc is not None]
    if not scored:
        notes.append("05_evaluation.json: 'robustness' records have no AUC; left out")
        return {}
    worst, worst_auc = min(scored, key=lambda pair: pair[1])
    severity = worst.get("severity", "")
    severity = int(severity) if isinstance(severity, float) and severity.is_integer() else severity
    return {"mean AUC": sum(auc for _, auc in scored) / len(scored), "worst AUC": worst_auc,
            "worst corruption": f"{worst.get('corruption', '?')} {severity}".strip()}


def read_run(run_dir, root: str = "", expected_stages: list[str] | None = None) -> Run:
    """Returns what ``run_dir``'s files say about its run; what it lacks or cannot be read goes into its notes."""
    run_dir = Path(run_dir)
    run = Run(run_dir, root or str(run_dir.parent))
    notes = run.notes
    metrics = {p.stem: p for p in sorted((run_dir / "metrics").glob("*.json"))}
    read = {stage: _read_json(path, notes) for stage, path in metrics.items()}
    manifest = _read_json(run_dir / "run_manifest.json", notes)

    expected = expected_stages if expected_stages is not None else _expected_stages()
    executed = {p.stem for p in (run_dir / "executed").glob("*.ipynb") if not p.name.endswith(".failed.ipynb")}
    done = sorted(executed | {s for s, data in read.items() if data is not None})
    missing = [s for s in expected if s not in done]
    for stage in missing:
        attempt = _attempt(run_dir / "executed" / f"{stage}.failed.ipynb")
        if attempt:
            notes.append(f"{stage} {attempt}: see executed/{stage}.failed.ipynb")
    if missing:
        notes.append(f"unfinished: {', '.join(missing)} missing" + (f" (ran {', '.join(done)})" if done else ""))
    run.info["stages"] = (f"{len(done)}/{len(expected)}" if expected else str(len(done))) + (
        f", no {' '.join(s[:2] for s in missing)}" if missing else "")

    data = read.get("01_data_manifests") or {}
    head = read.get("03_phase1_head") or {}
    evaluation = read.get("05_evaluation") or {}
    p03 = head.get("params") if isinstance(head.get("params"), dict) else _stage_parameters(run_dir, manifest,
                                                                                           "03_phase1_head")
    backbone = head.get("backbone") or p03.get("backbone") or evaluation.get("backbone")
    size = _number(p03.get("image_size"))
    init = head.get("init") or p03.get("p1_init") or p03.get("init")  # init: the name before p1_init
    init = str(init) if init is not None else None
    weights = WEIGHTS.get(init, init)
    if init == "file" and p03.get("pretrained_file"):
        weights = f"{weights} ({Path(str(p03['pretrained_file'])).name})"
    if data.get("uses_demo_set") or _get(data, "headline", "data") == DEMO:
        training_data = DEMO
    else:
        training_data = data.get("data_root") or _get(data, "headline", "data")
    seconds = _durations(run_dir)
    training = [seconds[s] for s in TRAINING_STAGES if s in seconds]
    commit = _get(manifest, "git_commit")
    if manifest is None:
        notes.append("no run_manifest.json (written once every stage's report is built): commit unknown")
    run.info.update({
        "profile": run_dir.name, "reports root": run.root, "backbone": backbone,
        "input size": int(size) if size is not None else None, "weights": weights, "training data": training_data,
        "training min": sum(training) / 60 if training else None,
        "total min": sum(seconds.values()) / 60 if seconds else None,
        "git commit": (str(commit)[:7] + (" dirty" if _get(manifest, "git_dirty") else "")) if commit else None,
    })
    if evaluation:
        run.sets = _read_sets(evaluation, notes)
        run.robustness = _read_robustness(evaluation, notes)
    return run


def _set_order(runs: list[Run]) -> list[str]:
    """Returns the scored sets of all runs: test, then the extra sets as they first appear, then val."""
    names = []
    for run in runs:
        names += [n for n in run.sets if n not in names]
    return [n for n in ["test"] if n in names] + [n for n in names if n not in ("test", "val")] + (
        ["val"] if "val" in names else [])


def comparison_table(runs: list[Run]) -> pd.DataFrame:
    """Returns one row per run: the run's columns under ``run``, then a column group per scored set and one for the
    robustness sweep (MultiIndex columns). A set a run did not score is missing (NaN), never zero; video columns
    appear only for sets some run scored per video."""
    columns = [("run", c) for c in RUN_COLUMNS]
    for name in _set_order(runs):
        video = any(run.sets.get(name, {}).get(c) is not None for run in runs for c in VIDEO_COLUMNS)
        columns += [(name, c) for c in SET_COLUMNS if video or c not in VIDEO_COLUMNS]
    if any(run.robustness for run in runs):
        columns += [(ROBUSTNESS, c) for c in ROBUSTNESS_COLUMNS]
    rows = []
    for run in runs:
        values = {("run", c): run.info.get(c) for c in RUN_COLUMNS}
        values.update({(g, c): (run.robustness if g == ROBUSTNESS else run.sets.get(g, {})).get(c)
                       for g, c in columns if g != "run"})
        rows.append([values[c] for c in columns])
    table = pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(columns), dtype=object).infer_objects()
    table[("run", "input size")] = table[("run", "input size")].astype("Int64")  # whole pixels, blank where unknown
    return table


def _direction(column: tuple):
    group, name = column
    if group == "run":
        return None
    return (ROBUSTNESS_COLUMNS if group == ROBUSTNESS else SET_COLUMNS).get(name)


def best_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Returns a boolean frame like ``table``: True at each score column's best value (ties at the shown precision
    all marked), where at least two runs have a value in that column."""
    marked = pd.DataFrame(False, index=table.index, columns=table.columns)
    for column in table.columns:
        better = _direction(column)
        values = pd.to_numeric(table[column], errors="coerce").round(DECIMALS)
        if better is None or values.notna().sum() < 2:
            continue
        marked[column] = values == better(values.dropna())
    return marked


def _display(column: tuple, value) -> str:
    """Returns a cell as the page shows it: blank where missing, scores to 3 decimals, minutes to 1."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if column[1].endswith(" min") else f"{value:.{DECIMALS}f}"
    return str(value)


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Returns the table as text under short headers, its intervals joined into one ``[low, high]`` column after
    each AUC."""
    shown = {}
    for column in table.columns:
        group, name = column
        if name == "AUC 95% high":
            continue
        if name == "AUC 95% low":
            low, high = table[column], table[(group, "AUC 95% high")]
            shown[(group, SHORT[name])] = [
                f"[{_display(column, lo)}, {_display(column, hi)}]" if _display(column, lo) else ""
                for lo, hi in zip(low, high)]
            continue
        shown[(group, SHORT.get(name, name))] = [_display(column, v) for v in table[column]]
    return pd.DataFrame(shown, index=table.index)


def _shown_best(table: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    """Returns ``best_cells`` for the columns of ``display_table``."""
    best = best_cells(table)
    source = {short: name for name, short in SHORT.items()}
    return pd.DataFrame({(g, c): best[(g, source.get(c, c))] for g, c in shown.columns}, index=shown.index)


def to_markdown(table: pd.DataFrame, notes: dict | None = None) -> str:
    """Returns the table as a GitHub-flavoured Markdown table (a column per ``set: score``), the best in bold,
    followed by the runs' notes."""
    shown = display_table(table)
    best = _shown_best(table, shown)
    headers = [name if group == "run" else f"{group}: {name}" for group, name in shown.columns]
    esc = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "|".join(
        "---:" if group != "run" or name.endswith(" min") else "---" for group, name in shown.columns) + "|"]
    for i in shown.index:
        cells = [f"**{esc(v)}**" if best.loc[i, c] and v else esc(v) for c, v in shown.loc[i].items()]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nNotes:\n\n" + "".join(f"- {label}: {note}\n" for label, items in notes.items() for note in items)
    return text


def to_latex(table: pd.DataFrame) -> str:
    """Returns the table as a LaTeX ``tabular`` (booktabs rules, a multicolumn header per scored set), the best of
    each score column in ``\\textbf``."""
    shown = display_table(table)
    best = _shown_best(table, shown)
    styler = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    styler = styler.apply(lambda frame: best.loc[frame.index, frame.columns].replace(
        {True: "textbf:--rwrap;", False: ""}).astype(str), axis=None)
    align = "".join("l" if group == "run" and not name.endswith(" min") else "r" for group, name in shown.columns)
    return styler.to_latex(column_format=align, hrules=True, multicol_align="c")


def plot_auc(runs: list[Run], path: Path) -> Path:
    """Returns ``path`` after drawing each run's frame AUC per scored set with its bootstrap interval (runs without
    notebook 05 left out; a figure saying so where no run has scores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [run for run in runs if any(r.get("AUC") is not None for r in run.sets.values())]
    sets = _set_order(scored)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(sets) * max(1, len(scored)) ** 0.5 + 3), 4.2))
    if not scored:
        ax.text(0.5, 0.5, "no run has notebook 05's scores yet", ha="center", va="center", fontsize=12)
        ax.set_axis_off()
    else:
        width = 0.8 / len(scored)
        lows = []
        for k, run in enumerate(scored):
            xs, ys, errs = [], [], [[], []]
            for i, name in enumerate(sets):
                row = run.sets.get(name, {})
                auc = row.get("AUC")
                if auc is None:
                    continue
                low, high = row.get("AUC 95% low"), row.get("AUC 95% high")
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(auc)
                errs[0].append(auc - low if low is not None else 0.0)
                errs[1].append(high - auc if high is not None else 0.0)
                lows.append(low if low is not None else auc)
            ax.errorbar(xs, ys, yerr=errs, fmt="o", capsize=4, markersize=6, label=run.label)
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xticks(range(len(sets)), sets, rotation=20 if len(sets) > 4 else 0,
                      ha="right" if len(sets) > 4 else "center")
        ax.set_xlim(-0.5, len(sets) - 0.5)
        ax.set_ylim(min(0.45, min(lows) - 0.03), 1.0)
        ax.set_ylabel("frame AUC (95% bootstrap interval)")
        ax.set_title("AUC per scored set")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _html_tables(runs: list[Run], table: pd.DataFrame, out_dir: Path) -> dict:
    """Returns the page's two tables, the runs' columns and the scores (the same rows, split for width): header
    groups ``[(name, span)]``, column names and rows of cells ``{text, best, href, title, num, sep}``."""
    shown = display_table(table)
    best = _shown_best(table, shown)
    cells = []
    for i, run in zip(shown.index, runs):
        row, previous = {}, None
        for column, text in shown.loc[i].items():
            cell = {"text": text, "best": bool(best.loc[i, column]), "href": None, "title": None,
                    "num": column[0] != "run" or column[1].endswith(" min") or column[1] == "input size",
                    "sep": previous is not None and column[0] != previous}
            previous = column[0]
            if column == ("run", "profile"):
                page = run.path / "index.html"
                cell["href"] = os.path.relpath(page if page.exists() else run.path, out_dir)
                cell["title"] = str(run.path)
            elif column == ("run", "training data") and len(text) > 32:
                cell["title"], cell["text"] = text, "…" + text[-31:]
            row[column] = cell
        cells.append(row)
    scores = [c for c in shown.columns if c[0] != "run"]
    groups = []
    for group, _ in scores:
        if groups and groups[-1][0] == group:
            groups[-1][1] += 1
        else:
            groups.append([group, 1])
    several_roots = len({run.root for run in runs}) > 1
    label = [{"text": run.path.name + (f" ({run.root})" if several_roots else ""), "best": False, "num": False,
              "href": row[("run", "profile")]["href"], "title": str(run.path), "sep": False}
             for run, row in zip(runs, cells)]
    return {"run_header": [name for group, name in shown.columns if group == "run"],
            "run_rows": [[row[c] for c in shown.columns if c[0] == "run"] for row in cells],
            "score_groups": groups, "score_header": [name for _, name in scores],
            "score_rows": [[first] + [row[c] for c in scores] for first, row in zip(label, cells)]}


def _read_or_name(run_dir: Path, root: str, expected: list[str]) -> Run:
    """Returns ``read_run``'s run; where its files hold what no check above foresaw, the run with a note saying so
    (one odd folder does not stop the comparison of the others)."""
    try:
        return read_run(run_dir, root, expected)
    except Exception as err:  # noqa: BLE001  (a layout this version cannot know)
        run = Run(run_dir, root, info={"profile": run_dir.name, "reports root": root})
        run.notes.append(f"could not be read ({type(err).__name__}: {err}); listed without its numbers")
        return run


def write_comparison(roots, out_dir=None) -> dict:
    """Returns ``{name: path}`` of the files written into ``out_dir`` (default: the first root): the comparison of
    every run under ``roots``. Raises FileNotFoundError when there is no run to compare."""
    roots = [str(r) for r in roots]
    out_dir = Path(out_dir or roots[0])
    found = find_runs(roots)
    if not found:
        raise FileNotFoundError(f"no run folders (<root>/<profile>/ with metrics/, executed/ or run_manifest.json) "
                                f"under {', '.join(roots)}")
    expected = _expected_stages()
    runs = [_read_or_name(path, root, expected) for path, root in found]
    profiles = [run.path.name for run in runs]
    for run in runs:
        if profiles.count(run.path.name) > 1:
            run.notes.append(f"profile '{run.path.name}' also has a run under another root: this one is at "
                             f"commit {run.info['git commit'] or 'unknown'}")
    table = comparison_table(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in OUTPUTS}
    notes = {run.label: run.notes for run in runs if run.notes}
    flat = table.copy()
    flat.columns = [name if group == "run" else f"{group}: {name}" for group, name in table.columns]
    flat["notes"] = ["; ".join(run.notes) for run in runs]
    flat.to_csv(paths["compare.csv"], index=False, float_format="%.6g")
    paths["compare.md"].write_text(to_markdown(table, notes))
    paths["compare.tex"].write_text(to_latex(table))
    plot_auc(runs, paths["compare_auc.png"])
    paths["index.html"].write_text(render(
        "compare.html.j2", **_html_tables(runs, table, out_dir), notes=notes, roots=roots,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), figure=paths["compare_auc.png"].name,
        files=[p.name for p in paths.values() if p.suffix in (".csv", ".md", ".tex")],
        unscored=[run.label for run in runs if not any(r.get("AUC") is not None for r in run.sets.values())]))
    return paths


def main(argv=None) -> int:
    """``python -m dfcore compare``: writes the comparison; returns the exit code."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dfcore compare", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return compare_command(parser.parse_args(argv))


def add_arguments(parser) -> None:
    """Adds the ``compare`` command's arguments to ``parser``."""
    parser.add_argument("roots", nargs="*", default=["reports"], metavar="REPORTS_DIRS",
                        help="reports roots holding <profile>/ run folders, or run folders (default: reports)")
    parser.add_argument("--out", help="folder for index.html and compare.{csv,md,tex} (default: the first root)")


def compare_command(args) -> int:
    """Runs ``compare``; returns the exit code (2 when no run was found)."""
    import sys

    try:
        paths = write_comparison(args.roots, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
