"""Self-blended pseudo-fakes: masks from landmarks or the face box, training modes, seeded and resumable."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dfcore.datasets import BlendSettings, SelfBlender, build_manifest, split_loader, training_rows
from dfcore.datasets.blending import face_mask, face_polygon
from dfcore.datasets.dataset import BlendedDataset, seed_augmentation
from dfcore.datasets.transforms import build_transforms
from conftest import face_photo

# MTCNN's five points on scikit-image's astronaut at 320 px (eyes, nose, mouth corners)
LANDMARKS = [[128.1, 63.6], [154.2, 64.8], [140.4, 80.6], [126.1, 87.0], [153.3, 88.7]]


def test_the_landmark_hull_covers_the_face_from_brows_to_chin_and_nothing_far_away():
    mask = face_mask((320, 320), LANDMARKS)
    for x, y in LANDMARKS:
        assert mask[int(y), int(x)] == 1
    ys, xs = np.nonzero(mask)
    assert ys.min() < 63 - 5 and ys.max() > 88 + 10  # above the eyes, below the mouth
    assert 100 < xs.min() and xs.max() < 185 and mask.sum() < 0.1 * 320 * 320
    assert len(face_polygon(LANDMARKS)) == 8


def test_without_landmarks_an_ellipse_on_the_central_face_box():
    mask = face_mask((100, 100), None, face_share=0.6)
    assert mask[52, 50] == 1 and mask[2, 2] == 0 and mask[52, 95] == 0


def test_a_pseudo_fake_changes_the_face_only_and_is_seeded():
    image = face_photo(320)
    blender = SelfBlender(BlendSettings(), seed=3)
    fake, mask = blender(image, LANDMARKS)
    assert fake.shape == image.shape and mask.shape == (320, 320, 1) and 0 < mask.max() <= 1
    diff = np.abs(fake.astype(int) - image).sum(2)
    assert diff[70:90, 130:150].mean() > 3 * max(diff[250:, :60].mean(), 0.5)  # inside the face, not the corner
    blender.set_random_seed(3)
    again, _ = blender(image, LANDMARKS)
    assert np.array_equal(fake, again)
    blender.set_random_seed(4)
    assert not np.array_equal(fake, blender(image, LANDMARKS)[0])


def test_training_modes_and_the_labels_class_balance_sees():
    manifest = pd.DataFrame({"path": ["r0", "r1", "f0"], "label": [0, 0, 1]})
    assert list(training_rows(manifest, "real")["label"]) == [0, 0, 1]
    sbi = training_rows(manifest, "sbi")
    assert list(sbi["label"]) == [0, 0, 1, 1] and list(sbi["path"]) == ["r0", "r1", "r0", "r1"]
    assert list(sbi["synthetic"]) == [False, False, True, True]
    assert list(training_rows(manifest, "mixed")["label"]) == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="train_fakes"):
        training_rows(manifest, "fake")


def test_loader_in_sbi_mode_trains_on_real_faces_and_their_blends_only(kaggle_root):
    frames = {s: build_manifest(kaggle_root).manifest.query("split == @s") for s in ("train", "val")}
    kwargs = dict(image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=4, seed=0)
    train = split_loader(frames, kaggle_root, "train", train=True, fakes="sbi", **kwargs)
    assert isinstance(train.dataset, BlendedDataset) and len(train.dataset) == 6  # 3 real + 3 pseudo-fakes
    assert not train.dataset.manifest["path"].str.contains("/Fake/").any()
    val = split_loader(frames, kaggle_root, "val", train=False, fakes="sbi", **kwargs)
    assert len(val.dataset) == 6 and val.dataset.manifest["path"].str.contains("/Fake/").sum() == 3  # stays real
    images, titles = train.dataset.examples(2)
    assert len(images) == 6 and titles[:3] == ["real", "self-blended", "blend mask"]


def test_pseudo_fakes_replay_exactly_from_the_epoch_seed(kaggle_root):
    frame = build_manifest(kaggle_root).manifest.query("split == 'train'")
    frame = frame.assign(landmarks=json.dumps([[10, 12], [22, 12], [16, 18], [11, 24], [21, 24]]))
    dataset = BlendedDataset(frame, kaggle_root, build_transforms(32, (0.5,) * 3, (0.25,) * 3, train=True),
                             fakes="mixed", seed=0)

    def epoch(seed):
        seed_augmentation(dataset, seed)
        return torch.stack([dataset[i][0] for i in range(len(dataset))])

    first = epoch(7)
    assert torch.equal(first, epoch(7)) and not torch.equal(first, epoch(8))


def test_blend_masks_follow_the_landmarks_when_the_decode_cache_stores_images_resized(tmp_path):
    import cv2
    from PIL import Image

    from dfcore.datasets.cache import DecodeCache

    root = tmp_path / "faces"
    for split in ("Train", "Validation", "Test"):
        for cls in ("Real", "Fake"):
            (root / split / cls).mkdir(parents=True)
            Image.fromarray(np.roll(face_photo(320), len(split) + len(cls), axis=1)).save(root / split / cls / "a.png")
    frame = build_manifest(root).manifest.query("split == 'train'").reset_index(drop=True)
    frame = frame.assign(landmarks=json.dumps(LANDMARKS))  # in pixels of the 320 px files
    transform = build_transforms(64, (0.5,) * 3, (0.25,) * 3, train=False)
    settings = BlendSettings(elastic=0, ratio=(1.0, 1.0))
    full = BlendedDataset(frame, root, transform, fakes="sbi", settings=settings, seed=3)
    cached = BlendedDataset(frame, root, transform, fakes="sbi", settings=settings, seed=3,
                            cache=DecodeCache.build(frame, root, 64, tmp_path / "cache", progress=False))
    synthetic = int(np.flatnonzero(full.manifest["synthetic"].to_numpy())[0])
    _, mask_full, _ = full.raw(synthetic)
    _, mask_cached, _ = cached.raw(synthetic)
    assert mask_full.shape[:2] == (320, 320) and mask_cached.shape[:2] == (64, 64)
    assert np.abs(cv2.resize(mask_full, (64, 64), interpolation=cv2.INTER_AREA) - mask_cached[..., 0]).max() < 0.1
    assert mask_cached[..., 0][int(LANDMARKS[2][1] / 5), int(LANDMARKS[2][0] / 5)] > 0.9  # the nose, at 64 px
