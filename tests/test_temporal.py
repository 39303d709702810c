"""Temporal heads: they see what frame scores cannot (order), masks and padding never change a verdict, embeddings
are cached, and a killed temporal run resumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from dfcore.models import build_model
from dfcore.models.temporal import TEMPORAL_HEADS, TemporalHead
from dfcore.stages.temporal import head_names
from dfcore.trainers import temporal as tt

FRAMES, SIZE = 12, 32


def _flicker_videos(root, n_videos: int, *, seed: int) -> pd.DataFrame:
    """Writes synthetic face videos' frames: every video is one of three faces, shown plain or with a blended square,
    in half its frames each. Reals switch once (a block of blended frames); fakes flicker, the square on every other
    frame. Per frame, both classes show the same images in the same shares: only the order tells them apart."""
    rng = np.random.default_rng(seed)
    faces = np.random.default_rng(99).integers(60, 200, (3, SIZE, SIZE, 3)).astype(np.uint8)  # shared by both classes
    rows = []
    for v in range(n_videos):
        label = v % 2
        face = faces[v // 2 % len(faces)]
        blended = face.copy()
        blended[8:24, 8:24] = (0.5 * blended[8:24, 8:24] + 0.5 * np.array([255, 40, 40])).astype(np.uint8)
        if label:
            on = (np.arange(FRAMES) + rng.integers(2)) % 2 == 1
        else:
            start = rng.integers(0, FRAMES // 2 + 1)
            on = (np.arange(FRAMES) >= start) & (np.arange(FRAMES) < start + FRAMES // 2)
        for f in range(FRAMES):
            path = f"v{seed}_{v}/{f:03d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(blended if on[f] else face).save(root / path)
            rows.append({"path": path, "label": label, "group": f"v{seed}_{v}", "video": f"v{seed}_{v}.mp4",
                         "frame": f, "sha256": path})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def flicker(tmp_path_factory):
    root = tmp_path_factory.mktemp("flicker")
    torch.manual_seed(0)
    model = build_model("resnet10t", image_size=SIZE).eval()  # a frozen random backbone: it tells the frames apart
    checkpoint = root / "backbone.bin"
    checkpoint.write_bytes(b"stand-in for the phase-2 checkpoint's bytes")
    sets = {}
    for name, n, seed in (("train", 48, 0), ("val", 16, 1), ("test", 32, 2)):
        manifest = _flicker_videos(root, n, seed=seed)
        sets[name] = tt.embed_videos(model, checkpoint, manifest, root, image_size=SIZE, mean=(0.5,) * 3,
                                     std=(0.25,) * 3, device="cpu", cache_dir=root / "cache")
    return root, model, checkpoint, sets


def _mean_of_frame_scores_auc(sets) -> float:
    """A frame classifier trained on the training frames (each with its video's label), its scores averaged per
    test video: what aggregating independent frame scores can do."""
    x = torch.cat(sets["train"].features).numpy()
    y = np.concatenate([[label] * len(f) for label, f in zip(sets["train"].labels, sets["train"].features)])
    frames = LogisticRegression(max_iter=500).fit(x, y)
    means = [frames.predict_proba(f.numpy())[:, 1].mean() for f in sets["test"].features]
    return roc_auc_score(sets["test"].labels, means)


def test_the_mean_of_frame_scores_cannot_see_flicker(flicker):
    assert 0.3 < _mean_of_frame_scores_auc(flicker[3]) < 0.7


@pytest.mark.parametrize("kind", TEMPORAL_HEADS)
def test_sequence_heads_see_flicker_that_the_mean_of_frame_scores_misses(flicker, kind, tmp_path):
    _, _, _, sets = flicker
    torch.manual_seed(0)
    head = TemporalHead(kind, sets["train"].dim, hidden=32)
    history = tt.fit_temporal(head, sets["train"], sets["val"], out_dir=tmp_path, clip=FRAMES, epochs=12, lr=3e-3,
                              batch_size=8, patience=12, warmup_epochs=0)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    head.load_state_dict(best["model"])
    logits, weights = tt.score_videos(head, sets["test"])
    auc = tt.video_auc(sets["test"].labels, logits)
    assert auc > 0.9, (kind, auc, history[["epoch", "val_auc"]].to_dict("records"))
    # the head reads the order: with each video's frames shuffled, reals and fakes look alike
    shuffled = tt.VideoEmbeddings(**{**vars(sets["test"]), "features": [
        f[torch.randperm(len(f), generator=torch.Generator().manual_seed(i))]
        for i, f in enumerate(sets["test"].features)]})
    assert tt.video_auc(shuffled.labels, tt.score_videos(head, shuffled)[0]) < 0.8
    assert all(np.isclose(w.sum(), 1) and len(w) == FRAMES for w in weights)


def test_embeddings_are_cached_and_the_second_run_computes_nothing(flicker, monkeypatch):
    root, model, checkpoint, sets = flicker
    assert len(list((root / "cache").glob("*.pt"))) == 3
    monkeypatch.setattr(tt, "frame_features", lambda *a, **k: pytest.fail("embeddings recomputed on a cache hit"))
    manifest = _flicker_videos(root, 16, seed=1)
    again = tt.embed_videos(model, checkpoint, manifest, root, image_size=SIZE, mean=(0.5,) * 3, std=(0.25,) * 3,
                            device="cpu", cache_dir=root / "cache")
    assert again.videos == sets["val"].videos and torch.equal(again.features[3], sets["val"].features[3])
    for video, rows in zip(again.videos, again.rows):  # each video's own frames, in frame order
        assert set(manifest.loc[rows, "video"]) == {video} and manifest.loc[rows, "frame"].tolist() == list(range(FRAMES))


@pytest.mark.parametrize("kind", TEMPORAL_HEADS)
def test_masked_frames_and_padding_never_change_a_verdict(kind):
    torch.manual_seed(0)
    head = TemporalHead(kind, 8, hidden=16).eval()
    faces = torch.randn(1, 5, 8)
    holes = torch.zeros(1, 9, 8)
    holes[0, [0, 2, 3, 6, 8]] = faces[0]
    holes[0, [1, 4, 5, 7]] = 100.0  # faceless frames: whatever they hold is masked
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[0, [0, 2, 3, 6, 8]] = True
    with torch.no_grad():
        alone, w_alone = head(faces)
        padded, w_padded = head(holes, mask)
        blank, _ = head(torch.zeros(1, 4, 8), torch.zeros(1, 4, dtype=torch.bool))  # no face at all: no crash
    assert torch.allclose(alone, padded, atol=1e-5)
    assert torch.allclose(w_padded[0, mask[0]], w_alone[0], atol=1e-6) and (w_padded[0, ~mask[0]] == 0).all()
    assert torch.isfinite(blank).all()


def test_short_videos_are_padded_in_training_clips_and_read_whole_in_scoring():
    videos = tt.VideoEmbeddings(["a", "b"], np.array([0, 1]), ["a", "b"], [np.arange(3), np.arange(20)],
                                [torch.randn(3, 4), torch.randn(20, 4)], [torch.randn(3, 4), torch.randn(20, 4)],
                                [np.zeros((3, 2)), np.zeros((20, 2))])
    x, mask, label = tt.ClipDataset(videos, clip=8)[0]
    assert x.shape == (8, 4) and mask.tolist() == [True] * 3 + [False] * 5 and label == 0
    x, mask, _ = tt.ClipDataset(videos, clip=8)[1]
    assert mask.all() and any(torch.equal(x, videos.features[1][s:s + 8]) for s in range(13))
    whole = tt.ClipDataset(videos, max_frames=16)
    assert whole.length == 16 and whole[0][1].sum() == 3 and whole[1][1].all()
    logits, weights = tt.score_videos(TemporalHead("gru", 4, hidden=8), videos)
    assert logits.shape == (2, 2) and [len(w) for w in weights] == [3, 20]  # a head reads up to 64 frames


def test_a_killed_temporal_run_resumes_where_it_stopped(flicker, tmp_path, monkeypatch):
    _, _, _, sets = flicker
    meta = {"head": "gru", "params": {"epochs": 4}}

    def fit():
        torch.manual_seed(0)
        return tt.fit_temporal(TemporalHead("gru", sets["train"].dim, hidden=16), sets["train"], sets["val"],
                               out_dir=tmp_path, clip=8, epochs=4, lr=1e-3, batch_size=16, meta=meta)

    evaluate = tt.TemporalTask.evaluate

    def killed_at_epoch_2(self, model, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return evaluate(self, model, epoch)

    monkeypatch.setattr(tt.TemporalTask, "evaluate", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit()
    first = pd.read_csv(tmp_path / "history.csv")
    assert first["epoch"].tolist() == [0, 1]
    monkeypatch.setattr(tt.TemporalTask, "evaluate", evaluate)
    resumed = []
    monkeypatch.setattr(tt.TemporalTask, "start", lambda self, out_dir, start_epoch: resumed.append(start_epoch))
    history = fit()
    assert resumed == [2] and history["epoch"].tolist() == [0, 1, 2, 3]
    assert history["val_auc"].iloc[:2].tolist() == first["val_auc"].tolist()


def test_the_temporal_parameter_names_heads_or_none():
    assert head_names("none") == [] and head_names("") == []
    assert head_names("lstm, attention") == ["lstm", "attention"]
    with pytest.raises(ValueError, match="transformer"):
        head_names("gru,transformer")
