import json
import shutil

import pandas as pd
import pytest

from dfcore.datasets import DataError, build_manifest, load_manifests, make_demo_set, save_manifests
from conftest import write_image


def test_kaggle_layout_labels_fake_as_one(kaggle_root):
    result = build_manifest(kaggle_root)
    m = result.manifest
    assert result.layout == "kaggle"
    assert list(m.columns) == ["path", "label", "split", "group", "sha256", "width", "height"]
    assert set(m["split"]) == {"train", "val", "test"}
    assert (m.loc[m["path"].str.contains("/Fake/"), "label"] == 1).all()
    assert (m.loc[m["path"].str.contains("/Real/"), "label"] == 0).all()
    assert m["path"].str.startswith(("Train/", "Validation/", "Test/")).all()
    assert (m["width"] == 32).all() and m["sha256"].str.len().eq(64).all()


def test_letter_case_of_folders_does_not_matter(kaggle_root, tmp_path):
    lower = tmp_path / "lower"
    for path in kaggle_root.rglob("*.jpg"):
        target = lower / path.relative_to(kaggle_root).as_posix().lower()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    assert len(build_manifest(lower).manifest) == len(build_manifest(kaggle_root).manifest)


def test_plain_layout_splits_by_group_without_crossing(tmp_path):
    root = tmp_path / "plain"
    for g in range(20):
        write_image(root / "real" / f"vid{g:02d}_a.png", seed=g)
        write_image(root / "fake" / f"vid{g:02d}_b.png", seed=100 + g)
    rows = [(f"real/vid{g:02d}_a.png", f"vid{g:02d}") for g in range(20)]
    rows += [(f"fake/vid{g:02d}_b.png", f"vid{g:02d}") for g in range(20)]
    pd.DataFrame(rows, columns=["path", "source_video"]).to_csv(root / "metadata.csv", index=False)
    m = build_manifest(root, split_ratios=(0.6, 0.2, 0.2), seed=1).manifest
    assert m.groupby("group")["split"].nunique().max() == 1
    assert m.groupby("split")["group"].nunique().to_dict() == {"test": 4, "train": 12, "val": 4}


def _plain_groups(root, n=6):
    for g in range(n):
        write_image(root / "real" / f"vid{g}_a.png", seed=g)
        write_image(root / "fake" / f"vid{g}_b.png", seed=100 + g)
    rows = [(f"{cls}/vid{g}_{s}.png", f"vid{g}") for g in range(n) for cls, s in (("real", "a"), ("fake", "b"))]
    pd.DataFrame(rows, columns=["path", "group"]).to_csv(root / "metadata.csv", index=False)


def test_named_groups_go_to_validation_and_test_and_the_rest_to_train(tmp_path):
    _plain_groups(tmp_path)
    m = build_manifest(tmp_path, split_groups={"val": ["vid1"], "test": ["vid4", "vid5"]}).manifest
    assert m.groupby("split")["group"].agg(lambda g: sorted(set(g))).to_dict() == {
        "train": ["vid0", "vid2", "vid3"], "val": ["vid1"], "test": ["vid4", "vid5"]}


@pytest.mark.parametrize("groups, message", [
    ({"val": ["vid1"], "test": ["vid9"]}, r"\['vid9'\], which are no group"),
    ({"val": ["vid1"], "test": []}, "both validation and test"),
    ({"val": ["vid1"], "test": ["vid1"]}, "named for both"),
])
def test_wrongly_named_groups_are_errors_that_name_them(tmp_path, groups, message):
    _plain_groups(tmp_path)
    with pytest.raises(DataError, match=message):
        build_manifest(tmp_path, split_groups=groups)


def test_metadata_label_that_disagrees_with_folder_is_an_error(kaggle_root):
    pd.DataFrame({"path": ["Train/Real/TrR0.jpg"], "label": ["fake"]}).to_csv(kaggle_root / "metadata.csv", index=False)
    with pytest.raises(DataError, match="TrR0.jpg"):
        build_manifest(kaggle_root)


def test_corrupt_image_is_named_and_left_out(kaggle_root):
    bad = kaggle_root / "Train" / "Fake" / "broken.jpg"
    data = (kaggle_root / "Train" / "Fake" / "TrF0.jpg").read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a truncated JPEG
    with pytest.warns(UserWarning, match="Train/Fake/broken.jpg"):
        result = build_manifest(kaggle_root)
    assert "Train/Fake/broken.jpg" not in set(result.manifest["path"])
    assert [p for p, _ in result.corrupt] == ["Train/Fake/broken.jpg"]


def test_duplicate_across_splits_stops_naming_both_files(kaggle_root):
    shutil.copy(kaggle_root / "Train" / "Real" / "TrR0.jpg", kaggle_root / "Test" / "Real" / "copy.jpg")
    with pytest.raises(DataError, match=r"(?s)Test/Real/copy.jpg.*Train/Real/TrR0.jpg|Train/Real/TrR0.jpg.*Test/Real/copy.jpg"):
        build_manifest(kaggle_root)


def test_on_leak_drop_keeps_the_training_copy_only(kaggle_root):
    shutil.copy(kaggle_root / "Train" / "Real" / "TrR0.jpg", kaggle_root / "Test" / "Real" / "copy.jpg")
    with pytest.warns(UserWarning, match="left out 1 images"):
        result = build_manifest(kaggle_root, on_leak="drop")
    paths = set(result.manifest["path"])
    assert "Train/Real/TrR0.jpg" in paths and "Test/Real/copy.jpg" not in paths
    assert list(result.dropped["path"]) == ["Test/Real/copy.jpg"]


def test_group_crossing_splits_stops(kaggle_root):
    pd.DataFrame({"path": ["Train/Real/TrR0.jpg", "Validation/Fake/VaF0.jpg"], "group": ["v1", "v1"]}).to_csv(
        kaggle_root / "metadata.csv", index=False)
    with pytest.raises(DataError, match="groups found in more than one split"):
        build_manifest(kaggle_root)


def test_empty_class_names_the_folder(kaggle_root):
    for path in (kaggle_root / "Validation" / "Fake").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="No readable fake images in the val split's Fake folder"):
        build_manifest(kaggle_root)


def test_missing_class_folder_and_wrong_layout_are_named(kaggle_root, tmp_path):
    shutil.rmtree(kaggle_root / "Test" / "Real")
    with pytest.raises(DataError, match="Test has no 'Real' folder"):
        build_manifest(kaggle_root)
    (tmp_path / "wrong" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="not a data root"):
        build_manifest(tmp_path / "wrong")
    with pytest.raises(DataError, match="does not exist"):
        build_manifest(tmp_path / "nowhere")


def test_save_and_load_round_trip(kaggle_root, tmp_path):
    result = build_manifest(kaggle_root)
    save_manifests(result, tmp_path / "manifests")
    frames, root = load_manifests(tmp_path / "manifests")
    assert root == kaggle_root
    for split, frame in frames.items():  # each file holds exactly its split's rows, every column intact
        expected = result.manifest[result.manifest["split"] == split].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    assert sum(len(f) for f in frames.values()) == len(result.manifest) == 18


def test_planted_corrupt_jpeg_and_duplicate_in_a_copy_of_the_demo_set(tmp_path):
    root = make_demo_set(tmp_path / "demo", image_size=32, crops_per_photo=2)
    train_real = sorted((root / "Train" / "Real").iterdir())[0]
    shutil.copy(train_real, root / "Validation" / "Real" / "planted_duplicate.jpg")
    (root / "Test" / "Fake" / "planted_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.warns(UserWarning, match="planted_corrupt.jpg"), pytest.raises(DataError, match="planted_duplicate.jpg"):
        build_manifest(root)


def test_real_dfdc_faces_small_is_leakage_free(shared_dir):
    root = shared_dir / "data" / "dfdc_faces_small"
    result = build_manifest(root)
    m = result.manifest
    counts = m.groupby(["split", "label"]).size().to_dict()
    assert counts == {("test", 0): 500, ("test", 1): 500, ("train", 0): 2997, ("train", 1): 3000,
                      ("val", 0): 500, ("val", 1): 500}
    assert m.groupby("group")["split"].nunique().max() == 1
    assert m["group"].nunique() < len(m)  # groups come from metadata.csv's source_video


def _kaggle_named(root, per_class=4):
    """The Kaggle set's naming: fake_0.jpg, real_0.jpg ... afresh in every split, different pictures."""
    seed = 1000
    for split in ("Train", "Validation", "Test"):
        for cls in ("Real", "Fake"):
            for i in range(per_class):
                seed += 1
                write_image(root / split / cls / f"{cls.lower()}_{i}.jpg", seed)
    return root


def test_kaggle_file_names_repeated_in_every_split_are_not_groups(tmp_path):
    result = build_manifest(_kaggle_named(tmp_path / "kaggle"))
    m = result.manifest
    assert len(m) == 24 and m["group"].nunique() == 24  # each file its own group: its path
    assert (m["group"] == m["path"]).all()
    assert "each its own group" in result.group_rule


def test_a_true_duplicate_is_still_caught_under_kaggle_names(tmp_path):
    root = _kaggle_named(tmp_path / "kaggle")
    shutil.copy(root / "Train" / "Fake" / "fake_1.jpg", root / "Test" / "Fake" / "fake_3.jpg")
    with pytest.raises(DataError, match="identical files"):
        build_manifest(root)


def test_plain_layout_frames_of_one_video_share_a_group(tmp_path):
    root = tmp_path / "plain"
    seed = 0
    for v in range(10):
        for f in range(3):
            seed += 1
            write_image(root / "real" / f"clip{v:02d}_{f:04d}.jpg", seed)  # <video>_<frame>.jpg
            write_image(root / "fake" / f"swap{v:02d}" / f"frame_{f:04d}.jpg", seed + 500)  # <video>/frame_N.jpg
    result = build_manifest(root, split_ratios=(0.6, 0.2, 0.2))
    m = result.manifest
    assert m["group"].nunique() == 20 and m.groupby("group").size().eq(3).all()
    assert m.groupby("group")["split"].nunique().max() == 1
    assert "sub-folder per video" in result.group_rule and "<video>_<frame>" in result.group_rule


def test_plain_layout_counters_are_not_videos(tmp_path):
    root = tmp_path / "plain"
    for cls in ("real", "fake"):
        for i in range(10):
            write_image(root / cls / f"{cls}_{i}.jpg", 100 * (cls.lower() == "fake") + i)
    result = build_manifest(root)
    assert result.manifest["group"].nunique() == 20  # real_0 ... are counters: each file its own group
    assert result.group_rule == "20 files: each its own group (its path)"


def test_evaluation_only_sets_need_no_training_split(tmp_path):
    root = tmp_path / "eval"
    for cls in ("Real", "Fake"):
        for i in range(3):
            write_image(root / "test" / cls / f"{i}.png", 100 * (cls.lower() == "fake") + i)
    with pytest.raises(DataError, match="none for 'train'"):
        build_manifest(root)
    m = build_manifest(root, eval_only=True).manifest
    assert set(m["split"]) == {"test"} and len(m) == 6
    plain = tmp_path / "plain"
    write_image(plain / "real" / "a.png", 1)
    write_image(plain / "fake" / "b.png", 2)
    assert set(build_manifest(plain, eval_only=True).manifest["split"]) == {"test"}


def test_a_root_of_videos_says_to_crop_faces_first(tmp_path):
    (tmp_path / "v" / "real").mkdir(parents=True)
    (tmp_path / "v" / "fake").mkdir(parents=True)
    (tmp_path / "v" / "real" / "a.mp4").write_bytes(b"x")
    with pytest.raises(DataError, match="1 videos: notebook 01 crops their faces"):
        build_manifest(tmp_path / "v")


def test_the_run_key_of_manifests_changes_with_their_landmarks(kaggle_root):
    from dfcore.datasets import manifests_sha256

    frames = {s: build_manifest(kaggle_root).manifest.query("split == @s") for s in ("train", "val", "test")}
    plain = manifests_sha256(frames)
    assert manifests_sha256({**frames, "train": frames["train"].assign(landmarks="")}) == plain  # none found
    marked = frames["train"].assign(landmarks=json.dumps([[1, 2]] * 5))
    assert manifests_sha256({**frames, "train": marked}) != plain
