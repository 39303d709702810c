import numpy as np
import pandas as pd
import pytest
import timm
import torch

from dfcore.explain import (
    CamTarget,
    attention_rollout,
    available_methods,
    cam_grid,
    cam_maps,
    cam_target,
    deletion_insertion,
    faithfulness_table,
    most_faithful,
    outcomes,
    random_maps,
    rollout,
    saliency_maps,
    select_outcomes,
)
from dfcore.models import Ensemble, build_model
from dfcore.reporting import browser


def _planted(n, seed):
    """Noise images; the fakes carry a bright 16x16 patch at a random place. Returns images, labels, boxes."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 64, 64, generator=g) * 0.5
    labels = torch.arange(n) % 2
    boxes = torch.randint(0, 48, (n, 2), generator=g)
    for i in range(n):
        if labels[i]:
            y, x = boxes[i].tolist()
            images[i, :, y:y + 16, x:x + 16] = 2.5
    return images, labels, boxes


@pytest.fixture(scope="module")
def patch_detector():
    torch.manual_seed(0)
    model = build_model("resnet10t")
    images, labels, _ = _planted(128, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        idx = torch.randint(0, 128, (32,))
        loss = torch.nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_maps_have_the_input_size_unit_range_and_vary(patch_detector, method):
    images, labels, _ = _planted(8, seed=1)
    fakes = torch.nn.functional.interpolate(images[labels == 1], size=(64, 96))
    maps = cam_maps(patch_detector, fakes, method=method)
    assert maps.shape == (4, 64, 96)
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(m.std() > 0.05 for m in maps)  # (a real image may get a flat zero map: nothing looks fake)
    assert cam_target(patch_detector).layer == "layer4"


@pytest.mark.parametrize("layer,min_ratio", [(None, 1.2), ("layer3", 4.0)])
def test_cam_is_brightest_on_the_planted_patch(patch_detector, layer, min_ratio):
    images, labels, boxes = _planted(16, seed=2)
    fakes = labels == 1
    maps = cam_maps(patch_detector, images[fakes], layer=layer)
    for heat, (y, x) in zip(maps, boxes[fakes].tolist()):
        inside = np.zeros_like(heat, dtype=bool)
        inside[y:y + 16, x:x + 16] = True
        # the last stage is 2x2 at 64 px, so its map is coarse; one stage earlier (4x4) is sharp
        assert heat[inside].mean() > min_ratio * heat[~inside].mean()


def test_an_ensemble_is_explained_through_its_first_member(patch_detector):
    torch.manual_seed(1)
    ensemble = Ensemble([patch_detector, build_model("resnet10t").eval()])  # a trained and an untrained member
    assert cam_target(ensemble) == CamTarget("members.0.layer4", "cnn")
    assert cam_grid(ensemble, (64, 96)) == cam_grid(patch_detector, (64, 96)) == (2, 3)
    images, labels, _ = _planted(8, seed=1)
    fakes = images[labels == 1]
    # the mean logit's gradient at member 0's layer is half member 0's own: the same map once scaled to [0, 1]
    np.testing.assert_allclose(cam_maps(ensemble, fakes), cam_maps(patch_detector, fakes), atol=1e-4)


# --- every backbone family: the right layer, the token grid, the input's size ---------------------------

FAMILIES = [  # name, build size, input size, family; MViTv2 and fixed-size ViTs take square inputs only
    ("mvitv2_tiny", 96, (96, 96), "mvitv2"),
    ("vit_tiny_patch16_224", 64, (64, 64), "vit"),
    ("vit_tiny_r_s16_p8_224", 64, (64, 64), "vit"),  # ResNet-stem hybrid: a ViT on CNN features
    ("efficientnet_b0", None, (64, 96), "cnn"),
]


@pytest.mark.parametrize("name,size,shape,family", FAMILIES)
def test_every_family_gets_maps_at_the_input_size_in_unit_range(name, size, shape, family):
    torch.manual_seed(0)
    model = build_model(name, image_size=size).eval()
    target = cam_target(model, shape)
    assert target.family == family
    images = torch.randn(3, 3, *shape)
    for method in ("gradcam", "layercam"):
        maps = cam_maps(model, images, method=method)
        assert maps.shape == (3, *shape)
        assert maps.min() >= 0 and maps.max() <= 1
        # random weights: one image's map may be flat (all of it scored against 'fake'), not every one
        assert max(m.std() for m in maps) > 0.05, method


def test_vit_tokens_keep_a_non_square_grid():
    model = timm.create_model("vit_tiny_patch16_224", img_size=(64, 96), num_classes=2).eval()
    target = cam_target(model, (64, 96))
    assert target.layer == f"blocks.{len(model.blocks) - 1}.norm1" and target.grid == (4, 6)
    assert cam_maps(model, torch.randn(2, 3, 64, 96)).shape == (2, 64, 96)


def test_token_reshape_drops_prefix_tokens_and_fills_rows_first():
    target = CamTarget("norm", "vit", prefix_tokens=1, grid=(2, 3))
    tokens = torch.arange(7.0).reshape(1, 7, 1).expand(1, 7, 4)  # token i carries the value i in every channel
    grid = target.reshape(tokens)
    assert grid.shape == (1, 4, 2, 3)
    assert grid[0, 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match="patch tokens"):
        target.reshape(torch.zeros(1, 9, 4))


def test_cnn_target_is_the_last_stage_and_transformers_hook_a_tensor_layer():
    cnn = build_model("mobilenetv2_100")
    assert cam_target(cnn).layer == "blocks.6" and cam_grid(cnn, (64, 96)) == (2, 3)
    mvit = build_model("mvitv2_tiny", image_size=64)
    assert cam_target(mvit) == CamTarget("norm", "mvitv2", 0, (2, 2))  # 64 px / 32
    assert available_methods(mvit) == ["gradcam", "layercam"]


# --- attention rollout ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("head_fusion,discard_ratio", [("mean", 0.0), ("max", 0.9), ("min", 0.5)])
def test_rollout_is_row_stochastic_and_maps_at_the_input_size(head_fusion, discard_ratio):
    torch.manual_seed(0)
    model = build_model("vit_tiny_patch16_224", image_size=64).eval()
    maps, joint = attention_rollout(model, torch.randn(2, 3, 64, 64), head_fusion=head_fusion,
                                    discard_ratio=discard_ratio)
    assert joint.shape == (2, 17, 17)  # class token + 4x4 patches
    torch.testing.assert_close(joint.sum(-1), torch.ones(2, 17))
    assert (joint >= 0).all()
    assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    assert all(m.std() > 0.01 for m in maps)
    assert all(block.attn.fused_attn == model.blocks[0].attn.fused_attn for block in model.blocks)  # restored


def test_rollout_multiplies_layers_of_residual_attention():
    uniform = torch.full((1, 2, 3, 3), 1 / 3)  # every token attends to all three equally, in each head
    joint = rollout([uniform, uniform])
    layer = (torch.full((3, 3), 1 / 3) + torch.eye(3)) / 2
    torch.testing.assert_close(joint[0], layer @ layer)
    with pytest.raises(ValueError):
        rollout([uniform], head_fusion="median")


def test_random_baselines_are_in_unit_range_per_pixel_or_on_a_coarse_grid():
    pixels = random_maps((2, 16, 24), seed=0)
    coarse = random_maps((2, 16, 24), seed=0, grid=(2, 3))
    for maps in (pixels, coarse):
        assert maps.shape == (2, 16, 24) and maps.min() >= 0 and maps.max() <= 1
    assert np.abs(np.diff(coarse, axis=-1)).max() < np.abs(np.diff(pixels, axis=-1)).max() / 2  # smooth


# --- choosing the images -----------------------------------------------------------------------------------

def test_outcome_selection_picks_confident_and_borderline_of_each_outcome():
    probs = [0.95, 0.7, 0.55, 0.05, 0.3, 0.45, 0.9, 0.52, 0.1, 0.48]
    labels = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    table = pd.DataFrame({"path": [f"{i}.png" for i in range(10)], "label": labels, "prob_fake_calibrated": probs})
    table["prediction"] = (table["prob_fake_calibrated"] >= 0.5).astype(int)
    chosen = select_outcomes(table, threshold=0.5, n_per_group=1)
    picked = {(o, s): p for o, s, p in zip(chosen["outcome"], chosen["selection"], chosen["path"])}
    assert picked == {
        ("TP", "confident"): "0.png", ("TP", "borderline"): "2.png",
        ("TN", "confident"): "3.png", ("TN", "borderline"): "5.png",
        ("FP", "confident"): "6.png", ("FP", "borderline"): "7.png",
        ("FN", "confident"): "8.png", ("FN", "borderline"): "9.png",
    }
    assert not chosen["path"].duplicated().any()
    assert outcomes(table).value_counts().to_dict() == {"TP": 3, "TN": 3, "FP": 2, "FN": 2}


# --- faithfulness --------------------------------------------------------------------------------------------

def test_gradcam_is_more_faithful_than_random_saliency_on_the_planted_patch(patch_detector):
    images, labels, _ = _planted(8, seed=3)
    fakes = images[labels == 1]
    curves = {method: deletion_insertion(patch_detector, fakes, saliency_maps(patch_detector, fakes, method), steps=8)
              for method in ("gradcam", "random", "random_grid")}
    assert curves["gradcam"]["deletion"].shape == (4, 9)
    assert np.allclose(curves["gradcam"]["deletion"][:, 0], curves["random"]["deletion"][:, 0])  # same start
    table = faithfulness_table(curves).set_index("method")
    assert table.loc["gradcam", "deletion_auc"] < table.loc["random", "deletion_auc"] - 0.01
    assert most_faithful(table.reset_index()) == "gradcam"


# --- the interactive browser -------------------------------------------------------------------------------

def test_browser_shows_the_chosen_group_image_and_method():
    table = pd.DataFrame({"outcome": ["TP", "FP", "TP"], "path": ["a", "b", "c"]})
    asked = []

    def maps_fn(row, method):
        asked.append((row["path"], method))
        return np.random.default_rng(0).random((8, 8))

    widget = browser(table, image_fn=lambda row: np.zeros((8, 8, 3), np.uint8), maps_fn=maps_fn,
                     methods=["gradcam", "layercam"], title_fn=lambda row: row["path"])
    group, index, method = widget.children[0].children
    assert asked == [("a", "gradcam")] and index.max == 1
    index.value = 1
    method.value = "layercam"
    group.value = "FP"
    assert asked == [("a", "gradcam"), ("c", "gradcam"), ("c", "layercam"), ("b", "layercam")]
    assert index.max == 0
