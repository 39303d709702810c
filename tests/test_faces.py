"""Videos in, face crops out: frame sampling, face detection and crops, the crop cache, bad videos."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfcore.datasets import (CropSettings, DataError, FaceDetector, VideoError, build_manifest, crop_data_root,
                             crop_face, holds_videos, read_frames)
from dfcore.datasets.faces import Face, read_image_rgb
from dfcore.datasets.video import even_indices
from conftest import face_photo, write_video

FAST = CropSettings(frames_per_video=4, size=64, min_face=30)


def test_even_indices_spread_over_the_video_first_and_last_included():
    assert even_indices(20, 5) == [0, 5, 10, 14, 19]
    assert even_indices(3, 8) == [0, 1, 2]
    assert even_indices(0, 8) == []


def test_read_frames_returns_the_sampled_frames_in_order(tmp_path):
    video = read_frames(write_video(tmp_path / "v.mp4", frames=20), 5)
    assert video.indices == [0, 5, 10, 14, 19] and video.frame_count == 20
    levels = [int(np.median(f[4:20, 4:20])) for f in video.frames]  # the grey square marks the frame
    assert np.allclose(levels, [10 * i for i in video.indices], atol=8), levels
    assert video.frames[0].shape == (320, 320, 3) and video.frames[0].dtype == np.uint8


def test_a_video_shorter_than_n_gives_what_it_has(tmp_path):
    assert read_frames(write_video(tmp_path / "short.mp4", frames=3), 16).indices == [0, 1, 2]


def test_undecodable_and_empty_videos_are_named(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    for name in ("empty.mp4", "junk.mp4", "missing.mp4"):
        with pytest.raises(VideoError, match=name):
            read_frames(tmp_path / name, 4)


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_detectors_find_the_one_face(detector):
    faces = FaceDetector(CropSettings(detector=detector, min_face=30))(face_photo(320))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 95 < (x1 + x2) / 2 < 175 and 20 < (y1 + y2) / 2 < 110  # the astronaut's face, top middle
    assert (faces[0].landmarks is not None and len(faces[0].landmarks) == 5) == (detector == "mtcnn")


def test_no_face_in_noise_and_small_faces_are_dropped():
    noise = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    assert FaceDetector(CropSettings(min_face=30))(noise) == []
    assert FaceDetector(CropSettings(min_face=150))(face_photo(320)) == []


def test_crop_is_square_with_margin_shifted_inside_and_landmarks_follow():
    image = np.zeros((200, 300, 3), np.uint8)
    face = Face((10.0, 50.0, 60.0, 100.0), 1.0, ((20.0, 60.0),) * 5)  # 50 px, near the left edge
    crop, landmarks = crop_face(image, face, margin=0.5, size=50)
    assert crop.shape == (50, 50, 3)
    # a 100 px square centred on the face would start at x = -15: shifted to x = 0, y = 25
    assert landmarks[0] == [20 * 0.5, (60 - 25) * 0.5]
    big = Face((0.0, 0.0, 190.0, 190.0), 1.0)
    crop, _ = crop_face(image, big, margin=0.3, size=64)  # larger than the image: padded, not clipped
    assert crop.shape == (64, 64, 3)


def test_grey_rgba_cmyk_and_16_bit_images_read_as_rgb(tmp_path):
    from PIL import Image

    rgb = face_photo(64)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "deep.png")
    for name in ("grey.png", "rgba.png", "cmyk.jpg", "deep.png"):
        image = read_image_rgb(tmp_path / name)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8, name
        assert abs(float(image.mean()) - float(rgb.mean())) < 40, name
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DataError, match="text.jpg"):
        read_image_rgb(tmp_path / "text.jpg")


@pytest.fixture
def video_root(tmp_path):
    """Kaggle layout of videos: two per split and class, fakes drifting from their own start frame."""
    root = tmp_path / "videos"
    variant = 0
    for split in ("Train", "Validation", "Test"):
        for cls in ("Real", "Fake"):
            for i in range(2 if split == "Train" else 1):
                write_video(root / split / cls / f"{cls.lower()}_{i}.mp4", frames=6 + i, variant=variant)
                variant += 1
    return root


def test_video_root_becomes_face_crops_grouped_by_video(video_root, tmp_path):
    assert holds_videos(video_root)
    result = crop_data_root(video_root, tmp_path / "faces", FAST, progress=False)
    assert result.failed == [] and len(result.sources) == 8
    assert (result.sources["frames_with_face"] == result.sources["frames"]).all()
    crops = result.crops
    assert len(crops) == 4 * 8 and crops["path"].str.endswith(".jpg").all()
    assert (crops["group"] == crops["video"]).all()  # no metadata: each video is its own group
    manifest = build_manifest(result.root).manifest
    assert len(manifest) == 32 and (manifest["width"] == 64).all()
    assert manifest.groupby("group")["split"].nunique().max() == 1
    assert manifest.groupby("group").size().eq(4).all()  # the frames of a video share its group
    landmarks = json.loads(manifest["landmarks"].iloc[0])
    assert len(landmarks) == 5 and all(0 <= v <= 64 for point in landmarks for v in point)
    # the Kaggle file names repeat across splits: the groups must not
    assert manifest.loc[manifest["split"] == "test", "group"].str.startswith("Test/").all()


def test_bad_videos_are_named_and_left_out_the_rest_go_on(video_root, tmp_path):
    (video_root / "Train" / "Fake" / "broken.mp4").write_bytes(b"not a video at all")
    (video_root / "Train" / "Fake" / "zero.mp4").write_bytes(b"")
    write_video(video_root / "Train" / "Real" / "noise.mp4", frames=4, face=False)
    with pytest.warns(UserWarning, match="Left out 3 of 11"):
        result = crop_data_root(video_root, tmp_path / "faces", FAST, progress=False)
    failed = dict(result.failed)
    assert set(failed) == {"Train/Fake/broken.mp4", "Train/Fake/zero.mp4", "Train/Real/noise.mp4"}
    assert "no face" in failed["Train/Real/noise.mp4"] and "broken.mp4" in failed["Train/Fake/broken.mp4"]
    assert set(result.crops["video"]) == set(result.sources["path"]) - set(failed)


def test_crops_are_reused_until_the_video_or_the_settings_change(video_root, tmp_path):
    first = crop_data_root(video_root, tmp_path / "faces", FAST, progress=False)
    crop = first.root / first.crops["path"].iloc[0]
    stamp = crop.stat().st_mtime_ns
    again = crop_data_root(video_root, tmp_path / "faces", FAST, progress=False)
    assert again.sources["reused"].all() and crop.stat().st_mtime_ns == stamp
    assert again.crops.equals(first.crops)
    write_video(video_root / "Train" / "Real" / "real_0.mp4", frames=9, variant=9)  # new content, same name
    changed = crop_data_root(video_root, tmp_path / "faces", FAST, progress=False)
    assert changed.sources.set_index("path")["reused"].to_dict() == {p: p != "Train/Real/real_0.mp4"
                                                                    for p in changed.sources["path"]}
    bigger = crop_data_root(video_root, tmp_path / "faces", CropSettings(frames_per_video=2, size=48, min_face=30),
                            progress=False)
    assert not bigger.sources["reused"].any() and len(bigger.crops) == 2 * 8
    assert len(list((tmp_path / "faces").rglob("*.jpg"))) == 16  # the old crops are gone


def test_metadata_source_video_keeps_a_fake_with_its_real(tmp_path):
    root = tmp_path / "plain"
    for i in range(4):
        write_video(root / "real" / f"orig{i}.mp4", frames=5, variant=i)
        write_video(root / "fake" / f"swap{i}.mp4", frames=5, variant=i + 4)
    pd.DataFrame({"path": [f"fake/swap{i}.mp4" for i in range(4)] + [f"real/orig{i}.mp4" for i in range(4)],
                  "source_video": [f"orig{i}" for i in range(4)] * 2}).to_csv(root / "metadata.csv", index=False)
    result = crop_data_root(root, tmp_path / "faces", FAST, progress=False)
    assert "metadata.csv column 'source_video'" in result.group_rule
    manifest = build_manifest(result.root, split_ratios=(0.5, 0.25, 0.25)).manifest
    assert set(manifest["group"]) == {f"orig{i}" for i in range(4)}
    assert manifest.groupby("group")["split"].nunique().max() == 1
    assert manifest.groupby("group")["label"].nunique().min() == 2


def test_whole_photographs_are_cropped_like_video_frames(tmp_path):
    from PIL import Image

    root = tmp_path / "photos"
    for cls in ("real", "fake"):
        for i in range(3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(face_photo(320), 5 * i, axis=0)).save(root / cls / f"p{i}.png")
    result = crop_data_root(root, tmp_path / "faces", FAST, progress=False)
    assert (result.sources["kind"] == "photo").all() and len(result.crops) == 6
    assert not holds_videos(root)


def test_real_videos_sample_gives_faces_in_every_video(shared_dir, tmp_path):
    videos = shared_dir / "data" / "videos_sample"
    root = tmp_path / "root"
    for video in ("real/ffpp_c23_youtube_519.mp4", "fake/ffpp_c23_Deepfakes_519_515.mp4"):
        (root / video).parent.mkdir(parents=True, exist_ok=True)
        (root / video).symlink_to(videos / video)
    result = crop_data_root(root, tmp_path / "faces", CropSettings(frames_per_video=4), progress=False)
    assert result.failed == []
    assert (result.sources["frames_with_face"] == 4).all()
    assert len(result.crops) == 8


@pytest.mark.e2e
def test_notebook_01_turns_a_video_root_into_a_manifest_of_face_crops(video_root, tmp_path):
    import papermill
    from PIL import Image

    from conftest import ROOT

    out = tmp_path / "reports" / "videos"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "01_data_manifests.ipynb"), str(tmp_path / "01.ipynb"), kernel_name="python3",
        cwd=str(ROOT), progress_bar=False,
        parameters={"profile": "videos", "reports_root": str(tmp_path / "reports"), "data_dir": str(video_root),
                    "frames_per_video": 3, "crop_size": 64, "min_face_size": 30},
    )
    info = json.loads((out / "manifests" / "info.json").read_text())
    assert info["face_crop"]["frames_per_video"] == 3 and info["face_crop"]["size"] == 64
    assert info["data_root"] == (out / "faces").as_posix() and info["counts"] == {"train": 12, "val": 6, "test": 6}
    train = pd.read_csv(out / "manifests" / "train.csv")
    assert set(train["group"]) == {f"Train/{c}/{c.lower()}_{i}.mp4" for c in ("Real", "Fake") for i in (0, 1)}
    metrics = json.loads((out / "metrics" / "01_data_manifests.json").read_text())
    assert len(metrics["face_sources"]) == 8 and metrics["face_sources_left_out"] == []
    for name in ("01_faces_per_video", "01_faces_real", "01_faces_fake"):
        pixels = np.asarray(Image.open(out / "figures" / f"{name}.png").convert("L"), dtype=float)
        assert pixels.std() > 10, name


def test_a_root_of_videos_is_an_extra_evaluation_set_scored_per_video(tmp_path):
    from dfcore.evaluation import load_eval_set, scoring_units

    root = tmp_path / "cross"
    for i, cls in enumerate(("real", "fake")):
        write_video(root / "test" / cls / f"v{i}.mp4", frames=5, variant=i)
    with pytest.raises(DataError, match="crops_dir"):
        load_eval_set(root)
    name, manifest, crops_root = load_eval_set(root, crops_dir=tmp_path / "faces_eval", crop=FAST.as_dict())
    assert name == "cross" and crops_root == tmp_path / "faces_eval" / "cross"
    assert len(manifest) == 8 and set(manifest["split"]) == {"test"}
    units, kind = scoring_units(manifest)
    assert kind == "video" and set(units) == {"test/real/v0.mp4", "test/fake/v1.mp4"}


def test_an_extra_set_can_take_only_some_videos_of_a_folder_under_its_own_name(tmp_path):
    from dfcore.evaluation import load_eval_set

    root = tmp_path / "mixed"
    for i, name in enumerate(("real/ffpp_c23_a.mp4", "fake/ffpp_c23_b.mp4", "fake/dfdc_c.mp4")):
        write_video(root / name, frames=4, variant=i)
    name, manifest, _ = load_eval_set({"path": str(root), "include": "*/ffpp_c23_*", "name": "ffpp"},
                                      crops_dir=tmp_path / "faces_eval", crop=FAST.as_dict())
    assert name == "ffpp" and set(manifest["video"]) == {"real/ffpp_c23_a.mp4", "fake/ffpp_c23_b.mp4"}


def test_an_offset_moves_the_square_down_and_a_negative_margin_cuts_inside_the_box():
    image = np.zeros((200, 300, 3), np.uint8)
    face = Face((100.0, 50.0, 150.0, 100.0), 1.0, ((125.0, 75.0),) * 5)  # 50 px box, centre (125, 75)
    crop, landmarks = crop_face(image, face, margin=-0.2, size=30, offset=0.2)
    assert crop.shape == (30, 30, 3)
    # a 30 px square (50 * (1 - 0.4)), centred across at x = 110 and moved 10 px down (0.2 * 50) to y = 70
    assert landmarks[0] == [125 - 110, 75 - 70]
    with pytest.raises(ValueError, match="out of range"):
        CropSettings(margin=-0.5)


def _tight_crops(root: Path, margin: float, offset: float, size: int = 128) -> pd.DataFrame:
    """Writes the astronaut's face cut with ``margin`` and ``offset`` in a Kaggle layout (one image a split and class)."""
    from PIL import Image

    photo = face_photo(320)
    face = FaceDetector(CropSettings(min_face=30))(photo)[0]
    for i, split in enumerate(("Train", "Validation", "Test")):
        for k, cls in enumerate(("Real", "Fake")):
            crop, _ = crop_face(photo, face, margin=margin, size=size, offset=offset)
            crop[0, 0] = 2 * i + k  # distinct files
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop).save(root / split / cls / f"{cls}{i}.png")
    return build_manifest(root).manifest


def test_landmarks_of_pre_cropped_faces_are_found_once_and_give_back_the_crop_geometry(tmp_path, monkeypatch):
    from dfcore.datasets import faces, find_landmarks, matching_crop

    manifest = _tight_crops(tmp_path / "crops", margin=-0.15, offset=-0.1)
    real = (manifest["label"] == 0).to_numpy()
    found = find_landmarks(tmp_path / "crops", manifest, tmp_path / "landmarks.csv", which=real, progress=False)
    assert (found.loc[real, "landmarks"].map(lambda v: len(json.loads(v))) == 5).all()
    assert (found.loc[~real, "landmarks"] == "").all()  # only the rows asked for
    settings, geometry = matching_crop(found[real])
    # MTCNN on the crops finds about the box that cut them from the photograph (margin -0.16 for -0.15; without
    # the black border it gave -0.31, a box twice the true one), and the crop's centre above the box's
    assert -0.19 < settings.margin < -0.11 and -0.15 < settings.offset < 0.0 and settings.size == 128
    assert geometry["faces_measured"] == 3 and 0.6 < geometry["crop_side_over_face_side"] < 0.78

    def no_detector(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(faces, "FaceDetector", no_detector)
    again = find_landmarks(tmp_path / "crops", manifest, tmp_path / "landmarks.csv", which=real, progress=False)
    pd.testing.assert_frame_equal(again, found)
    with pytest.raises(DataError, match="match_crops"):
        matching_crop(found[~real])  # no face box in these rows


def test_an_extra_set_of_faces_cut_another_way_is_recropped_as_training_cut_them(tmp_path):
    from PIL import Image

    from dfcore.evaluation import load_eval_set, scoring_units

    root = tmp_path / "loose"
    for i, cls in enumerate(("real", "fake")):
        for k in range(2):
            (root / "test" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(face_photo(320), 9 * k + 4 * i, axis=0)).save(root / "test" / cls / f"{k}.png")
    name, as_given, given_root = load_eval_set(root)
    assert given_root == root and set(as_given["width"]) == {320}
    tight = CropSettings(margin=-0.1, size=48, min_face=30)
    name, recropped, crops_root = load_eval_set({"path": str(root), "recrop": True}, crops_dir=tmp_path / "faces_eval",
                                                crop=tight.as_dict())
    assert name == "loose" and crops_root == tmp_path / "faces_eval" / "loose"
    assert len(recropped) == 4 and set(recropped["width"]) == {48}
    assert scoring_units(recropped)[1] != "video"  # photos are not videos: each is its own unit, not a clip


@pytest.mark.e2e
def test_notebook_01_measures_pre_cropped_faces_for_landmarks_and_matching_crops(tmp_path):
    import papermill
    from PIL import Image

    from conftest import ROOT

    _tight_crops(tmp_path / "crops", margin=-0.15, offset=-0.1, size=96)
    out = tmp_path / "reports" / "tight"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "01_data_manifests.ipynb"), str(tmp_path / "01.ipynb"), kernel_name="python3",
        cwd=str(ROOT), progress_bar=False,
        parameters={"profile": "tight", "reports_root": str(tmp_path / "reports"), "data_dir": str(tmp_path / "crops"),
                    "face_landmarks": True, "match_crops": True, "min_face_size": 30},
    )
    info = json.loads((out / "manifests" / "info.json").read_text())
    assert info["data_root"] == str(tmp_path / "crops")  # the images as they came, not recropped
    assert -0.19 < info["face_crop"]["margin"] < -0.11 and info["face_crop"]["size"] == 96
    train = pd.read_csv(out / "manifests" / "train.csv", keep_default_na=False)
    real = train["label"] == 0
    assert (train.loc[real, "landmarks"] != "").all() and (train.loc[~real, "landmarks"] == "").all()
    assert (out / "faces" / "landmarks.csv").is_file()
    pixels = np.asarray(Image.open(out / "figures" / "01_face_geometry.png").convert("L"), dtype=float)
    assert pixels.std() > 10


def test_contact_sheets_show_one_crop_of_each_source_before_a_second():
    from dfcore.datasets import sample_crops

    crops = pd.DataFrame({"path": [f"real/a.mp4/f{i:06d}_0.jpg" for i in range(5)] + ["real/b.mp4/f000000_0.jpg",
                                                                                     "real/c.png/f000000_0.jpg"],
                          "video": ["real/a.mp4"] * 5 + ["real/b.mp4", ""]})
    first = sample_crops(crops, 3, seed=1)
    assert sorted(p.split("/")[1] for p in first["path"]) == ["a.mp4", "b.mp4", "c.png"]
    assert len(sample_crops(crops, 10)) == 7


def test_crops_of_photographs_are_scored_per_group_even_before_a_csv_round_trip():
    from dfcore.evaluation import scoring_units

    frames = pd.DataFrame({"group": ["a", "a", "b"], "video": ["", "", ""]})
    assert scoring_units(frames)[1] == "group"
    assert scoring_units(frames.assign(video=["v1", "v1", "v2"]))[1] == "video"
