import hashlib

import pandas as pd

from dfcore.datasets import build_manifest, make_demo_set


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.jpg")}


def test_demo_set_is_deterministic_and_split_by_source(tmp_path):
    a = make_demo_set(tmp_path / "a", seed=3, image_size=32, crops_per_photo=4)
    b = make_demo_set(tmp_path / "b", seed=3, image_size=32, crops_per_photo=4)
    assert _digest(a) == _digest(b)
    m = build_manifest(a).manifest
    assert m.groupby("group")["split"].nunique().max() == 1  # no photograph crosses splits
    counts = m.groupby(["split", "label"]).size()
    assert (counts.xs(0, level="label") == counts.xs(1, level="label")).all()  # as many fakes as reals
    assert m.groupby("split")["group"].nunique().to_dict() == {"test": 2, "train": 13, "val": 2}


def test_fakes_are_manipulated_copies_not_the_real_images(tmp_path):
    root = make_demo_set(tmp_path / "demo", image_size=32, crops_per_photo=4)
    meta = pd.read_csv(root / "metadata.csv")
    real = _digest(root / "Train" / "Real")
    fake = _digest(root / "Train" / "Fake")
    assert set(real) == set(fake)  # each fake is made from the real crop of the same name
    assert all(real[name] != fake[name] for name in real)
    assert set(meta["label"]) == {"real", "fake"}


def test_demo_set_is_kept_when_settings_match_and_rebuilt_otherwise(tmp_path):
    root = make_demo_set(tmp_path / "demo", image_size=32, crops_per_photo=2)
    marker = root / "Train" / "Real" / "marker.txt"
    marker.write_text("kept")
    make_demo_set(tmp_path / "demo", image_size=32, crops_per_photo=2)
    assert marker.exists()
    make_demo_set(tmp_path / "demo", image_size=32, crops_per_photo=3)
    assert not marker.exists()
