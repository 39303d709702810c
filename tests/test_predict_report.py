"""``report.html`` of ``python -m dfcore predict --out`` (dfcore.reporting.predictions) and the JupyterLab widget that
shows the same cards (dfcore.widget)."""

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from browser import blank, needs_chromium, render_page
from dfcore.__main__ import main
from dfcore.inference import Predictor, predict
from dfcore.reporting.predictions import build_predict_report

CARD = re.compile(r'<section class="dfp-card dfp-(\w+)">(.*?)</section>', re.S)
DESCRIBE = {"checkpoint": "reports/p/checkpoints/phase2/best.pt", "backbone": "resnet10t", "temperature": 1.5,
            "flip_tta": True, "aggregation": "confident", "threshold": 0.5, "threshold_source": "--threshold",
            "crop": None, "crop_source": "none (--no-detect: whole images scored)"}


def _cards(page: str) -> list[dict]:
    """Returns each card of ``page`` in order: its verdict class, file name, P(fake) and image sources."""
    return [{"verdict": verdict, "name": re.search(r'class="dfp-name"[^>]*>([^<]+)<', body).group(1),
             "prob": float(p.group(1)) if (p := re.search(r'class="dfp-prob">([\d.]+)<', body)) else None,
             "images": re.findall(r'<img[^>]* src="([^"]+)"', body), "body": body}
            for verdict, body in CARD.findall(page)]


@pytest.fixture(scope="module")
def report(checkpoint, inputs, tmp_path_factory):
    """``predict --out --cam --frames 4`` on the inputs folder and a broken video: the output folder."""
    broken = tmp_path_factory.mktemp("broken") / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    out = tmp_path_factory.mktemp("predict") / "out"
    code = main(["predict", str(inputs), str(broken), "--checkpoint", str(checkpoint), "--out", str(out), "--cam",
                 "--frames", "4"])
    assert code == 1  # the broken video has no verdict
    return out


def test_cards_are_sorted_most_suspicious_first_with_no_verdict_last():
    records = [{"path": "a/low.jpg", "kind": "image", "decision": "REAL", "prob_fake": 0.2, "threshold": 0.5,
                "faces": []},
               {"path": "a/bad.mp4", "kind": "video", "decision": None, "prob_fake": None, "faces": [],
                "error": "a/bad.mp4 has no decodable frame"},
               {"path": "a/high.jpg", "kind": "image", "decision": "FAKE", "prob_fake": 0.9, "threshold": 0.5,
                "faces": []},
               {"path": "a/blank.png", "kind": "image", "decision": None, "prob_fake": None, "threshold": 0.5,
                "faces": [], "reason": "no face of at least 40 px found"},
               {"path": "a/mid.jpg", "kind": "image", "decision": "REAL", "prob_fake": 0.45, "threshold": 0.5,
                "faces": []}]
    page = build_predict_report(records, "nowhere", DESCRIBE)
    cards = _cards(page)
    assert [c["name"] for c in cards] == ["high.jpg", "mid.jpg", "low.jpg", "bad.mp4", "blank.png"]
    assert [c["verdict"] for c in cards] == ["fake", "real", "real", "none", "none"]
    assert "error:</b> a/bad.mp4 has no decodable frame" in cards[3]["body"]
    assert "no verdict:</b> no face of at least 40 px" in cards[4]["body"]
    assert "<b>1</b>FAKE, <b>2</b>REAL" in page and "<b>2</b>without a verdict" in page
    for shown in ("resnet10t", "1.500", "flip TTA</th><td>yes", "--no-detect: whole images scored", "--threshold"):
        assert shown in page, shown


def test_report_has_a_card_per_input_in_order_of_suspicion_and_its_images_inside_the_folder(report):
    records = [json.loads(line) for line in (report / "predictions.jsonl").read_text().splitlines()]
    page = (report / "report.html").read_text()
    cards = _cards(page)
    assert len(cards) == len(records) == 4  # clip.mp4, face.jpg, two.png, broken.mp4
    scored = sorted((r for r in records if r["prob_fake"] is not None), key=lambda r: -r["prob_fake"])
    assert [c["name"] for c in cards] == [Path(r["path"]).name for r in scored] + ["broken.mp4"]
    assert [c["prob"] for c in cards[:3]] == [round(r["prob_fake"], 3) for r in scored]
    assert cards[-1]["verdict"] == "none" and "error:</b>" in cards[-1]["body"] and "broken.mp4" in cards[-1]["body"]
    assert "backbone</th><td>resnet10t" in page and "checkpoint (as in training)" in page
    assert "http:" not in page and "https:" not in page and "file:" not in page  # nothing from the network
    by_name = {c["name"]: c for c in cards}
    # a face: its crop and its Grad-CAM; the video: its 3 most suspicious frames with theirs, and its timeline
    assert len(by_name["face.jpg"]["images"]) == 2 and len(by_name["clip.mp4"]["images"]) == 3 * 2 + 1
    assert any(src.startswith("timelines/") for src in by_name["clip.mp4"]["images"])
    sources = [src for c in cards for src in c["images"]]
    for src in sources:
        assert not src.startswith(("/", "data:")) and ".." not in src, src
        assert (report / unquote(src)).is_file(), src
    faces = [report / unquote(s) for s in sources if s.startswith("faces/")]
    assert len(faces) == 2 + 2 + 6
    for face in faces:
        with Image.open(face) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
        assert face.stat().st_size < 20_000


def test_predict_in_python_with_out_dir_writes_the_report_too(checkpoint, inputs, tmp_path):
    records = predict([inputs / "face.jpg"], checkpoint, out_dir=tmp_path)
    (card,) = _cards((tmp_path / "report.html").read_text())
    assert card["name"] == "face.jpg" and card["verdict"] == records[0]["decision"].lower()
    (src,) = card["images"]  # the face crop; no CAM asked for
    assert src.startswith("faces/") and (tmp_path / src).is_file()
    assert "predictions.jsonl" not in (tmp_path / "report.html").read_text()  # the command's file, not written here


@needs_chromium
def test_the_report_renders_in_chromium_with_every_image_loaded(report, tmp_path):
    page = report / "report.html"
    seen = render_page(page, tmp_path)
    assert len(seen["images"]) == len(re.findall(r"<img ", page.read_text())) == 2 + 2 + 7, seen
    assert seen["broken"] == [] and seen["unshown"] == [], seen
    assert not blank(seen["screenshot"]), f"{seen['screenshot']} is blank"


def test_the_widget_scores_an_upload_and_shows_its_card_without_a_frontend(checkpoint, inputs):
    from dfcore.widget import predict_cards, predict_widget

    widget = predict_widget(checkpoint, cam=True)
    (upload, button), shown = widget.children[0].children, widget.children[1]
    assert "resnet10t" in shown.value
    button.click()  # nothing uploaded yet
    assert "Upload an image or a video first" in shown.value
    data = (inputs / "face.jpg").read_bytes()
    upload.value = ({"name": "face.jpg", "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                     "last_modified": datetime.now(timezone.utc)},)
    expected = predict([inputs / "face.jpg"], checkpoint)[0]
    (card,) = _cards(shown.value)
    assert card["name"] == "face.jpg" and card["verdict"] == expected["decision"].lower()
    assert card["prob"] == round(expected["prob_fake"], 3)
    assert len(card["images"]) == 2 and all(src.startswith("data:image/jpeg;base64,") for src in card["images"])
    assert "<style>" in shown.value and ".dfp-card" in shown.value
    again = predict_cards(Predictor.load(checkpoint, frames=4), [inputs / "clip.mp4"], cam=False)
    (video,) = _cards(again)
    assert video["name"] == "clip.mp4" and video["verdict"] in ("fake", "real")
    assert sum(src.startswith("data:image/png;base64,") for src in video["images"]) == 1  # the timeline
