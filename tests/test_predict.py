"""`python -m dfcore predict`: images, folders and videos scored with a checkpoint's own rule and crop settings."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dfcore.__main__ import main
from dfcore.checkpoint import load_checkpoint, save_checkpoint
from dfcore.datasets import CropSettings
from dfcore.evaluation.decision import DecisionRule, save_decision_rule
from dfcore.evaluation.groups import confident_mean
from dfcore.inference import Predictor, predict
from dfcore.models import build_model, save_ensemble
from conftest import PREDICT_CROP, ROOT, face_photo


def _run(*args):
    return subprocess.run([sys.executable, "-m", "dfcore", "predict", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_image_record_has_faces_boxes_landmarks_and_the_calibrated_verdict(checkpoint, inputs):
    predictor = Predictor.load(checkpoint)
    record, crops, _ = predictor(inputs / "face.jpg")
    assert record["kind"] == "image" and record["threshold"] == 0.5 and "best.decision.json" in record["threshold_source"]
    (face,) = record["faces"]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0 <= face["prob_fake"] <= 1
    assert record["prob_fake"] == face["prob_fake"]
    assert record["decision"] == ("FAKE" if face["prob_fake"] >= 0.5 else "REAL")
    assert crops[0].shape == (64, 64, 3)  # cut with the checkpoint's crop settings
    with torch.inference_mode():  # calibrated: the logit margin divided by the temperature of 2
        x = predictor.transform(image=crops[0])["image"][None]
        logits = predictor.model(x)[0]
    assert face["prob_fake"] == pytest.approx(float(torch.sigmoid((logits[1] - logits[0]) / 2)), abs=1e-5)


def test_a_rule_fitted_with_flip_tta_makes_predict_flip_too(checkpoint, inputs):
    predictor = Predictor.load(checkpoint)
    crops = predictor(inputs / "face.jpg")[1]
    x = predictor.transform(image=crops[0])["image"][None]
    with torch.inference_mode():
        both = (predictor.model(x) + predictor.model(x.flip(-1)))[0] / 2
    predictor.study = predictor.study.with_rule(DecisionRule(temperature=2.0, threshold=0.5, rule="eer", fitted_on="val",
                                                             flip=True))
    assert predictor.score(crops)[0] == pytest.approx(float(torch.sigmoid((both[1] - both[0]) / 2)), abs=1e-5)
    assert predictor.describe()["flip_tta"] is True


def test_several_faces_each_scored_and_the_most_suspicious_decides(checkpoint, inputs):
    record, _, _ = Predictor.load(checkpoint)(inputs / "two.png")
    probs = [f["prob_fake"] for f in record["faces"]]
    assert len(probs) == 1  # keep='largest' in the checkpoint's settings
    all_faces = Predictor.load(checkpoint)
    all_faces.crop = CropSettings(**PREDICT_CROP, keep="all")
    all_faces.detector = type(all_faces.detector)(all_faces.crop)
    record, _, _ = all_faces(inputs / "two.png")
    probs = [f["prob_fake"] for f in record["faces"]]
    assert len(probs) == 2 and record["prob_fake"] == max(probs) and probs == sorted(probs, reverse=True)


def test_video_verdict_is_the_aggregation_of_its_frame_scores(checkpoint, inputs):
    for aggregate in ("confident", "mean"):
        record, _, rows = Predictor.load(checkpoint, frames=5, aggregate=aggregate)(inputs / "clip.mp4")
        frames = np.array([r["prob_fake"] for r in record["frames"]])
        assert record["frames_sampled"] == 5 and record["frames_with_face"] == 5 and len(rows) == 5
        assert [r["frame"] for r in record["frames"]] == [0, 2, 4, 7, 9]
        expected = {"mean": frames.mean(), "confident": confident_mean(frames)}[aggregate]
        assert record["aggregation"]["reported"] == aggregate
        assert record["prob_fake"] == pytest.approx(expected, abs=1e-5)
        agree = np.mean((frames >= 0.5) == (record["decision"] == "FAKE"))
        assert record["consistency"]["agreeing_share"] == pytest.approx(agree, abs=1e-4)


@pytest.mark.slow  # the command line, in a subprocess
def test_bad_inputs_get_their_own_error_and_the_rest_are_scored(checkpoint, inputs, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(tmp_path / "blank.png")
    run = _run(inputs / "face.jpg", tmp_path / "empty.jpg", tmp_path / "text.png", tmp_path / "broken.mp4",
               tmp_path / "blank.png", tmp_path / "missing.jpg", "--checkpoint", checkpoint)
    assert run.returncode == 1, run.stderr
    records = {r["path"].split("/")[-1]: r for r in map(json.loads, run.stdout.splitlines())}
    assert records["face.jpg"]["decision"] in ("REAL", "FAKE") and "error" not in records["face.jpg"]
    assert "empty" in records["empty.jpg"]["error"]
    assert "text.png" in records["text.png"]["error"] and "broken.mp4" in records["broken.mp4"]["error"]
    assert records["blank.png"]["faces"] == [] and "no face" in records["blank.png"]["reason"]
    assert "does not exist" in records["missing.jpg"]["error"]
    assert "could not be scored" in run.stderr and "face.jpg" in run.stderr  # the summary table


def test_odd_image_modes_and_large_images_are_converted(checkpoint, tmp_path):
    rgb = face_photo(320)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(np.kron(rgb, np.ones((16, 16, 1), np.uint8))).save(tmp_path / "huge.jpg")  # 5120 x 5120
    for record in predict([tmp_path], checkpoint):
        assert record["decision"] in ("REAL", "FAKE") and len(record["faces"]) == 1, record


@pytest.mark.slow  # the command line, in a subprocess
def test_folder_output_files_cams_and_timelines_and_no_silent_overwrite(checkpoint, inputs, tmp_path):
    out = tmp_path / "out"
    run = _run(inputs, "--checkpoint", checkpoint, "--out", out, "--cam", "--frames", "4")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["path"].split("/")[-1] for r in records] == ["clip.mp4", "face.jpg", "two.png"]  # notes.txt skipped
    assert (out / "predictions.jsonl").read_text().splitlines() == run.stdout.splitlines()
    video = records[0]
    for png in (video["timeline"], video["cam"], records[1]["cam"]):
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert pixels.std() > 10, png
    again = _run(inputs, "--checkpoint", checkpoint, "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "predictions.jsonl").read_text().splitlines() == run.stdout.splitlines()


def test_results_are_identical_across_runs(checkpoint, inputs):
    first = predict([inputs], checkpoint, frames=4)
    assert predict([inputs], checkpoint, frames=4) == first


def test_no_detect_scores_the_whole_image(checkpoint, inputs):
    record = predict([inputs / "face.jpg"], checkpoint, detect=False)[0]
    assert record["faces"][0]["box"] == [0, 0, 320, 320] and record["faces"][0]["landmarks"] is None


@pytest.mark.slow  # the command line, in a subprocess
def test_checkpoint_problems_exit_2_naming_the_file_and_the_fix(checkpoint, inputs, tmp_path):
    run = _run(inputs / "face.jpg", "--checkpoint", tmp_path / "nope.pt")
    assert run.returncode == 2 and "nope.pt does not exist" in run.stderr
    no_rule = tmp_path / "norule.pt"
    no_rule.write_bytes(checkpoint.read_bytes())
    run = _run(inputs / "face.jpg", "--checkpoint", no_rule)
    assert run.returncode == 2 and "norule.decision.json" in run.stderr and "notebook 05" in run.stderr

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "dfcore-checkpoint-v1", "x": Exploit()}))
    run = _run(inputs / "face.jpg", "--checkpoint", evil)
    assert run.returncode == 2 and "evil.pt is not a checkpoint this study can read" in run.stderr
    assert "pwned" not in run.stdout + run.stderr
    plain = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    run = _run(inputs / "face.jpg", "--checkpoint", plain)
    assert run.returncode == 2 and "not a dfcore checkpoint" in run.stderr


@pytest.mark.slow  # the command line, in a subprocess
def test_python_function_equals_the_command(checkpoint, inputs):
    run = _run(inputs / "face.jpg", "--checkpoint", checkpoint)
    assert [json.loads(line) for line in run.stdout.splitlines()] == predict([inputs / "face.jpg"], checkpoint)
    assert main(["predict", str(inputs / "face.jpg"), "--checkpoint", str(checkpoint), "--cam"]) == 2  # needs --out


def test_overwrite_replaces_the_old_run_only_once_the_checkpoint_loads(checkpoint, inputs, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(inputs / "face.jpg"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--cam"]) == 0
    cams = sorted((out / "cams").iterdir())
    assert len(cams) == 1
    assert main(["predict", str(inputs / "face.jpg"), "--checkpoint", str(tmp_path / "typo.pt"), "--out", str(out),
                 "--overwrite"]) == 2
    assert sorted((out / "cams").iterdir()) == cams  # a bad checkpoint loses nothing
    assert main(["predict", str(inputs / "face.jpg"), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--overwrite"]) == 0
    assert not (out / "cams").exists() and len((out / "predictions.jsonl").read_text().splitlines()) == 1


def test_a_study_folder_is_scored_with_its_ensemble_when_it_has_one(checkpoint, inputs, tmp_path):
    study = tmp_path / "reports" / "p"
    (study / "checkpoints" / "phase2").mkdir(parents=True)
    single = study / "checkpoints" / "phase2" / "best.pt"
    single.write_bytes(checkpoint.read_bytes())
    save_decision_rule(DecisionRule(temperature=2.0, threshold=0.5, rule="eer", fitted_on="val"), single)
    assert Predictor.load(study).checkpoint == single
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint({**load_checkpoint(checkpoint), "model": build_model("resnet10t", image_size=32).state_dict()},
                    other)
    ensemble = save_ensemble([single, other], study / "checkpoints" / "ensemble.pt")
    save_decision_rule(DecisionRule(temperature=1.0, threshold=0.5, rule="eer", fitted_on="val"), ensemble)
    predictor = Predictor.load(study)
    assert predictor.checkpoint == ensemble and predictor.backbone == "resnet10t + resnet10t"
    record = predictor(inputs / "face.jpg")[0]
    assert record["decision"] in ("REAL", "FAKE") and record["prob_fake"] != Predictor.load(single)(
        inputs / "face.jpg")[0]["prob_fake"]


def _study_with_temporal_head(folder, checkpoint, threshold=0.3):
    """A study's reports folder as notebooks 04 and 05 leave it on videos: the phase-2 model and its rule, and a
    temporal head on its embeddings with the rule fitted on validation videos."""
    import shutil

    from dfcore.models.temporal import TemporalHead
    from dfcore.datasets.faces import sha256_file

    phase2 = folder / "checkpoints" / "phase2" / "best.pt"
    phase2.parent.mkdir(parents=True)
    shutil.copy(checkpoint, phase2)
    shutil.copy(checkpoint.with_name("best.decision.json"), phase2.with_name("best.decision.json"))
    torch.manual_seed(0)
    dim = build_model("resnet10t", image_size=32).num_features
    head = TemporalHead("gru", dim, hidden=16)
    path = folder / "checkpoints" / "temporal" / "study.pt"
    save_checkpoint({"kind": "temporal", "head": "gru", "in_dim": dim, "hidden": 16, "max_frames": 64,
                     "embedding_checkpoint": "checkpoints/phase2/best.pt", "embedding_sha256": sha256_file(phase2),
                     "model": head.state_dict()}, path)
    save_decision_rule(DecisionRule(temperature=1.5, threshold=threshold, rule="eer", fitted_on="val"), path)
    return head.eval(), phase2


def test_a_study_with_a_temporal_head_judges_videos_by_it_and_still_lists_the_frames(checkpoint, inputs, tmp_path):
    from dfcore.trainers.temporal import frame_features

    head, _ = _study_with_temporal_head(tmp_path, checkpoint)
    predictor = Predictor.load(tmp_path, frames=5)
    record, crops, rows = predictor(inputs / "clip.mp4")
    assert predictor.describe()["temporal_head"] == "gru" and record["verdict_by"].startswith("temporal head (gru)")
    with torch.inference_mode():
        x = torch.stack([predictor.transform(image=c)["image"] for c in crops])
        logits, weights = head(frame_features(predictor.model, x)[0][None])
    expected = float(torch.sigmoid((logits[0, 1] - logits[0, 0]) / 1.5))
    assert record["prob_fake"] == pytest.approx(expected, abs=1e-5) and record["threshold"] == 0.3
    assert record["decision"] == ("FAKE" if expected >= 0.3 else "REAL")
    assert [r["temporal_weight"] for r in rows] == pytest.approx(weights[0].tolist(), abs=1e-5)
    assert len(record["frames"]) == 5 and set(record["aggregation"]) >= {"mean", "confident"}
    image, _, _ = predictor(inputs / "face.jpg")  # images are still judged by the frame model at its threshold
    assert image["threshold"] == 0.5 and "verdict_by" not in image
    plain, _, _ = Predictor.load(tmp_path, frames=5, temporal=False)(inputs / "clip.mp4")
    assert plain["prob_fake"] == pytest.approx(confident_mean([r["prob_fake"] for r in plain["frames"]]), abs=1e-5)


def test_a_temporal_head_of_an_older_phase_2_model_is_refused_with_the_fix(checkpoint, tmp_path):
    from dfcore.checkpoint import CheckpointError

    _, phase2 = _study_with_temporal_head(tmp_path, checkpoint)
    state = load_checkpoint(phase2)
    save_checkpoint({**state, "epoch": 99}, phase2)  # phase 2 trained again: other bytes
    save_decision_rule(DecisionRule(temperature=2.0, threshold=0.5, rule="eer", fitted_on="val"), phase2)
    with pytest.raises(CheckpointError, match="re-run notebook 04"):
        Predictor.load(tmp_path)
