"""A profile's ``index.html`` (dfcore.reporting.index), and both HTML pages (it and the comparison of runs) as headless
Chromium renders them: every image loads and nothing is blank."""

import json
import re

from browser import blank, needs_chromium, render_page
from conftest import write_image
from dfcore.reporting.compare import write_comparison
from dfcore.reporting.index import build_index
from test_compare import STAGES, _write, make_run

FIGURES = ["01_faces_fake", "01_faces_real", "01_faces_per_video", "01_samples", "02_mim_loss", "05_roc",
           "05_reliability_test", "05_robustness", "06_gallery_TP", "06_gallery_FN"]


def make_profile(root, profile="demo", *, stages=STAGES):
    """Writes a finished run with each stage's HTML page, headline numbers and figures (random pixels)."""
    run = make_run(root, profile, sets={"val": 0.9, "test": 0.85, "celebdf": 0.7}, video=("celebdf",))
    for stage in stages:
        (run / "html").mkdir(exist_ok=True)
        (run / "html" / f"{stage}.html").write_text(f"<html><body><h1>{stage}</h1></body></html>")
    head = json.loads((run / "metrics" / "03_phase1_head.json").read_text())
    head["headline"] = {"best validation AUC": 0.912345, "epoch": 2, "train images/s": 63.1805}
    _write(run / "metrics" / "03_phase1_head.json", head)
    for seed, name in enumerate(FIGURES):
        write_image(run / "figures" / f"{name}.png", seed, size=96)
    return run


def test_index_rounds_numbers_and_shows_key_figures_linking_to_their_stage(tmp_path):
    run = make_profile(tmp_path)
    page = build_index(run)
    assert all(f'href="html/{stage}.html"' in page for stage in STAGES)
    assert "not a benchmark" in page  # the demo set's note
    assert "train images/s: <b>63</b>" in page and "63.18" not in page
    assert "best validation AUC: <b>0.912</b>" in page and "0.9123" not in page
    linked = re.findall(r'<a href="([^"]+)"><img src="figures/([^"]+)\.png"', page)
    thumbnails = {figure: href for href, figure in linked}
    assert thumbnails == {
        "01_faces_fake": "html/01_data_manifests.html", "01_faces_real": "html/01_data_manifests.html",
        "05_roc": "html/05_evaluation.html", "05_reliability_test": "html/05_evaluation.html",
        "05_robustness": "html/05_evaluation.html",
        "06_gallery_FN": "html/06_gradcam_gallery.html", "06_gallery_TP": "html/06_gradcam_gallery.html"}
    # the scored-sets table: rounded, with the interval; validation is not a scored set here
    rows = re.findall(r"<tr><td>(\w+)</td>(.*?)</tr>", page)
    assert [name for name, _ in rows] == ["test", "celebdf"]
    assert "<td class=\"num\">0.850</td><td class=\"num\">0.800 to 0.890</td><td class=\"num\">group</td>" in rows[0][1]
    assert "<td class=\"num\">video</td>" in rows[1][1]


def test_index_without_a_contact_sheet_of_faces_shows_the_samples_and_links_figures_of_missing_reports(tmp_path):
    run = make_profile(tmp_path, stages=STAGES[:5])  # notebook 06's report is missing
    for name in ("01_faces_fake", "01_faces_real"):
        (run / "figures" / f"{name}.png").unlink()
    page = build_index(run)
    assert '<a href="html/01_data_manifests.html"><img src="figures/01_samples.png"' in page
    assert '<a href="figures/06_gallery_TP.png"><img src="figures/06_gallery_TP.png"' in page
    assert "not a benchmark" in page and 'href="html/06_gradcam_gallery.html"' not in page


@needs_chromium
def test_the_pages_render_in_chromium_with_every_image_loaded(tmp_path):
    root = tmp_path / "reports"
    run = make_profile(root, "demo")
    make_run(root, "partial", stages=STAGES[:3])
    (run / "index.html").write_text(build_index(run))
    paths = write_comparison([root])
    for page, images in ((run / "index.html", 7), (paths["index.html"], 1)):
        seen = render_page(page, tmp_path)
        assert len(seen["images"]) == images, seen
        assert seen["broken"] == [] and seen["unshown"] == [], seen
        assert seen["text"] > 500
        assert not blank(seen["screenshot"]), f"{seen['screenshot']} is blank"
        for src in seen["images"]:
            assert not blank(page.parent / src), f"{src} is blank"
