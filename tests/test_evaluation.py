import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_image
from scipy.special import logit
from sklearn import metrics as skm

from dfcore.checkpoint import CheckpointError
from dfcore.datasets import build_manifest, save_manifests
from dfcore.evaluation import (
    CORRUPTIONS,
    DecisionRule,
    Scorer,
    Scores,
    aggregate_groups,
    classification_report_table,
    confident_mean,
    corruption,
    decision_path,
    evaluate_set,
    fit_decision_rule,
    fit_temperature,
    fit_threshold,
    load_decision_rule,
    load_eval_set,
    load_eval_sets,
    predictions_table,
    robustness_sweep,
    save_decision_rule,
)


def _scores(split, margin, labels):
    margin = np.asarray(margin, dtype=float)
    return Scores(split, np.asarray(labels), np.stack([np.zeros_like(margin), margin], 1))


def _noisy(split="val", n=4000, temperature=2.0, seed=0):
    """Scores whose true P(fake) is sigmoid(margin / temperature): the right temperature is known."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 4, n)
    labels = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-margin / temperature))).astype(int)
    return _scores(split, margin, labels)


@pytest.mark.parametrize("split", ["test", "train", "dfdc_faces_small", "test/jpeg30"])
def test_nothing_is_fitted_on_any_split_but_validation(split):
    scores = _noisy(split)
    for fit in (fit_temperature, fit_threshold, fit_decision_rule):
        with pytest.raises(ValueError, match="fitted on the 'val' split only"):
            fit(scores)


def test_temperature_scaling_recovers_a_known_temperature_and_lowers_log_loss():
    val = _noisy(temperature=2.0)
    temperature = fit_temperature(val)
    assert temperature == pytest.approx(2.0, rel=0.1)
    assert skm.log_loss(val.label, val.prob(temperature)) < skm.log_loss(val.label, val.prob())


def test_a_degenerate_temperature_is_reported_and_not_applied():
    separable = _scores("val", [-5, -4, -3, 3, 4, 5], [0, 0, 0, 1, 1, 1])
    with pytest.warns(UserWarning, match="not applied"):
        rule = fit_decision_rule(separable)
    assert rule.temperature == 1.0
    assert not 0.05 <= rule.fitted_temperature <= 20
    assert rule.predict(separable).tolist() == [0, 0, 0, 1, 1, 1]


def test_thresholds_are_the_validation_eer_point_or_best_f1():
    val = _noisy(n=600, temperature=1.0, seed=2)
    probs = val.prob()
    eer_t = fit_threshold(val, rule="eer")
    fpr = np.mean(probs[val.label == 0] >= eer_t)
    fnr = np.mean(probs[val.label == 1] < eer_t)
    assert abs(fpr - fnr) < 0.02
    f1_t = fit_threshold(val, rule="f1")
    best = max(skm.f1_score(val.label, probs >= t) for t in np.unique(probs))
    assert skm.f1_score(val.label, probs >= f1_t) == pytest.approx(best)
    with pytest.raises(ValueError, match="rule"):
        fit_threshold(val, rule="youden")


def test_the_threshold_is_fitted_on_calibrated_probabilities():
    val = _noisy(temperature=3.0, seed=4)
    rule = fit_decision_rule(val, rule="eer")
    assert rule.fitted_on == "val" and rule.rule == "eer"
    # temperature scaling is monotonic: the calibrated threshold is the raw one moved by the temperature
    raw = fit_threshold(val, rule="eer")
    assert logit(rule.threshold) * rule.temperature == pytest.approx(logit(raw), rel=1e-6)


def test_the_decision_rule_is_stored_with_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights v1")
    with pytest.warns(UserWarning, match="No decision rule"):
        assert load_decision_rule(checkpoint) == DecisionRule()
    rule = DecisionRule(1.7, 0.42, "f1", "val", 1.7)
    assert save_decision_rule(rule, checkpoint) == decision_path(checkpoint) == tmp_path / "best.decision.json"
    assert load_decision_rule(checkpoint) == rule
    checkpoint.write_bytes(b"weights v2")
    with pytest.raises(CheckpointError, match="another version"):
        load_decision_rule(checkpoint)


def test_confident_mean_uses_confident_frames_only_when_enough_exceed_t():
    assert confident_mean([0.9, 0.95, 0.1, 0.2], t=0.8, min_share=0.4) == pytest.approx(0.925)
    assert confident_mean([0.9, 0.1, 0.2, 0.3], t=0.8, min_share=0.4) == pytest.approx(0.375)
    assert confident_mean([0.1, 0.2], t=0.8, min_share=0.0) == pytest.approx(0.15)


def test_groups_are_aggregated_per_group_and_label():
    frames = pd.DataFrame({"group": ["a", "a", "a", "b", "b"], "label": [0, 1, 1, 1, 1],
                           "prob": [0.1, 0.9, 0.3, 0.5, 0.7]})
    units = aggregate_groups(frames, t=0.8, min_share=0.5).set_index(["group", "label"])
    assert units.loc[("a", 0)].tolist() == [1, pytest.approx(0.1), pytest.approx(0.1)]
    assert units.loc[("a", 1)].tolist() == [2, pytest.approx(0.6), pytest.approx(0.9)]
    assert units.loc[("b", 1), "mean"] == pytest.approx(0.6)


def test_classification_report_table_is_sklearns():
    labels, preds = [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]
    table = classification_report_table({"test": (labels, preds)}).set_index("class")
    report = skm.classification_report(labels, preds, target_names=["real", "fake"], output_dict=True)
    assert table.loc["fake", "recall"] == pytest.approx(report["fake"]["recall"])
    assert table.loc["accuracy", "f1-score"] == pytest.approx(report["accuracy"])
    assert set(table["set"]) == {"test"}


def test_corruptions_change_images_and_unknown_ones_are_refused():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    for kind, (_, severities) in CORRUPTIONS.items():
        assert len(severities) >= 3
        out = corruption(kind, severities[-1])(image=image)["image"]
        assert out.shape == image.shape and np.abs(out.astype(int) - image).mean() > 1, kind
    with pytest.raises(ValueError, match="corruption"):
        corruption("fog", 1)


def test_extra_sets_from_a_data_root_or_a_manifest_folder(kaggle_root, tmp_path):
    name, manifest, root = load_eval_set(kaggle_root)
    assert (name, len(manifest), root) == ("kaggle", 18, kaggle_root)
    assert set(load_eval_set(kaggle_root, split="test")[1]["split"]) == {"test"}
    result = build_manifest(kaggle_root)
    save_manifests(result, tmp_path / "manifests")
    name, manifest, root = load_eval_set(tmp_path / "manifests", split="all")
    assert (name, len(manifest)) == ("kaggle", 18)
    seen = result.manifest.loc[result.manifest["split"] != "test", "sha256"]
    with pytest.warns(UserWarning, match="left out 12 images"):
        assert len(load_eval_set(kaggle_root, exclude_sha256=seen)[1]) == 6
    assert list(load_eval_sets([kaggle_root, tmp_path / "manifests"], split="test")) == ["kaggle", "kaggle_2"]
    with pytest.raises(ValueError, match="split"):
        load_eval_set(kaggle_root, split="holdout")


def test_an_evaluation_only_root_is_accepted_as_an_extra_set(tmp_path):
    for cls in ("real", "fake"):
        for i in range(2):
            write_image(tmp_path / "cross" / "test" / cls / f"{i}.png", seed=10 * (cls == "fake") + i)
    name, manifest, _ = load_eval_set(tmp_path / "cross", split="test")
    assert name == "cross" and len(manifest) == 4 and set(manifest["split"]) == {"test"}


def test_celebdf_sample_loads_as_an_extra_set(shared_dir):
    name, manifest, _ = load_eval_set(shared_dir / "data" / "celebdf_faces_sample")
    assert name == "celebdf_faces_sample" and len(manifest) == 421
    assert manifest["label"].value_counts().to_dict() == {0: 264, 1: 157}
    assert manifest["group"].nunique() == 2  # id0_0000 (its real and its swap) and the YouTube real


class _MeanColour(torch.nn.Module):
    """A tiny classifier: fake logit from the mean of the red channel."""

    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), x[:, 0].mean((1, 2))], 1)


class _LeftMinusRight(torch.nn.Module):
    """A mirror-sensitive classifier: fake logit = mean red of the left half minus that of the right half."""

    def forward(self, x):
        half = x.shape[-1] // 2
        return torch.stack([torch.zeros(len(x)), x[:, 0, :, :half].mean((1, 2)) - x[:, 0, :, half:].mean((1, 2))], 1)


@pytest.mark.filterwarnings("ignore:The temperature fitted")  # a toy model on 6 images: the fit is not the point
def test_flip_tta_averages_each_image_with_its_mirror_and_the_rule_remembers_it(kaggle_root, tmp_path):
    import albumentations as A
    manifest = build_manifest(kaggle_root).manifest
    val = manifest[manifest["split"] == "val"]
    args = dict(device=torch.device("cpu"), image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=4)
    plain = Scorer(_LeftMinusRight(), **args)("val", val, kaggle_root)
    mirrored = Scorer(_LeftMinusRight(), **args)("val", val, kaggle_root, corruption=A.HorizontalFlip(p=1))
    flipped = Scorer(_LeftMinusRight(), flip=True, **args)("val", val, kaggle_root)
    assert np.abs(plain.margin).max() > 1e-3  # the images are not mirror-symmetric: the test can tell
    np.testing.assert_allclose(flipped.logits, (plain.logits + mirrored.logits) / 2, atol=1e-6)
    assert flipped.flip and not plain.flip
    rule = fit_decision_rule(flipped, rule="eer")
    assert rule.flip and not fit_decision_rule(plain, rule="eer").flip
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    save_decision_rule(rule, checkpoint)
    assert load_decision_rule(checkpoint).flip  # what predict reads back


def test_a_set_is_scored_evaluated_and_swept_under_corruptions(kaggle_root):
    manifest = build_manifest(kaggle_root).manifest
    scorer = Scorer(_MeanColour(), torch.device("cpu"), image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=4)
    val = scorer("val", manifest[manifest["split"] == "val"], kaggle_root)
    test_rows = manifest[manifest["split"] == "test"]
    test = scorer("test", test_rows, kaggle_root)
    assert test.label.tolist() == test_rows["label"].tolist() and test.images_per_s > 0
    rule = DecisionRule(2.0, 0.45, "eer", "val", 2.0)
    result = evaluate_set(test, test_rows["group"], rule, bootstrap_rounds=20)
    assert result["raw@0.5"]["auc"] == pytest.approx(skm.roc_auc_score(test.label, test.prob()))
    assert result["calibrated@val_threshold"]["threshold"] == 0.45
    assert result["groups"]["units"] == 6 and set(result["bootstrap_95"]) >= {"auc", "accuracy@val_threshold"}
    table = predictions_table(test_rows, test, rule)
    assert list(table.columns) == ["path", "label", "group", "prob_fake", "prob_fake_calibrated", "prediction"]
    assert (table["prediction"] == (table["prob_fake_calibrated"] >= 0.45)).all()
    with pytest.raises(ValueError, match="order"):
        predictions_table(test_rows.iloc[::-1], test, rule)
    sweep = robustness_sweep(scorer, "test", test_rows, kaggle_root, rule, corruptions={"jpeg": ("q", (90, 30))})
    assert sweep[["corruption", "severity"]].values.tolist() == [["jpeg", 90], ["jpeg", 30]]
    assert sweep["auc"].between(0, 1).all()
    assert val.split == "val"


def test_sets_of_video_crops_are_scored_per_video():
    from dfcore.evaluation import scoring_units

    crops = pd.DataFrame({"group": ["g1"] * 4, "video": ["a.mp4", "a.mp4", "b.mp4", "b.mp4"]})
    units, kind = scoring_units(crops)
    assert kind == "video" and list(units) == ["a.mp4", "a.mp4", "b.mp4", "b.mp4"]
    units, kind = scoring_units(crops.drop(columns="video"))
    assert kind == "group" and set(units) == {"g1"}


def test_the_index_lists_every_scored_set_with_frame_and_unit_auc(tmp_path):
    import json

    from dfcore.reporting.index import build_index

    (tmp_path / "metrics").mkdir()
    sets = {"val": {}, "test": {"n": 10, "raw@0.5": {"auc": 0.91},
                                "groups": {"unit": "group", "units": 8, "mean": {"auc": 0.93}, "confident": {"auc": 0.92}}},
            "ffpp_c23_videos": {"n": 96, "raw@0.5": {"auc": 0.7},
                                "groups": {"unit": "video", "units": 7, "mean": {"auc": 0.81}, "confident": {"auc": 0.83}}}}
    (tmp_path / "metrics" / "05_evaluation.json").write_text(json.dumps({"sets": sets}))
    page = build_index(tmp_path).replace(' class="num"', "")  # AUCs to 3 decimals; no interval given, none shown
    assert "<td>ffpp_c23_videos</td><td>96</td><td>0.700</td><td></td><td>video</td><td>7</td><td>0.810</td><td>0.830</td>" in page
    assert "<td>val</td>" not in page


def test_the_index_shows_the_profiles_mim_benchmark_where_one_was_run(tmp_path):
    import json

    from dfcore.reporting.index import build_index, main

    run = tmp_path / "reports" / "dfdc-mim-cpu"
    (run / "metrics").mkdir(parents=True)
    assert "bench-mim" not in build_index(run)
    bench = tmp_path / "reports" / "bench"
    bench.mkdir()
    arm = {"val_auc": 0.8, "test_auc": 0.78, "p2_epochs": 17, "minutes_total": 24.04}
    (bench / "mim_vs_random-dfdc_faces_small-dfdc-mim-cpu.json").write_text(json.dumps(
        {"profile": "dfdc-mim-cpu", "data": "dfdc_faces_small", "mim": arm,
         "none": {**arm, "test_auc": 0.8, "p2_epochs": 21},
         "mim_minus_random_test_auc": -0.02}))
    (bench / "mim_vs_random-dfdc_faces_small-x-dfdc-mim-cpu.json").write_text(  # profile x-dfdc-mim-cpu's
        json.dumps({"profile": "x-dfdc-mim-cpu", "data": "other", "mim": arm}))
    (bench / "mim_vs_random-dfdc_faces_small-dfdc-mim-cpu.png").write_bytes(b"png")
    page = build_index(run)
    table = page.replace(' class="num"', "")
    assert "<td>random initialisation</td><td>0.800</td><td>0.800</td><td>21</td><td>24.0</td>" in table
    assert "<td>MIM pretraining, then fine-tuning</td><td>0.800</td><td>0.780</td><td>17</td>" in table
    assert "-0.020" in page and 'src="../bench/mim_vs_random-dfdc_faces_small-dfdc-mim-cpu.png"' in page
    assert page.count("<h2>MIM against random") == 1
    main([str(run), "--index-only"])  # what make bench-mim runs: the index, the run's manifest left as it was
    assert (run / "index.html").read_text() == page and not (run / "run_manifest.json").exists()
