import numpy as np
import pytest
import torch

from dfcore.explain import cam_maps, target_layer
from dfcore.models import build_model


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
    assert target_layer(patch_detector) == "layer4"


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
