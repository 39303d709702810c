"""The temporal part of stage 04: sequence heads trained on the phase-2 model's frozen frame embeddings, where the
data are videos, and the study's head chosen among them on validation. Notebook 05 scores every head trained here
(`score_heads`), next to the mean and confident aggregation of the same backbone's frame scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from dfcore.artifacts import StageOutputs
from dfcore.checkpoint import TEMPORAL_CODE, aside_path, code_sha256, load_checkpoint, save_checkpoint
from dfcore.config import Phase2Config
from dfcore.datasets import load_manifests, manifests_sha256, read_rgb
from dfcore.datasets.faces import sha256_file
from dfcore.evaluation import Scores, bootstrap_intervals, fit_decision_rule, save_decision_rule
from dfcore.evaluation.decision import DecisionRule
from dfcore.models import data_config, load_classifier
from dfcore.models.temporal import TEMPORAL_HEADS, TemporalHead
from dfcore.runtime import resolve_device, seed_everything
from dfcore.trainers.temporal import (
    VideoEmbeddings,
    embed_videos,
    fit_temporal,
    load_head,
    score_videos,
    video_manifest,
)

__all__ = ["TemporalEvaluation", "TemporalResult", "embedder", "evaluate_heads", "head_names", "load_heads",
           "train_heads"]


def head_names(temporal: str) -> list[str]:
    """Returns the heads a ``temporal`` parameter names ('none' or '': none); a `ValueError` names an unknown one."""
    names = [n.strip() for n in str(temporal).split(",") if n.strip() and n.strip() != "none"]
    unknown = sorted(set(names) - set(TEMPORAL_HEADS))
    if unknown:
        raise ValueError(f"temporal names {unknown}: the heads are {list(TEMPORAL_HEADS)} (comma-separated), or 'none'.")
    return names


@dataclass
class Embedder:
    """The frozen backbone a temporal head reads (the phase-2 model) and how it embeds a set's videos."""

    model: object
    checkpoint: Path
    image_size: int
    normalisation: dict
    device: object
    cache_dir: Path | None

    def __call__(self, manifest: pd.DataFrame, root, batch_size: int = 64) -> VideoEmbeddings:
        return embed_videos(self.model, self.checkpoint, manifest, root, image_size=self.image_size,
                            device=self.device, batch_size=batch_size, cache_dir=self.cache_dir, **self.normalisation)


def embedder(checkpoint, *, device="auto", cache_dir=None) -> Embedder:
    """Returns the `Embedder` of a phase-2 checkpoint."""
    dev = resolve_device(device)
    model, state = load_classifier(checkpoint, device=dev)
    cfg = data_config(model)
    return Embedder(model, Path(checkpoint), state["image_size"], {"mean": cfg["mean"], "std": cfg["std"]}, dev,
                    Path(cache_dir) if cache_dir else None)


@dataclass
class TemporalResult:
    """What the temporal part of notebook 04 shows: each head's history and best validation video AUC, and the one
    chosen (the best on validation)."""

    histories: dict[str, pd.DataFrame]
    best_val_auc: dict[str, float]
    chosen: str
    train_videos: int
    val_videos: int


def _keep_earlier_head_aside(out: StageOutputs) -> None:
    aside = aside_path(out.temporal_dir)
    out.temporal_dir.rename(aside)
    print(f"temporal: none; the earlier temporal heads were kept aside in {aside}.")


def train_heads(config: Phase2Config) -> TemporalResult | None:
    """Trains every head ``config.temporal`` names on the phase-2 model's frame embeddings (cached under
    ``cache/embeddings``) and copies the best on validation to `StageOutputs.temporal_head`; returns the result, or
    None where no head is asked for or the data hold no video (said in a line)."""
    c = config
    out = StageOutputs(c.run_dir)
    names = head_names(c.temporal)
    if not names:
        if out.temporal_dir.exists():
            _keep_earlier_head_aside(out)
        return None
    manifests, root = load_manifests(out.manifests)
    if video_manifest(manifests["train"]) is None or video_manifest(manifests["val"]) is None:
        print(f"temporal: {names} asked for, but the training or validation images are not frames of videos (no "
              "'video' column from notebook 01's video path): no temporal head is trained.")
        return None
    embed = embedder(out.phase2_best, device=c.device, cache_dir=out.root / "cache" / "embeddings")
    videos = {split: embed(manifests[split], root) for split in ("train", "val")}
    print(f"temporal: frame embeddings ({videos['train'].dim} values) of {len(videos['train'])} training and "
          f"{len(videos['val'])} validation videos from {out.phase2_best}")
    for earlier in sorted(set(TEMPORAL_HEADS) - set(names)):  # heads no longer asked for: kept, but aside
        if (out.temporal_dir / earlier).exists():
            (out.temporal_dir / earlier).rename(aside_path(out.temporal_dir / earlier))
    histories, best = {}, {}
    max_frames = max(64, c.temporal_clip)
    for name in names:
        seed_everything(c.seed)
        head = TemporalHead(name, videos["train"].dim, hidden=c.temporal_hidden, max_frames=max_frames)
        meta = {"head": name, "in_dim": videos["train"].dim, "hidden": c.temporal_hidden, "max_frames": max_frames,
                # where the backbone is, from the study's reports folder (the folder may move)
                "embedding_checkpoint": out.phase2_best.relative_to(out.root).as_posix(),
                "embedding_sha256": sha256_file(out.phase2_best),
                "params": {**c.run_params("temporal"), "seed": c.seed}, "temporal_code": code_sha256(TEMPORAL_CODE),
                "data_sha256": manifests_sha256(manifests)}
        print(f"temporal head {name}: {sum(p.numel() for p in head.parameters()) / 1e3:.0f} k parameters")
        histories[name] = fit_temporal(
            head, videos["train"], videos["val"], out_dir=out.temporal_dir / name, clip=c.temporal_clip,
            epochs=c.temporal_epochs, lr=c.temporal_lr, batch_size=c.temporal_batch_size, flip=c.temporal_flip,
            weight_decay=c.weight_decay, patience=c.temporal_patience, seed=c.seed, resume=c.resume,
            device=embed.device, meta=meta)
        best[name] = float(histories[name]["val_auc"].max())
    chosen = max(names, key=lambda n: (best[n], -names.index(n)))  # ties: the first named
    save_checkpoint(load_checkpoint(out.temporal_dir / chosen / "best.pt", kind="temporal"), out.temporal_head)
    print(f"temporal: the study's head is {chosen} (validation video AUC {best[chosen]:.4f})")
    return TemporalResult(histories, best, chosen, len(videos["train"]), len(videos["val"]))


def load_heads(out: StageOutputs) -> dict[str, tuple[TemporalHead, dict]]:
    """Returns every temporal head notebook 04 trained, ``{name: (head, checkpoint)}``; none where it trained none
    (`dfcore.trainers.temporal.load_head` checks each reads the current phase-2 model)."""
    heads = {}
    for name in TEMPORAL_HEADS:  # earlier runs kept aside beside them (<head>.replaced-<time>) are not read
        path = out.temporal_dir / name / "best.pt"
        if path.is_file():
            head, state, _ = load_head(path, out.root)
            heads[name] = (head, state)
    return heads


def video_scores(heads: dict, videos: VideoEmbeddings) -> dict[str, tuple[np.ndarray, list]]:
    """Returns each head's ``(video logits, per-video frame weights)`` of ``videos``."""
    return {name: score_videos(head, videos) for name, (head, _) in heads.items()}


@dataclass
class TemporalEvaluation:
    """Notebook 05 on videos: every set's videos judged by each temporal head and by the mean and confident
    aggregation of the same backbone's frame scores, each method's rule fitted on validation."""

    table: pd.DataFrame  # one row per set and method: videos, video AUC with its interval, accuracy, frame AUC
    videos: dict[str, VideoEmbeddings]  # per set
    probs: dict[str, dict[str, np.ndarray]]  # set -> method -> calibrated video P(fake)
    frame_probs: dict[str, list[np.ndarray]]  # set -> each video's calibrated frame P(fake)
    weights: dict[str, dict[str, list]]  # set -> head -> each video's frame weights
    rules: dict[str, DecisionRule]  # method -> its validation-fitted rule
    chosen: str  # the study's head

    def summary(self) -> pd.DataFrame:
        """Returns the table with rounded numbers and intervals in words, one row per set and method."""
        table = self.table.copy()
        for column in ("AUC 95% interval", "accuracy 95% interval"):
            table[column] = table[column].map(lambda v: f"{v[0]:.3f} to {v[1]:.3f}" if np.isfinite(v[0]) else "")
        return table.set_index(["set", "method"]).round(4)

    def evidence(self, sets: dict, name: str = "test", n: int = 4) -> list[dict]:
        """Returns, for the study head, ``n`` videos of set ``name`` (the fakes it scores highest and the reals it
        scores lowest, half each): their frames' P(fake), the head's weights and the frames' crops."""
        v, probs = self.videos[name], self.probs[name][self.chosen]
        manifest, root = sets[name]
        order = np.argsort(-probs, kind="stable")
        picked = [i for i in order if v.labels[i] == 1][:n // 2] + [i for i in order[::-1] if v.labels[i] == 0][:n - n // 2]
        return [{"name": Path(v.videos[i]).name, "label": int(v.labels[i]), "prob": float(probs[i]),
                 "frame_probs": self.frame_probs[name][i], "weights": self.weights[name][self.chosen][i],
                 "images": [read_rgb(Path(root) / manifest["path"].iloc[r]) for r in v.rows[i]]} for i in picked]


FRAME_METHODS = ("frame mean", "frame confident")


def evaluate_heads(out: StageOutputs, sets: dict, *, device="auto", bootstrap_rounds: int = 1000, seed: int = 0,
                   group_t: float = 0.8, group_min_share: float = 0.4, threshold_rule: str = "eer"
                   ) -> TemporalEvaluation | None:
    """Scores the videos of every set of ``sets`` (``{name: (manifest, root)}``, validation among them) with each
    head notebook 04 trained and with the aggregated frame scores of the backbone the heads read; fits each
    method's temperature and threshold on validation videos (frames, for the frame methods) and writes the study
    head's rule beside it. None where notebook 04 trained no head."""
    heads = load_heads(out)
    if not heads:
        return None
    chosen = load_checkpoint(out.temporal_head, kind="temporal")["head"]
    embed = embedder(out.phase2_best, device=device, cache_dir=out.root / "cache" / "embeddings")
    videos = {name: embed(manifest, root) for name, (manifest, root) in sets.items()
              if video_manifest(manifest) is not None}
    val = videos["val"]
    frame_labels = np.concatenate([[y] * len(z) for y, z in zip(val.labels, val.logits)])
    frame_rule = fit_decision_rule(Scores("val", frame_labels, np.concatenate(val.logits)), rule=threshold_rule,
                                   group_t=group_t, group_min_share=group_min_share)
    logits = {name: video_scores(heads, v) for name, v in videos.items()}
    rules = {method: frame_rule for method in FRAME_METHODS}
    rules.update({head: fit_decision_rule(Scores("val", val.labels, logits["val"][head][0]), rule=threshold_rule)
                  for head in heads})
    save_decision_rule(rules[chosen], out.temporal_head)
    rows, probs, frame_probs = [], {}, {}
    for name, v in videos.items():
        frame_probs[name] = [frame_rule.prob_of_logits(z) for z in v.logits]
        probs[name] = {"frame mean": np.array([frame_rule.aggregate(p, "mean") for p in frame_probs[name]]),
                       "frame confident": np.array([frame_rule.aggregate(p, "confident") for p in frame_probs[name]]),
                       **{head: rules[head].prob_of_logits(logits[name][head][0]) for head in heads}}
        both = len(np.unique(v.labels)) == 2
        all_frames = np.concatenate(frame_probs[name])
        frame_y = np.concatenate([[y] * len(p) for y, p in zip(v.labels, frame_probs[name])])
        for method, p in probs[name].items():
            threshold = rules[method].threshold
            statistics = {"accuracy": lambda y, q, t=threshold: float(np.mean((q >= t) == y))}
            if both:
                statistics["auc"] = skm.roc_auc_score
            intervals = bootstrap_intervals(v.labels, p, statistics, rounds=bootstrap_rounds, seed=seed)
            rows.append({"set": name, "method": method + (" (study)" if method == chosen else ""),
                         "videos": len(v), "fake videos": int(v.labels.sum()),
                         "video AUC": float(skm.roc_auc_score(v.labels, p)) if both else float("nan"),
                         "AUC 95% interval": intervals.get("auc", [float("nan")] * 2),
                         "accuracy at val threshold": float(np.mean((p >= threshold) == v.labels)),
                         "accuracy 95% interval": intervals["accuracy"],
                         "frame AUC": float(skm.roc_auc_score(frame_y, all_frames)) if both else float("nan")})
    return TemporalEvaluation(pd.DataFrame(rows), videos, probs, frame_probs,
                              {name: {head: logits[name][head][1] for head in heads} for name in videos},
                              rules, chosen)
