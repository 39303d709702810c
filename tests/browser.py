"""Headless Chromium for the HTML pages' tests: what a page shows once loaded (its images, those that did not load or
are not shown) and its screenshot."""

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (/usr/bin/chromium): "
                                                             "`apt-get install chromium` to render the report pages")
# After the page's load event, a <pre id="probe"> lists its images, those that did not load and those not shown.
PROBE = """<script>
addEventListener("load", () => {
  const images = Array.from(document.images);
  const src = i => i.getAttribute("src");
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: images.map(src),
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(src),
    unshown: images.filter(i => i.getBoundingClientRect().width < 2).map(src),
    text: document.body.innerText.trim().length});
  document.body.appendChild(probe);
});
</script>"""


def render_page(page, tmp_path, *, window: str = "1280,1400") -> dict:
    """Returns what the probe saw of ``page`` in headless Chromium, after writing its screenshot beside it."""
    probed = page.with_name(f"probed_{page.name}")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000"]
    dom = subprocess.run(command + ["--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"no probe in Chromium's DOM (exit {dom.returncode}): {dom.stderr[-1500:]}"
    shot = page.with_suffix(".screenshot.png")
    subprocess.run(command + [f"--window-size={window}", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120, check=True)
    return {**json.loads(html.unescape(found.group(1))), "screenshot": shot}


def blank(path) -> bool:
    """Returns whether the image at ``path`` is one colour, or has hardly anything drawn on it."""
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return pixels.std() < 3 or (pixels < 200).mean() < 0.005
