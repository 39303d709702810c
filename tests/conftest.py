import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def write_image(path: Path, seed: int, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


@pytest.fixture
def kaggle_root(tmp_path) -> Path:
    """A tiny Kaggle-layout data root: Train/Validation/Test x Real/Fake, 3 distinct images each."""
    root = tmp_path / "kaggle"
    seed = 0
    for split in ("Train", "Validation", "Test"):
        for cls in ("Real", "Fake"):
            for i in range(3):
                seed += 1
                write_image(root / split / cls / f"{split[:2]}{cls[0]}{i}.jpg", seed)
    return root


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED
