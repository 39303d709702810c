"""Stage 06, the explainability gallery: saliency maps (Grad-CAM, LayerCAM, attention rollout for ViTs) of the test
images notebook 05 scored, each outcome's most confident and borderline, and how faithful each method is
(deletion and insertion against random saliency). An ensemble is explained through its first member."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dfcore.artifacts import StageOutputs, write_metrics
from dfcore.config import GalleryConfig as Config
from dfcore.datasets import load_manifests
from dfcore.explain import (
    BASELINES,
    METHOD_NAMES,
    available_methods,
    cam_target,
    deletion_insertion,
    faithfulness_table,
    load_images,
    most_faithful,
    outcomes,
    saliency_maps,
    select_outcomes,
)
from dfcore.study import StudyModel

__all__ = ["Config", "GalleryResult", "run"]


@dataclass
class GalleryResult:
    """What notebook 06 shows: the chosen images, each method's maps of them, and the faithfulness table."""

    config: Config
    study: StudyModel
    target: object  # `dfcore.explain.CamTarget`: the layer the CAMs hook
    methods: list[str]
    chosen: pd.DataFrame  # the selected test images: path, label, P(fake), outcome, selection
    shown: list[np.ndarray]  # those images as the model sees them (resized), for display
    maps: dict  # method -> maps of ``shown``, in [0, 1]
    curves: dict  # method (and random baselines) -> deletion/insertion curves
    faithfulness: pd.DataFrame
    best: str
    beats_random: bool
    predictions: pd.DataFrame  # notebook 05's predictions of the whole test split
    data_root: object

    @property
    def titles(self) -> list[str]:
        return [f"{s}: {'fake' if l else 'real'}, P(fake) {p:.2f}" for s, l, p in
                zip(self.chosen["selection"], self.chosen["label"], self.chosen["prob_fake_calibrated"])]

    def describe(self) -> str:
        t = self.target
        return (f"{self.study.backbone} ({t.family}): CAMs on layer '{t.layer}'"
                + (f", {t.grid[0]}x{t.grid[1]} token grid" if t.grid else "")
                + f"; methods {self.methods}; threshold {self.study.rule.threshold:.3f} on calibrated P(fake)")

    def selection_table(self) -> pd.DataFrame:
        return self.chosen.groupby(["outcome", "selection"], sort=False).agg(
            images=("path", "size"), mean_p_fake=("prob_fake_calibrated", "mean"))

    def comparison_rows(self) -> np.ndarray:
        """Returns the positions of one confident and one borderline image per outcome."""
        return (self.chosen.assign(at=range(len(self.chosen))).groupby(["outcome", "selection"], sort=False)
                .head(1))["at"].to_numpy()

    def browser(self):
        """Returns a JupyterLab browser over every test image, maps computed on demand."""
        from dfcore.reporting import browser

        c, study = self.config, self.study
        table = self.predictions.assign(outcome=outcomes(self.predictions))

        def load(row):
            return load_images([row["path"]], data_root=self.data_root, transform=study.transform,
                               image_size=study.image_size)

        def maps_fn(row, method):
            return saliency_maps(study.model, load(row)[1].to(study.device), method, head_fusion=c.head_fusion,
                                 discard_ratio=c.discard_ratio, seed=c.seed)[0]

        return browser(table, image_fn=lambda row: load(row)[0][0], maps_fn=maps_fn, methods=self.methods,
                       title_fn=lambda row: f"{row['outcome']}: {row['path']}, P(fake) {row['prob_fake_calibrated']:.2f}")


def run(config: Config) -> GalleryResult:
    """Selects the images, computes every method's maps and their faithfulness, writes
    ``metrics/06_gradcam_gallery.json``; returns the result."""
    c = config
    out = StageOutputs(c.run_dir)
    _, data_root = load_manifests(out.manifests)
    study = StudyModel.load(out.study_model, device=c.device)  # with notebook 05's rule, fitted on validation
    predictions = pd.read_csv(out.predictions("test"))
    methods = available_methods(study.model, [m.strip() for m in c.methods.split(",") if m.strip()])
    target = cam_target(study.model, (study.image_size, study.image_size))
    chosen = select_outcomes(predictions, threshold=study.rule.threshold, n_per_group=c.n_per_group)
    shown, batch = load_images(chosen["path"], data_root=data_root, transform=study.transform,
                               image_size=study.image_size)
    batch = batch.to(study.device)
    options = dict(head_fusion=c.head_fusion, discard_ratio=c.discard_ratio, seed=c.seed)
    maps = {m: saliency_maps(study.model, batch, m, **options) for m in methods}
    saliency = {**maps, **{b: saliency_maps(study.model, batch, b, seed=c.seed) for b in BASELINES}}
    curves = {m: deletion_insertion(study.model, batch, s, steps=c.faithfulness_steps,
                                    temperature=study.rule.temperature, blur_sigma=c.blur_sigma or None, seed=c.seed)
              for m, s in saliency.items()}
    faithfulness = faithfulness_table(curves)
    best = most_faithful(faithfulness)
    by_method = faithfulness.set_index("method")
    scores = by_method["insertion_minus_deletion"]
    beats_random = bool(scores[best] > scores[list(BASELINES)].max())
    write_metrics(out.metrics / "06_gradcam_gallery.json", {
        "backbone": study.backbone, "family": target.family, "target_layer": target.layer, "methods": methods,
        "threshold": study.rule.threshold, "rollout": {"head_fusion": c.head_fusion, "discard_ratio": c.discard_ratio},
        "selection": chosen[["path", "label", "prob_fake_calibrated", "outcome", "selection"]].to_dict("records"),
        "faithfulness": {"steps": c.faithfulness_steps, "canvas": "gaussian blur",
                         "blur_sigma": c.blur_sigma or study.image_size / 16, "table": faithfulness.to_dict("records"),
                         "most_faithful": best},
    }, headline={"most faithful": METHOD_NAMES[best],
                 "deletion AUC": float(by_method.loc[best, "deletion_auc"]),
                 "random-grid deletion AUC": float(by_method.loc["random_grid", "deletion_auc"]),
                 "insertion AUC": float(by_method.loc[best, "insertion_auc"]),
                 "beats random": beats_random, "images explained": len(chosen), "target layer": target.layer})
    return GalleryResult(c, study, target, methods, chosen, shown, maps, curves, faithfulness, best, beats_random,
                         predictions, data_root)
