"""``report.html`` of a ``predict`` run: one card per input (verdict, calibrated P(fake), threshold, face crops with
their Grad-CAM overlays, a video's timeline), the most suspicious first; images referenced inside the folder, so it
can be zipped and sent."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

from dfcore.reporting.templates import render

REPORT = "report.html"
RECORDS = "predictions.jsonl"  # written beside it by the command


def _fmt(value, digits: int = 3) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _facts(record: dict) -> list[tuple[str, str]]:
    """Returns the card's (label, value) lines: what the verdict rests on."""
    if record["kind"] == "image":
        facts = [("faces", str(len(record.get("faces", []))))]
        if "width" in record:
            facts.append(("size", f"{record['width']} x {record['height']} px"))
        return facts
    if "frames_sampled" not in record:  # unreadable
        return []
    facts = [("frames with a face", f"{record['frames_with_face']} of {record['frames_sampled']} sampled"),
             ("video", f"{record['frame_count']} frames at {record['fps']:g} fps")]
    if "aggregation" in record:
        how, c = record["aggregation"], record["consistency"]
        facts += [("verdict by", record.get("verdict_by", f"frames' {how['reported']} P(fake)")),
                  ("frame aggregation", f"{how['reported']} (mean {how['mean']:.3f}, confident {how['confident']:.3f})"),
                  ("frames agreeing with the verdict", f"{c['agreeing_share']:.0%}"),
                  ("frame P(fake)", f"{c['min']:.3f} to {c['max']:.3f}, std {c['std']:.3f}")]
    return facts


def _tiles(record: dict, src) -> list[dict]:
    """Returns the face crops to show (an image's faces, a video's most suspicious frames) with their overlays."""
    if record["kind"] == "video":
        shown = sorted((r for r in record.get("frames", []) if "crop" in r), key=lambda r: -r["prob_fake"])
        captions = [f"frame {r['frame']}" + (f" ({r['time_s']:.1f} s)" if r.get("time_s") is not None else "")
                    for r in shown]
    else:
        shown = [f for f in record.get("faces", []) if "crop" in f]
        captions = [f"face {i}" for i in range(len(shown))]
    return [{"src": src(item["crop"]), "cam": src(item["crop_cam"]) if "crop_cam" in item else None,
             "caption": f"{caption}: P(fake) {item['prob_fake']:.3f}"} for item, caption in zip(shown, captions)]


def prediction_card(record: dict, src) -> dict:
    """Returns what the card of one ``predict`` record shows; ``src(path)`` turns a file the record names into an
    ``<img>`` source (None leaves it out)."""
    prob, threshold, decision = record.get("prob_fake"), record.get("threshold"), record.get("decision")
    problem = record.get("error") or record.get("reason")
    return {
        "name": Path(record["path"]).name, "path": record["path"], "kind": record["kind"],
        "decision": decision, "verdict_class": (decision or "none").lower(),
        "prob": _fmt(prob), "prob_pct": None if prob is None else round(100 * prob, 1),
        "threshold": _fmt(threshold), "threshold_pct": None if threshold is None else round(100 * threshold, 1),
        "threshold_source": record.get("threshold_source"),
        "problem": problem, "problem_label": "error" if "error" in record else "no verdict",
        "facts": _facts(record), "tiles": _tiles(record, src),
        "timeline": src(record["timeline"]) if record.get("timeline") else None,
        "cam_figure": src(record["cam"]) if record.get("cam") else None,
    }


def most_suspicious_first(records) -> list[dict]:
    """Returns ``records`` by calibrated P(fake), highest first; those with no verdict last, in their input order."""
    return sorted(records, key=lambda r: (r.get("prob_fake") is None, -(r.get("prob_fake") or 0.0)))


def relative_src(out_dir):
    """Returns ``src(path)``: the URL of ``path`` relative to ``out_dir``, or None for a file outside it (the page
    refers only to its own folder)."""
    root = Path(out_dir).resolve()

    def src(path) -> str | None:
        try:
            return quote(Path(path).resolve().relative_to(root).as_posix())
        except ValueError:
            return None

    return src


def inline_src(path) -> str | None:
    """Returns ``path``'s image as a ``data:`` URL (for a page or widget that has no folder beside it)."""
    path = Path(path)
    if not path.is_file():
        return None
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def card_html(records, src) -> str:
    """Returns the cards of ``records`` (most suspicious first) with their style, as one HTML fragment."""
    return render("prediction_cards.html.j2", cards=[prediction_card(r, src) for r in most_suspicious_first(records)])


def build_predict_report(records, out_dir, describe: dict) -> str:
    """Returns the HTML of ``out_dir``'s report: the predictor (``describe``: `Predictor.describe`), a count of
    verdicts and one card per record, most suspicious first."""
    records = list(records)
    decisions = [r.get("decision") for r in records]
    counts = {"FAKE": decisions.count("FAKE"), "REAL": decisions.count("REAL"), "no verdict": decisions.count(None)}
    crop = describe.get("crop") or {}
    predictor = [("checkpoint", describe["checkpoint"]), ("backbone", describe["backbone"]),
                 ("temperature", _fmt(describe["temperature"])), ("flip TTA", "yes" if describe["flip_tta"] else "no"),
                 ("threshold", f"{describe['threshold']:.3f} ({describe['threshold_source']})"),
                 ("crop source", describe["crop_source"]),
                 ("crop", ", ".join(f"{k} {v}" for k, v in crop.items()) if crop else "none"),
                 ("video aggregation", describe["aggregation"]),
                 ("video verdict", f"temporal head ({describe['temporal_head']})" if describe.get("temporal_head")
                  else "frame aggregation")]
    src = relative_src(out_dir)
    return render("predictions.html.j2", predictor=predictor, counts=counts, total=len(records),
                  jsonl=RECORDS if (Path(out_dir) / RECORDS).exists() else None,
                  cards=[prediction_card(r, src) for r in most_suspicious_first(records)])


def write_predict_report(records, out_dir, describe: dict) -> Path:
    """Writes ``out_dir/report.html`` (see `build_predict_report`); returns its path."""
    path = Path(out_dir) / REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_predict_report(records, out_dir, describe), encoding="utf-8")
    return path
