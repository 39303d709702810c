import pytest
import torch

from dfcore.bench import _RecipeDataset
from dfcore.params import load_config
from dfcore.datasets import build_manifest, split_loader


def test_benchmark_stages_get_their_parameters_layered_as_make_layers_them():
    config = load_config("02_mim_pretrain", "smoke", reports_root="/tmp/x")
    assert config.mim_epochs == 1 and config.image_size == 64  # the smoke profile's values won
    assert config.backbone == "resnet10t" and config.seed == 0  # the declared defaults
    assert config.profile == "smoke" and config.reports_root == "/tmp/x"


def test_recipe_baseline_does_the_trainers_augmentation_work_on_pil_decoded_images(kaggle_root):
    frame = build_manifest(kaggle_root).manifest
    frame = frame[frame["split"] == "train"]
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    recipe = _RecipeDataset(frame, kaggle_root, 24, mean, std)
    trainer = split_loader({"train": frame}, kaggle_root, "train", image_size=24, mean=mean, std=std, batch_size=2,
                           train=True).dataset
    steps = [type(t).__name__ for t in recipe.transform.transforms]
    assert steps == [type(t).__name__ for t in trainer.transform.transforms]
    assert {"ColorJitter", "OneOf", "GaussNoise"} <= set(steps)  # not only resize and flip
    image, label = recipe[0]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and label == int(frame["label"].iloc[0])


@pytest.mark.parametrize("members", [0, 1])
def test_the_mim_against_random_figure_is_drawn_with_and_without_ensemble_members(tmp_path, members):
    import numpy as np
    from PIL import Image

    from dfcore.bench import draw_mim_vs_random

    arm = {"phase2_val_auc_per_epoch": [0.6, 0.7, 0.75], "val_auc": 0.8, "test_auc": 0.78, "ensemble_members": members}
    results = {"profile": "p", "data": "d", "mim": arm, "none": {**arm, "phase2_val_auc_per_epoch": [0.6] * 5}}
    path = draw_mim_vs_random(results, 2, tmp_path / "figure.png")
    assert np.asarray(Image.open(path).convert("L"), dtype=float).std() > 10
