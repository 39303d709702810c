"""The study's model as everything downstream of training uses it: notebook 05 (which fits its decision rule),
notebook 06, ``predict`` and the benchmarks load it here, and nowhere else.

A `StudyModel` is the trained classifier (phase 2's, or the ensemble of notebook 04's members) with what scoring
it needs: its input size and normalisation, the evaluation transform, the face-crop settings it was trained on,
its validation-fitted decision rule (temperature, threshold, how a video's frames are aggregated), whether it
is scored with flip test-time augmentation, and, where notebook 04 trained one, the temporal head that judges a
video by its sequence of faces (`TemporalJudge`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from dfcore.artifacts import StageOutputs
from dfcore.checkpoint import CheckpointError
from dfcore.datasets import CropSettings, build_transforms
from dfcore.evaluation.decision import DecisionRule, decision_path, load_decision_rule
from dfcore.evaluation.predict import Scorer, model_logits
from dfcore.models import data_config, load_classifier
from dfcore.runtime import amp_dtype, resolve_device
from dfcore.trainers.temporal import even_subsample, frame_features, load_head


@dataclass
class TemporalJudge:
    """The study's temporal head (notebook 04, the best on validation) with the backbone whose frame embeddings it
    reads and its rule fitted on validation videos (notebook 05): a video's verdict from its sequence of faces."""

    head: torch.nn.Module
    state: dict
    rule: DecisionRule
    embedder: torch.nn.Module  # the phase-2 model
    transform: object
    device: torch.device

    @property
    def name(self) -> str:
        return self.state["head"]

    @torch.inference_mode()
    def judge(self, crops: list[np.ndarray], features: torch.Tensor | None = None) -> tuple[float, np.ndarray]:
        """Returns the calibrated P(fake) of a video from its frames' face crops (in frame order; spread evenly over
        them where there are more than the head reads) and the head's weight of each frame read (zero for the
        others). ``features``: the crops' embeddings where they were computed already (`StudyModel.prob`)."""
        keep = even_subsample(len(crops), self.head.max_frames)
        if features is None:
            batch = torch.stack([self.transform(image=crops[i])["image"] for i in keep]).to(
                self.device, memory_format=torch.channels_last)
            features = frame_features(self.embedder, batch)[0]
        else:
            features = features[torch.as_tensor(keep)]
        logits, weights = self.head(features[None].cpu())
        all_weights = np.zeros(len(crops))
        all_weights[keep] = weights[0].numpy()
        return float(self.rule.prob_of_logits(logits.numpy())[0]), all_weights


@dataclass
class StudyModel:
    """A trained study's model, ready to score: see the module's docstring."""

    model: torch.nn.Module
    checkpoint: Path
    state: dict
    device: torch.device
    rule: DecisionRule | None  # None until notebook 05 has fitted it
    flip: bool  # flip test-time augmentation: each image and its mirror image, logits averaged

    @classmethod
    def load(cls, source, *, device: str = "auto", with_rule: bool = True, flip: bool | None = None) -> "StudyModel":
        """Returns the model of ``source``: a study's reports folder (its `StageOutputs.study_model`) or a phase-2
        or ensemble checkpoint. ``with_rule``: its decision rule must be there (a `CheckpointError` naming the file
        and the fix when it is not); else no rule is read (notebook 05, which fits it). ``flip``: None follows the
        rule (off without one)."""
        checkpoint = Path(source)
        if checkpoint.is_dir():
            checkpoint = StageOutputs(checkpoint).study_model
        dev = resolve_device(device)
        model, state = load_classifier(checkpoint, device=dev)  # weights_only: a pickle never runs code
        rule = None
        if with_rule:
            if not decision_path(checkpoint).is_file():
                raise CheckpointError(
                    f"{checkpoint} has no decision rule ({decision_path(checkpoint).name} beside it, written by "
                    "notebook 05 from the validation split): run `make reproduce` for its profile first.")
            rule = load_decision_rule(checkpoint)
        return cls(model, checkpoint, state, dev, rule, rule.flip if flip is None and rule else bool(flip))

    @property
    def backbone(self) -> str:
        return self.state["backbone"]

    @property
    def image_size(self) -> int:
        return self.state["image_size"]

    @cached_property
    def normalisation(self) -> dict:
        """timm's mean and std of the backbone (an ensemble's first member's; all members share them)."""
        cfg = data_config(self.model)
        return {"mean": cfg["mean"], "std": cfg["std"]}

    @property
    def crop(self) -> CropSettings | None:
        """How the training faces were cut (notebook 01), or None for data that came cropped without a measure."""
        stored = self.state.get("face_crop")
        return CropSettings(**stored) if stored else None

    @cached_property
    def transform(self):
        """The evaluation transform: resize to the input size and normalise."""
        return build_transforms(self.image_size, train=False, **self.normalisation)

    @cached_property
    def temporal(self) -> TemporalJudge | None:
        """The study's temporal head where notebook 04 trained one (videos), else None. A head without the rule
        notebook 05 fits, or trained on another version of the phase-2 model, is a `CheckpointError` naming the
        fix."""
        checkpoints = next((p for p in self.checkpoint.resolve().parents if p.name == "checkpoints"), None)
        out = StageOutputs(checkpoints.parent) if checkpoints else None
        if out is None or not out.temporal_head.is_file():
            return None
        if not decision_path(out.temporal_head).is_file():
            raise CheckpointError(f"{out.temporal_head} has no decision rule ({decision_path(out.temporal_head).name}, "
                                  "fitted on validation videos by notebook 05): run `make reproduce` for its profile.")
        head, state, source = load_head(out.temporal_head, out.root)
        if source.resolve() == self.checkpoint.resolve():
            embedder, image_size = self.model, self.image_size
        else:
            embedder, state = load_classifier(source, device=self.device)
            embedder, image_size = embedder.to(memory_format=torch.channels_last), state["image_size"]
        cfg = data_config(embedder)
        transform = build_transforms(image_size, train=False, mean=cfg["mean"], std=cfg["std"])
        return TemporalJudge(head, state, load_decision_rule(out.temporal_head), embedder, transform, self.device)

    def with_rule(self, rule: DecisionRule) -> "StudyModel":
        """Returns this model with ``rule`` (notebook 05, once it has fitted one)."""
        return dataclasses.replace(self, rule=rule, flip=rule.flip)

    def scorer(self, *, batch_size: int = 128, amp: bool = True, num_workers: int = 0) -> Scorer:
        """Returns a `Scorer` of manifests with this model, its transform and its test-time augmentation."""
        return Scorer(self.model, self.device, self.image_size, dtype=amp_dtype(self.device, amp),
                      batch_size=batch_size, num_workers=num_workers, flip=self.flip, **self.normalisation)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> np.ndarray:
        """Returns the two-class logits of a batch of transformed ``images`` (flipped too where the rule says)."""
        self.model.eval()
        batch = images.to(self.device, memory_format=torch.channels_last)
        return model_logits(self.model, batch, flip=self.flip).cpu().numpy()

    def prob(self, crops: list[np.ndarray]) -> np.ndarray:
        """Returns the calibrated P(fake) of each RGB face crop (the rule's temperature)."""
        if not crops:
            return np.zeros(0)
        batch = torch.stack([self.transform(image=c)["image"] for c in crops])
        return self.rule.prob_of_logits(self.logits(batch))

    def prob_and_features(self, crops: list[np.ndarray]) -> tuple[np.ndarray, torch.Tensor | None]:
        """Returns `prob` of the crops and their embeddings for the temporal head, from the same forward pass,
        where the head reads this very model and there is no flip TTA; else the embeddings are None (the head's
        `TemporalJudge.judge` computes them)."""
        judge = self.temporal
        if not crops or judge is None or judge.embedder is not self.model or self.flip:
            return self.prob(crops), None
        batch = torch.stack([self.transform(image=c)["image"] for c in crops])
        self.model.eval()
        with torch.inference_mode():
            features, logits = frame_features(self.model, batch.to(self.device, memory_format=torch.channels_last))
        return self.rule.prob_of_logits(logits.cpu().numpy()), features.cpu()
