"""Grouped training batches: a source's real face and its fakes drawn next to each other."""

from itertools import groupby

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from dfcore.datasets.dataset import GroupedRandomSampler, make_loader


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
