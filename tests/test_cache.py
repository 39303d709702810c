"""The decode cache: the same pixels as decoding each epoch, rebuilt when the manifest or the size changes."""

import torch

from dfcore.datasets import build_manifest, split_loader
from dfcore.datasets.cache import DecodeCache


def _frames(root):
    return {s: f for s, f in build_manifest(root).manifest.groupby("split")}


def _batches(frames, root, cache_dir, *, train, workers=0):
    loader = split_loader(frames, root, "train", image_size=24, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=3,
                          train=train, seed=1, num_workers=workers, cache_dir=cache_dir)
    return torch.cat([images for images, _ in loader]), loader


def test_cached_images_are_the_pixels_the_transforms_would_have_made(kaggle_root, tmp_path):
    frames = _frames(kaggle_root)
    for train in (False, True):  # plain resize, and the recipe's random augmentation on top
        plain, _ = _batches(frames, kaggle_root, None, train=train)
        cached, loader = _batches(frames, kaggle_root, tmp_path / "cache", train=train)
        assert loader.dataset.cache is not None and torch.equal(plain, cached)
    in_worker, _ = _batches(frames, kaggle_root, tmp_path / "cache", train=False, workers=1)  # the map pickles
    assert torch.equal(in_worker, _batches(frames, kaggle_root, None, train=False)[0])


def test_a_changed_manifest_or_size_builds_a_new_cache_and_drops_the_stale_one(kaggle_root, tmp_path):
    frames = _frames(kaggle_root)
    tmp_path = tmp_path / "cache"
    first = DecodeCache.build(frames["train"], kaggle_root, 24, tmp_path, progress=False)
    stamp = first.path.stat().st_mtime_ns
    assert DecodeCache.build(frames["train"], kaggle_root, 24, tmp_path, progress=False).path.stat().st_mtime_ns == stamp
    smaller = DecodeCache.build(frames["train"].iloc[:4], kaggle_root, 24, tmp_path, progress=False)
    assert smaller.path != first.path and not first.path.exists() and len(smaller) == 4
    other_size = DecodeCache.build(frames["train"].iloc[:4], kaggle_root, 16, tmp_path, progress=False)
    assert other_size[0].shape == (16, 16, 3) and sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".u8"]
