"""Training a temporal head (`dfcore.models.temporal`) on videos: frame embeddings computed once by the frozen
phase-2 backbone and cached, clips of them drawn per epoch, and the study's one training loop
(`dfcore.trainers.loop`: resume, history, checkpoints, early stopping on validation video AUC).

A video is the face crops notebook 01 cut from it (manifest rows sharing a ``video``), in frame order. Its clip
label is the video's. Training clips are ``clip`` consecutive sampled frames at a random offset each epoch, all
frames mirrored or none (one augmentation per clip: the mirror image's embeddings are cached beside the frame's).
Validation and scoring read the whole video.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn import metrics as skm

from dfcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dfcore.datasets import ManifestDataset, build_transforms, make_loader
from dfcore.datasets.faces import sha256_file
from dfcore.evaluation.groups import scoring_units
from dfcore.models.temporal import TemporalHead, build_temporal_head
from dfcore.trainers.loop import Task, run


@dataclass
class VideoEmbeddings:
    """The frames of a set's videos as a frozen backbone sees them: per video its frames' embeddings (and their mirror
    images'), the backbone's own frame logits, and the manifest rows they came from, in frame order."""

    videos: list[str]
    labels: np.ndarray  # one per video
    groups: list[str]
    rows: list[np.ndarray]  # manifest row positions of each video's frames, in frame order
    features: list[torch.Tensor]  # frames x D
    flipped: list[torch.Tensor]  # the mirror images' embeddings
    logits: list[np.ndarray]  # frames x 2: the backbone classifier's logits of each frame

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def dim(self) -> int:
        return int(self.features[0].shape[1])

    def as_state(self) -> dict:
        return {"videos": self.videos, "labels": torch.as_tensor(self.labels), "groups": self.groups,
                "rows": [torch.tensor(r) for r in self.rows], "features": self.features, "flipped": self.flipped,
                "logits": [torch.as_tensor(z) for z in self.logits]}

    @classmethod
    def from_state(cls, state: dict) -> "VideoEmbeddings":
        return cls(state["videos"], state["labels"].numpy(), state["groups"], [r.numpy() for r in state["rows"]],
                   state["features"], state["flipped"], [z.numpy() for z in state["logits"]])


def video_manifest(manifest: pd.DataFrame) -> pd.DataFrame | None:
    """Returns the rows of ``manifest`` that are frames of videos (with their ``video``), or None where it holds no
    video (photographs, pre-cropped faces)."""
    _, unit = scoring_units(manifest)
    return manifest if unit == "video" else None


@torch.inference_mode()
def frame_features(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the pooled embeddings (what the classifier reads) and the logits of a batch, in one pass."""
    pooled = model.forward_head(model.forward_features(images), pre_logits=True)
    return pooled.float(), model.get_classifier()(pooled).float()


def _cache_key(checkpoint, manifest: pd.DataFrame, image_size: int) -> str:
    digest = hashlib.sha256(Path(checkpoint).read_bytes())
    digest.update(str(image_size).encode())
    digest.update(manifest[["path", "sha256", "video", "frame"]].astype(str).to_csv(index=False).encode())
    return digest.hexdigest()[:32]


@torch.inference_mode()
def embed_videos(model, checkpoint, manifest: pd.DataFrame, root, *, image_size: int, mean, std, device,
                 batch_size: int = 64, cache_dir=None) -> VideoEmbeddings:
    """Returns the `VideoEmbeddings` of the videos in ``manifest`` (face crops under ``root``) by ``model``, the
    classifier stored at ``checkpoint``. With ``cache_dir`` they are read from (or written to) a file keyed by
    the checkpoint's bytes, the input size and the frames (paths, content hashes, videos, frame indices): a second
    run computes nothing."""
    manifest = manifest.reset_index(drop=True)
    cache = Path(cache_dir) / f"{_cache_key(checkpoint, manifest, image_size)}.pt" if cache_dir else None
    if cache is not None and cache.is_file():
        return VideoEmbeddings.from_state(torch.load(cache, map_location="cpu", weights_only=True))
    model.eval()
    loader = make_loader(ManifestDataset(manifest, root, build_transforms(image_size, mean, std, train=False)),
                         batch_size=batch_size, train=False)
    features, flipped, logits = [], [], []
    for images, _ in loader:
        images = images.to(device, memory_format=torch.channels_last)
        f, z = frame_features(model, images)
        features.append(f.cpu())
        logits.append(z.cpu())
        flipped.append(frame_features(model, images.flip(-1))[0].cpu())
    features, flipped, logits = torch.cat(features), torch.cat(flipped), torch.cat(logits).numpy()
    order = manifest.assign(_frame=pd.to_numeric(manifest["frame"], errors="coerce").fillna(0)).sort_values(
        ["video", "_frame"], kind="stable")
    videos, labels, groups, rows = [], [], [], []
    for video, frames in order.groupby("video", sort=True):
        videos.append(str(video))
        labels.append(int(frames["label"].iloc[0]))
        groups.append(str(frames["group"].iloc[0]))
        rows.append(frames.index.to_numpy())
    result = VideoEmbeddings(videos, np.asarray(labels), groups, rows, [features[r.copy()] for r in rows],
                             [flipped[r.copy()] for r in rows], [logits[r] for r in rows])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(result.as_state(), cache)
    return result


def even_subsample(n: int, k: int) -> np.ndarray:
    """Returns ``k`` positions spread evenly over ``n`` (all of them when ``n <= k``)."""
    return np.arange(n) if n <= k else np.linspace(0, n - 1, k).round().astype(int)


class ClipDataset(torch.utils.data.Dataset):
    """Clips of a set's videos: ``(embeddings T x D, mask T, label)``.

    Training (``clip`` > 0): ``clip`` consecutive frames at a random offset, mirrored as a whole with probability
    one half when ``flip``. Otherwise the whole video, evenly subsampled to ``max_frames`` where longer. Shorter
    videos are padded, and their padding masked.
    """

    def __init__(self, videos: VideoEmbeddings, *, clip: int = 0, flip: bool = False, max_frames: int = 64):
        self.videos, self.clip, self.flip = videos, clip, flip
        self.length = clip if clip > 0 else min(max_frames, max(len(f) for f in videos.features))

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int):
        mirrored = self.clip > 0 and self.flip and bool(torch.rand(()) < 0.5)
        frames = (self.videos.flipped if mirrored else self.videos.features)[i]
        n = len(frames)
        if self.clip > 0:
            start = int(torch.randint(0, max(n - self.clip, 0) + 1, ()))
            frames = frames[start:start + self.clip]
        else:
            frames = frames[torch.as_tensor(even_subsample(n, self.length))]
        x = torch.zeros(self.length, frames.shape[1])
        mask = torch.zeros(self.length, dtype=torch.bool)
        x[:len(frames)], mask[:len(frames)] = frames, True
        return x, mask, int(self.videos.labels[i])


@torch.inference_mode()
def score_videos(head, videos: VideoEmbeddings, *, device="cpu", batch_size: int = 64) -> tuple[np.ndarray, list]:
    """Returns the head's two-class logits of every whole video and each video's frame weights (its own frames,
    in order)."""
    head.eval()
    dataset = ClipDataset(videos, max_frames=getattr(head, "max_frames", 64))
    logits, weights = [], []
    for start in range(0, len(dataset), batch_size):
        x, mask, _ = zip(*(dataset[i] for i in range(start, min(start + batch_size, len(dataset)))))
        z, w = head(torch.stack(x).to(device), torch.stack(mask).to(device))
        logits.append(z.float().cpu())
        weights += [wi[m].cpu().numpy() for wi, m in zip(w, torch.stack(mask))]
    return torch.cat(logits).numpy(), weights


def video_auc(labels, logits) -> float:
    """Returns the AUC of videos' two-class logits (nan with one class)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(skm.roc_auc_score(labels, logits[:, 1] - logits[:, 0]))


class TemporalTask(Task):
    """A temporal head's part of the training loop: cross-entropy of clip logits; validation video AUC picks
    ``best.pt``."""

    kind = "temporal"
    monitor = "val_auc"

    def __init__(self, val: VideoEmbeddings, device):
        self.val, self.device = val, device

    def loss(self, model, batch) -> torch.Tensor:
        x, mask, labels = batch
        return torch.nn.functional.cross_entropy(model(x, mask)[0].float(), labels)

    def evaluate(self, model, epoch: int) -> dict:
        logits, _ = score_videos(model, self.val, device=self.device)
        loss = torch.nn.functional.cross_entropy(torch.as_tensor(logits), torch.as_tensor(self.val.labels)).item()
        return {"val_auc": video_auc(self.val.labels, logits), "val_loss": loss}


def fit_temporal(head, train: VideoEmbeddings, val: VideoEmbeddings, *, out_dir, clip: int, epochs: int, lr: float,
                 batch_size: int, flip: bool = True, weight_decay: float = 0.05, warmup_epochs: float = 1.0,
                 patience: int = 10, seed: int = 0, resume: bool = True, device="cpu", meta: dict | None = None
                 ) -> pd.DataFrame:
    """Trains ``head`` on clips of the ``train`` videos, validation video AUC picking ``best.pt`` and stopping after
    ``patience`` epochs without a better one; returns the per-epoch history (`dfcore.trainers.loop.run`)."""
    loader = make_loader(ClipDataset(train, clip=clip, flip=flip, max_frames=head.max_frames),
                         batch_size=batch_size, train=True, seed=seed)
    head.fit_standardisation(torch.cat(train.features))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    return run(head, loader, TemporalTask(val, device), optimizer=optimizer, epochs=epochs, out_dir=out_dir,
               device=device, warmup_epochs=warmup_epochs, grad_clip=1.0, patience=patience, seed=seed,
               resume=resume, meta=meta)


def load_head(path, reports_dir) -> tuple[TemporalHead, dict, Path]:
    """Returns the temporal head saved at ``path``, its checkpoint, and the phase-2 checkpoint whose frame embeddings
    it reads (stored relative to the study's ``reports_dir``). A head trained on another version of that checkpoint
    is a `CheckpointError` saying to re-run notebook 04."""
    state = load_checkpoint(path, kind="temporal")
    source = Path(reports_dir) / state["embedding_checkpoint"]
    if not source.is_file() or sha256_file(source) != state["embedding_sha256"]:
        raise CheckpointError(f"{path} reads the frame embeddings of {source}, which is missing or was trained again "
                              "since: re-run notebook 04 (make reproduce) to train the temporal heads again.")
    return build_temporal_head(state), state, source
