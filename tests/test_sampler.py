"""Grouped training batches: a source's real face and its fakes drawn next to each other, and augmented alike."""

from itertools import groupby

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_image
from torch.utils.data import Dataset

from dfcore.datasets.dataset import GroupedRandomSampler, make_loader, split_loader
from dfcore.trainers.loop import reseed_epoch


def _draw(groups, seed=0, run=4):
    return list(GroupedRandomSampler(groups, torch.Generator().manual_seed(seed), run=run))


def test_each_index_once_and_a_groups_images_side_by_side():
    groups = [f"v{i // 2}" for i in range(40)] + ["alone"]  # 20 real/fake pairs and a lone image
    order = _draw(groups)
    assert sorted(order) == list(range(41))
    position = {index: k for k, index in enumerate(order)}
    assert all(abs(position[2 * i] - position[2 * i + 1]) == 1 for i in range(20))
    assert order != sorted(order)  # groups come in random order


def test_the_draw_is_a_function_of_the_generator_seed():
    groups = [f"v{i // 3}" for i in range(30)]
    assert _draw(groups, seed=1) == _draw(groups, seed=1)
    assert _draw(groups, seed=1) != _draw(groups, seed=2)


def test_a_long_video_is_cut_into_short_runs_spread_over_the_epoch():
    groups = ["long"] * 12 + [f"v{i}" for i in range(36)]

    def blocks(order):  # the runs of consecutive images of the long video
        return [len(list(run)) for is_long, run in groupby(order, key=lambda index: index < 12) if is_long]

    for seed in range(5):
        assert blocks(_draw(groups, seed, run=12)) == [12]  # one run: the whole video in a row
        cut = blocks(_draw(groups, seed, run=4))
        assert sum(cut) == 12 and len(cut) >= 2  # runs of 4 in random places: never all in a row


class _Frame(Dataset):
    def __init__(self, n):
        self.manifest = pd.DataFrame({"label": np.arange(n) % 2, "group": [f"v{i // 2}" for i in range(n)]})

    def __len__(self):
        return len(self.manifest)

    def __getitem__(self, i):
        return i


def test_loader_batches_hold_whole_pairs_and_refuse_weighted_drawing():
    loader = make_loader(_Frame(32), batch_size=8, train=True, group_batches=True)
    for batch in loader:
        assert sorted((batch // 2).tolist()) == sorted(2 * sorted(set((batch // 2).tolist())))  # pairs whole
    with pytest.raises(ValueError, match="group_batches"):
        make_loader(_Frame(32), batch_size=8, train=True, group_batches=True, balance=True)


def _same_face_loader(tmp_path, group_batches):
    """A loader over 16 rows of one image file, in pairs of one group each (v0, v0, v1, v1, ...)."""
    write_image(tmp_path / "face.jpg", 3)
    frame = pd.DataFrame({"path": ["face.jpg"] * 16, "label": [0, 1] * 8, "group": [f"v{i // 2}" for i in range(16)]})
    return split_loader({"train": frame}, tmp_path, "train", image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3,
                        batch_size=16, train=True, augment="shift", seed=0, group_batches=group_batches)


def _pairs(loader, epoch):
    reseed_epoch(loader, 0, epoch)
    sampler_order = list(loader.sampler)
    reseed_epoch(loader, 0, epoch)
    images = next(iter(loader))[0]
    by_group = {}
    for index, image in zip(sampler_order, images):
        by_group.setdefault(index // 2, []).append(image)
    return by_group


def test_grouped_batches_share_their_augmentation_and_other_groups_do_not(tmp_path):
    tied = _pairs(_same_face_loader(tmp_path, group_batches=True), epoch=0)
    assert all(torch.equal(a, b) for a, b in tied.values())  # one flip, shift and contrast per group
    firsts = [pair[0] for pair in tied.values()]
    assert sum(not torch.equal(firsts[0], other) for other in firsts[1:]) >= 6  # groups drawn apart
    assert not torch.equal(_pairs(_same_face_loader(tmp_path, True), epoch=1)[0][0], tied[0][0])  # a new epoch
    untied = _pairs(_same_face_loader(tmp_path, group_batches=False), epoch=0)
    assert sum(not torch.equal(a, b) for a, b in untied.values()) >= 6  # without group_batches: drawn apart
