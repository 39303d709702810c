import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """End-to-end tests are slow ones too: `-m "not slow"` leaves out both."""
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.slow)
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


def face_photo(size: int = 320) -> np.ndarray:
    """Returns scikit-image's astronaut photograph (one frontal face, about a sixth of the width) at ``size``."""
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


def write_video(path: Path, frames: int = 12, *, face: bool = True, size: int = 320, fps: float = 10.0,
                variant: int = 0) -> Path:
    """Writes a short MP4: the face photo (or noise, with ``face=False``) drifting a pixel a frame, frame ``i``
    marked by a grey square of level 10 * i in its top-left corner; ``variant`` moves the face down by
    7 px a step, so that videos of different variants share no frame."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    base = face_photo(size) if face else np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    base = np.roll(base, 7 * variant, axis=0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    assert writer.isOpened(), "OpenCV cannot write MP4 here"
    for i in range(frames):
        frame = np.roll(base, i, axis=1).copy()
        frame[:24, :24] = 10 * i
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def interrupt_at(monkeypatch):
    """Returns a function that makes the training loop stop (KeyboardInterrupt, as a kill would) when epoch ``n``
    starts, once; training after that runs normally."""
    from dfcore.trainers import loop

    reseed = loop.reseed_epoch

    def arm(n: int) -> None:
        def stop(loader, seed, epoch):
            if epoch == n:
                monkeypatch.setattr(loop, "reseed_epoch", reseed)
                raise KeyboardInterrupt
            reseed(loader, seed, epoch)

        monkeypatch.setattr(loop, "reseed_epoch", stop)

    return arm


PREDICT_CROP = {"frames_per_video": 4, "size": 64, "min_face": 30}  # CropSettings of the tiny predict checkpoint


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A small classifier checkpoint as notebooks 04 and 05 leave it: weights, crop settings, decision rule."""
    from dfcore import LABELS
    from dfcore.checkpoint import save_checkpoint
    from dfcore.datasets import CropSettings
    from dfcore.evaluation.decision import DecisionRule, save_decision_rule
    from dfcore.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet10t", image_size=32)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint({"kind": "classifier", "backbone": "resnet10t", "image_size": 32, "drop_rate": 0.0,
                     "label_map": LABELS, "model": model.state_dict(),
                     "face_crop": CropSettings(**PREDICT_CROP).as_dict()}, path)
    save_decision_rule(DecisionRule(temperature=2.0, threshold=0.5, rule="eer", fitted_on="val"), path)
    return path


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """A folder to predict on: one face photo, two faces side by side, a 10-frame video and a text file."""
    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(face_photo(320)).save(folder / "face.jpg")
    two = np.concatenate([face_photo(320), np.roll(face_photo(320), 40, axis=0)], axis=1)  # two faces side by side
    Image.fromarray(two).save(folder / "two.png")
    write_video(folder / "clip.mp4", frames=10)
    (folder / "notes.txt").write_text("not an image")
    return folder
