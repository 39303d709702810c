"""Verdicts on new inputs: images, folders and videos scored by a trained study, faces cut as in training.

`Predictor.load` reads the study's model (`dfcore.study.StudyModel`: a phase-2 or ensemble checkpoint with its
validation-fitted decision rule from notebook 05 and its face-crop settings from notebook 01); `Predictor.__call__` turns one file into one JSON
record: every face with its box, landmarks and calibrated P(fake), the verdict (the most
suspicious face; for a video, frame scores aggregated by the ``mean`` or ``confident`` rule of
`dfcore.evaluation.groups`), and optional Grad-CAM overlays and a confidence timeline.
``python -m dfcore predict`` is the command-line face of it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from dfcore.config import AGGREGATIONS
from dfcore.datasets import CropSettings, DataError, FaceDetector, crop_face, read_frames
from dfcore.datasets.faces import read_image_rgb
from dfcore.datasets.manifest import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from dfcore.evaluation.decision import decision_path
from dfcore.explain import cam_maps
from dfcore.study import StudyModel, TemporalJudge


def list_inputs(paths) -> tuple[list[Path], list[Path]]:
    """Returns the files to score (given files as they are, folders searched recursively for images and videos)
    and the files in those folders that are neither."""
    files, skipped = [], []
    for path in map(Path, paths):
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                (files if item.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES else skipped).append(item)
        else:
            files.append(path)  # a missing or unreadable file gets its own error record
    return files, skipped


def _as_stored(crop: np.ndarray) -> np.ndarray:
    """Returns ``crop`` after the JPEG round trip (quality 95) that every training crop went through."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass
class Predictor:
    """The study's model (`StudyModel`) with how new inputs are cut and decided: ready to score files."""

    study: StudyModel
    threshold: float
    threshold_source: str
    crop: CropSettings | None  # None: whole images are scored (--no-detect)
    crop_source: str
    frames: int
    aggregate: str = "confident"
    detector: FaceDetector | None = None
    judge: TemporalJudge | None = None  # the study's temporal head: it gives a video's verdict where there is one
    threshold_given: bool = False  # --threshold: it decides videos too
    timings: dict = field(default_factory=lambda: {"decode": 0.0, "detect": 0.0, "classify": 0.0, "temporal": 0.0,
                                                   "cam": 0.0})

    @classmethod
    def load(cls, checkpoint, *, device: str = "auto", threshold: float | None = None, detect: bool = True,
             frames: int | None = None, aggregate: str = "confident", temporal: bool = True) -> "Predictor":
        """Returns the predictor of a phase-2 or ensemble ``checkpoint``, or of a study's reports folder (its
        `StageOutputs.study_model`); a `CheckpointError` naming the file and the fix when it is missing, not dfcore's
        (or a pickle that would run code), or has no decision rule. ``frames`` per video: None samples as many as
        the study's training videos were (its crop settings), else notebook 01's default. ``temporal``: a video's
        verdict comes from the study's temporal head where it has one (else from its frames' ``aggregate``)."""
        if aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got {aggregate!r}")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError(f"--threshold is a P(fake) between 0 and 1, got {threshold}")
        study = StudyModel.load(checkpoint, device=device)
        study.model.to(memory_format=torch.channels_last)
        stored = study.crop
        frames = frames or (stored or CropSettings()).frames_per_video
        if not detect:
            crop, crop_source = None, "none (--no-detect: whole images scored)"
        elif stored:
            crop, crop_source = dataclasses.replace(stored, frames_per_video=frames), "checkpoint (as in training)"
        else:
            crop = CropSettings(frames_per_video=frames)
            crop_source = ("defaults: the checkpoint was trained on faces cropped before the study (no crop settings "
                           "stored); pass --no-detect if the inputs are face crops already")
        rule = study.rule
        return cls(
            study=study, threshold=rule.threshold if threshold is None else float(threshold),
            threshold_source=(f"validation ({rule.rule} point, fitted on '{rule.fitted_on}') in "
                              f"{decision_path(study.checkpoint).name}" if threshold is None else "--threshold"),
            crop=crop, crop_source=crop_source, frames=frames, aggregate=aggregate,
            detector=FaceDetector(crop, device="cpu") if crop else None,
            judge=study.temporal if temporal else None, threshold_given=threshold is not None,
        )

    # What the study's model brings, by the names earlier versions of the predictor had.
    model = property(lambda self: self.study.model)
    checkpoint = property(lambda self: self.study.checkpoint)
    backbone = property(lambda self: self.study.backbone)
    image_size = property(lambda self: self.study.image_size)
    rule = property(lambda self: self.study.rule)
    transform = property(lambda self: self.study.transform)

    def describe(self) -> dict:
        """Returns what every record shares: checkpoint, decision rule and how faces are cut."""
        return {"checkpoint": str(self.checkpoint), "backbone": self.backbone, "temperature": self.rule.temperature,
                "flip_tta": self.study.flip, "aggregation": self._aggregation_rule(), "threshold": self.threshold, "threshold_source": self.threshold_source,
                "crop": self.crop.as_dict() if self.crop else None, "crop_source": self.crop_source,
                "temporal_head": self.judge.name if self.judge else None}

    def _tick(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[stage] += now - start
        return now

    def _faces(self, frame: np.ndarray) -> tuple[list[dict], list[np.ndarray]]:
        """Returns the faces of one RGB frame (box, landmarks, detector score) and their crops as stored."""
        if self.crop is None:
            height, width = frame.shape[:2]
            return [{"box": [0, 0, width, height], "landmarks": None, "detector_score": None}], [frame]
        faces, crops = [], []
        for face in self.detector(frame):
            crop, _ = crop_face(frame, face, margin=self.crop.margin, size=self.crop.size, offset=self.crop.offset)
            crops.append(_as_stored(crop))
            faces.append({"box": [round(v, 1) for v in face.box], "detector_score": round(face.score, 4),
                          "landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks]
                          if face.landmarks else None})
        return faces, crops

    def score(self, crops: list[np.ndarray]) -> np.ndarray:
        """Returns the calibrated P(fake) of each RGB face crop (`StudyModel.prob`: the evaluation transform, the
        rule's temperature, flip test-time augmentation where the rule was fitted with it)."""
        return self.study.prob(crops)

    def _aggregation_rule(self) -> str:
        rule = self.rule
        return (f"{self.aggregate}; confident: mean of frames above {rule.group_t} when at least "
                f"{rule.group_min_share:.0%} are, else the mean (validation's setting, notebook 05)")

    def cams(self, crops: list[np.ndarray]) -> np.ndarray:
        """Returns Grad-CAM maps (explaining 'fake') of the crops, at the model's input size, in [0, 1]."""
        batch = torch.stack([self.transform(image=c)["image"] for c in crops]).to(self.study.device)
        return cam_maps(self.model, batch, method="gradcam")

    def _verdict(self, prob: float | None) -> str | None:
        return None if prob is None else ("FAKE" if prob >= self.threshold else "REAL")

    def image(self, path: Path) -> tuple[dict, list[np.ndarray]]:
        """Returns the record of one image and its face crops (the most suspicious first)."""
        start = time.perf_counter()
        frame = read_image_rgb(path)
        start = self._tick("decode", start)
        faces, crops = self._faces(frame)
        start = self._tick("detect", start)
        probs = self.score(crops)
        self._tick("classify", start)
        for face, prob in zip(faces, probs):
            face["prob_fake"] = round(float(prob), 6)
        order = np.argsort(-probs, kind="stable")
        faces, crops = [faces[i] for i in order], [crops[i] for i in order]
        prob = float(probs.max()) if len(probs) else None
        record = {"path": str(path), "kind": "image", "decision": self._verdict(prob),
                  "prob_fake": None if prob is None else round(prob, 6), "threshold": self.threshold,
                  "threshold_source": self.threshold_source, "width": frame.shape[1], "height": frame.shape[0],
                  "faces": faces}
        if not faces:
            record["reason"] = f"no face of at least {self.crop.min_face} px found (use --no-detect for face crops)"
        return record, crops

    def video(self, path: Path) -> tuple[dict, list[np.ndarray], list[dict]]:
        """Returns the record of one video, the crops of its frames' most suspicious faces and their frame rows."""
        start = time.perf_counter()
        sampled = read_frames(path, self.frames)
        start = self._tick("decode", start)
        per_frame = [self._faces(frame) for frame in sampled.frames]
        start = self._tick("detect", start)
        # the temporal head's embeddings come from the same pass where it reads this model (one forward, not two)
        every = [c for _, crops in per_frame for c in crops]
        probs, features = self.study.prob_and_features(every) if self.judge else (self.score(every), None)
        self._tick("classify", start)
        rows, best_crops, best_at, k = [], [], [], 0
        for index, (faces, crops) in zip(sampled.indices, per_frame):
            for face, prob in zip(faces, probs[k:k + len(faces)]):
                face["prob_fake"] = round(float(prob), 6)
            if faces:
                top = int(np.argmax([f["prob_fake"] for f in faces]))
                rows.append({"frame": index, "time_s": round(index / sampled.fps, 3) if sampled.fps else None,
                             "prob_fake": faces[top]["prob_fake"], "faces": faces})
                best_crops.append(crops[top])
                best_at.append(k + top)
            k += len(faces)
        frame_probs = np.array([r["prob_fake"] for r in rows])
        record = {"path": str(path), "kind": "video", "frame_count": sampled.frame_count,
                  "fps": round(sampled.fps, 3), "frames_sampled": len(sampled.indices), "frames_with_face": len(rows)}
        if len(rows):
            scores = {how: self.rule.aggregate(frame_probs, how) for how in AGGREGATIONS}
            prob, threshold, threshold_source = scores[self.aggregate], self.threshold, self.threshold_source
            verdict_by = f"frames' {self.aggregate} P(fake)"
            if self.judge is not None:
                start = time.perf_counter()
                prob, weights = self.judge.judge(best_crops, None if features is None else features[best_at])
                self._tick("temporal", start)
                for row, weight in zip(rows, weights):
                    row["temporal_weight"] = round(float(weight), 6)
                verdict_by = f"temporal head ({self.judge.name}) over the sequence of faces"
                if not self.threshold_given:
                    threshold = self.judge.rule.threshold
                    threshold_source = (f"validation videos ({self.judge.rule.rule} point, notebook 05) in "
                                        "checkpoints/temporal/study.decision.json")
            decision = "FAKE" if prob >= threshold else "REAL"
            agreeing = (frame_probs >= self.threshold) == (decision == "FAKE")
            record.update({
                "decision": decision, "prob_fake": round(prob, 6), "threshold": threshold,
                "threshold_source": threshold_source, "verdict_by": verdict_by,
                "aggregation": {"reported": self.aggregate, **{k: round(v, 6) for k, v in scores.items()},
                                "rule": self._aggregation_rule()},
                "consistency": {"agreeing_share": round(float(agreeing.mean()), 4),
                                "std": round(float(frame_probs.std()), 4),
                                "min": round(float(frame_probs.min()), 6), "max": round(float(frame_probs.max()), 6)},
            })
        else:
            record.update({"decision": None, "prob_fake": None, "threshold": self.threshold,
                           "threshold_source": self.threshold_source,
                           "reason": f"no face of at least {self.crop.min_face} px in any of "
                                     f"{len(sampled.indices)} sampled frames"})
        record["frames"] = rows
        return record, best_crops, rows

    def __call__(self, path) -> tuple[dict, list[np.ndarray], list[dict]]:
        """Returns the record of one file (an ``error`` record when it cannot be read), its face crops (most
        suspicious first) and, for a video, its frame rows."""
        path = Path(path)
        kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        try:
            if not path.is_file():
                raise DataError(f"{path} does not exist or is not a file.")
            if path.stat().st_size == 0:
                raise DataError(f"{path} is empty (0 bytes).")
            if kind == "video":
                return self.video(path)
            record, crops = self.image(path)
            return record, crops, []
        except DataError as err:  # VideoError included: this input fails, the others go on
            return {"path": str(path), "kind": kind, "decision": None, "prob_fake": None, "faces": [],
                    "error": str(err)}, [], []


def _output_name(index: int, path: Path) -> str:
    """Returns a file-name stem for an input's figures: its position and name, safe on any file system."""
    return f"{index:04d}_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in path.name)[:80]


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(path)


FACE_SIDE = 160  # px: the face crops and CAM overlays saved for report.html stay small
SHOWN_FACES = 8  # an image's faces kept as crops and CAMs, most suspicious first


def _save_face(image: np.ndarray, path: Path) -> str:
    """Writes an RGB face image as a JPEG of at most `FACE_SIDE` px; returns its path."""
    side = max(image.shape[:2])
    if side > FACE_SIDE:
        image = cv2.resize(image, None, fx=FACE_SIDE / side, fy=FACE_SIDE / side, interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return str(path)


def _cam_figure(predictor: Predictor, crops, titles, path: Path, suptitle: str) -> tuple[str, list[np.ndarray]]:
    """Writes the Grad-CAM figure of ``crops``; returns its path and each crop's overlay (model input size)."""
    from dfcore.reporting import heat_overlay, plot_overlays

    side = predictor.image_size
    start = time.perf_counter()
    maps = predictor.cams(crops)
    predictor._tick("cam", start)
    shown = [cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in crops]
    figure = _save(plot_overlays(shown, maps, titles, suptitle=suptitle, ncols=min(len(crops), 4)), path)
    return figure, [heat_overlay(image, heat) for image, heat in zip(shown, maps)]


def iter_predictions(predictor: Predictor, files, *, out_dir=None, cam: bool = False, cam_frames: int = 3):
    """Yields one record per file (see `Predictor.__call__`), writing under ``out_dir`` (when given) the face crops
    shown in report.html (an image's faces, a video's most suspicious frames: ``crop`` in their face or frame row),
    their Grad-CAM overlays and figure (``cam``, which needs ``out_dir``) and, for a video, its confidence timeline."""
    import pandas as pd

    from dfcore.reporting import plot_timeline

    if cam and not out_dir:
        raise ValueError("cam=True writes overlay PNGs: give out_dir.")
    out_dir = Path(out_dir) if out_dir else None
    for index, path in enumerate(map(Path, files)):
        record, crops, rows = predictor(path)
        name = _output_name(index, path)
        if out_dir and rows:
            by_head = str(record.get("verdict_by", "")).startswith("temporal")
            record["timeline"] = _save(plot_timeline(pd.DataFrame(rows), threshold=predictor.threshold,
                                                     prob=record["prob_fake"], video_threshold=record["threshold"],
                                                     aggregate=f"{predictor.judge.name} head" if by_head
                                                     else predictor.aggregate,
                                                     title=f"{path.name}: {record['decision']}"),
                                       out_dir / "timelines" / f"{name}.png")
        if not (out_dir and crops):
            yield record
            continue
        if record["kind"] == "video":  # the most suspicious frames
            top = sorted(range(len(rows)), key=lambda i: -rows[i]["prob_fake"])[:cam_frames]
            shown, titles, holders = ([crops[i] for i in top], [f"frame {rows[i]['frame']}: {rows[i]['prob_fake']:.3f}"
                                                                for i in top], [rows[i] for i in top])
        else:
            holders = record["faces"][:SHOWN_FACES]
            shown, titles = crops[:SHOWN_FACES], [f"face {i}: {f['prob_fake']:.3f}" for i, f in enumerate(holders)]
        for i, (crop, holder) in enumerate(zip(shown, holders)):
            holder["crop"] = _save_face(crop, out_dir / "faces" / f"{name}_{i}.jpg")
        if cam:
            record["cam"], overlays = _cam_figure(predictor, shown, titles, out_dir / "cams" / f"{name}.png",
                                                  f"{path.name}: Grad-CAM of P(fake), {record['decision']}")
            for i, (overlay, holder) in enumerate(zip(overlays, holders)):
                holder["crop_cam"] = _save_face(overlay, out_dir / "faces" / f"{name}_{i}_cam.jpg")
        yield record


def predict(paths, checkpoint, *, out_dir=None, cam: bool = False, frames: int | None = None, threshold: float | None = None,
            detect: bool = True, aggregate: str = "confident", device: str = "auto", temporal: bool = True) -> list[dict]:
    """Returns one record per image or video under ``paths`` (files, or folders searched recursively), scored by
    the phase-2 ``checkpoint``: the Python face of ``python -m dfcore predict``, for JupyterLab. With ``out_dir``, its
    crops, figures and ``report.html`` are written there (``predictions.jsonl`` is the command's)."""
    predictor = Predictor.load(checkpoint, device=device, threshold=threshold, detect=detect, frames=frames,
                               aggregate=aggregate, temporal=temporal)
    files, _ = list_inputs(paths)
    records = list(iter_predictions(predictor, files, out_dir=out_dir, cam=cam))
    if out_dir:
        from dfcore.reporting.predictions import write_predict_report

        write_predict_report(records, out_dir, predictor.describe())
    return records
