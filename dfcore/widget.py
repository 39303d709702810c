"""A JupyterLab widget that scores an uploaded image or video with a trained study and shows its ``report.html`` card.

``from dfcore.widget import predict_widget; predict_widget("reports/<profile>")``. It scores with
`dfcore.inference.Predictor` and shows the cards of `dfcore.reporting.predictions`; notebook 06 shows it when
``interactive`` is true.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

from dfcore.inference import Predictor, iter_predictions
from dfcore.reporting.predictions import card_html, inline_src


def predict_cards(predictor: Predictor, paths, *, cam: bool = True) -> str:
    """Returns the cards (as in ``report.html``, most suspicious first) of the files ``paths`` scored by
    ``predictor``, their images inlined: nothing is left on disk."""
    with tempfile.TemporaryDirectory(prefix="dfcore-predict-") as out_dir:
        records = list(iter_predictions(predictor, paths, out_dir=out_dir, cam=cam))
        return card_html(records, inline_src)


def _uploads(value) -> list[tuple[str, bytes]]:
    """Returns (file name, bytes) of each uploaded file: ipywidgets 8 gives a tuple of dicts, 7 a dict by name."""
    if isinstance(value, dict):
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


def predict_widget(checkpoint, *, cam: bool = True, **load):
    """Returns a widget: a file upload (images and videos) and a Score button above the uploaded files' cards.

    ``checkpoint`` is what ``python -m dfcore predict --checkpoint`` takes (a study's ``reports/<profile>``, or a
    checkpoint file); ``load`` goes to `Predictor.load` (``device``, ``frames``, ``threshold``, ...). The model is
    loaded once, here; each upload is scored when it arrives, and again on Score.
    """
    import ipywidgets as widgets

    predictor = Predictor.load(checkpoint, **load)
    upload = widgets.FileUpload(accept="image/*,video/*", multiple=True, description="image or video")
    button = widgets.Button(description="Score", button_style="primary", tooltip="score the uploaded files")
    shown = widgets.HTML(f"<p>Upload images or videos to score with <code>{html.escape(str(predictor.checkpoint))}"
                         f"</code> ({html.escape(predictor.backbone)}).</p>")

    def score(*_):
        files = _uploads(upload.value)
        if not files:
            shown.value = "<p>Upload an image or a video first.</p>"
            return
        shown.value = f"<p>Scoring {len(files)} file(s)...</p>"
        with tempfile.TemporaryDirectory(prefix="dfcore-upload-") as folder:
            paths = []
            for name, data in files:
                path = Path(folder) / Path(name).name  # a bare name: nothing written outside the folder
                path.write_bytes(data)
                paths.append(path)
            try:
                shown.value = predict_cards(predictor, paths, cam=cam)
            except Exception as err:  # a callback's exception would vanish into the widget log; show it
                shown.value = f"<p><b>error:</b> {html.escape(f'{type(err).__name__}: {err}')}</p>"

    upload.observe(score, names="value")
    button.on_click(score)
    return widgets.VBox([widgets.HBox([upload, button]), shown])
