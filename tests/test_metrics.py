import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from dfcore.evaluation import (
    binary_metrics,
    bootstrap_intervals,
    eer_threshold,
    expected_calibration_error,
    reliability_table,
)


def _scored(n=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, n), 0, 1)
    return labels, probs


def test_binary_metrics_agree_with_sklearn():
    labels, probs = _scored()
    m = binary_metrics(labels, probs, threshold=0.4)
    pred = probs >= 0.4
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probs))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(labels, probs))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(labels, probs))
    report = skm.classification_report(labels, pred, target_names=["real", "fake"], output_dict=True)
    for name in ("real", "fake"):
        assert m[f"{name}_precision"] == pytest.approx(report[name]["precision"])
        assert m[f"{name}_recall"] == pytest.approx(report[name]["recall"])
        assert m[f"{name}_f1"] == pytest.approx(report[name]["f1-score"])
        assert m[f"{name}_support"] == report[name]["support"]
    assert m["eer"] == eer_threshold(labels, probs)[0]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_binary_metrics_of_one_class_leave_ranking_metrics_undefined():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert np.isnan(m["auc"]) and np.isnan(m["eer"])
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_eer_on_a_hand_computed_case():
    # scores: reals 0.1 0.2 0.3 0.6, fakes 0.4 0.7 0.8 0.9 -> at threshold 0.6..0.7 one real of four is
    # called fake and one fake of four is missed: FPR = FNR = 0.25
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    eer, threshold = eer_threshold(labels, probs)
    assert eer == pytest.approx(0.25)
    assert 0.4 < threshold <= 0.7
    assert eer_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0


def test_reliability_bins_are_those_of_sklearn_calibration_curve():
    labels, probs = _scored(500, seed=1)
    table = reliability_table(labels, probs, n_bins=10)
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(table["fake_share"], prob_true)
    np.testing.assert_allclose(table["mean_prob"], prob_pred)
    assert table["count"].sum() == 500


def test_ece_on_hand_computed_cases():
    # perfectly calibrated: 2 fakes of 10 at P(fake) 0.2, 8 of 10 at 0.8
    labels = [1] * 2 + [0] * 8 + [1] * 8 + [0] * 2
    probs = [0.2] * 10 + [0.8] * 10
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0)
    # overconfident: all at 0.9, half fake -> gap 0.4 everywhere
    assert expected_calibration_error([0, 1] * 5, [0.9] * 10) == pytest.approx(0.4)
    # two bins: 4 at 0.3 with 1 fake (gap 0.05), 6 at 0.7 with 6 fakes (gap 0.3): (4 * 0.05 + 6 * 0.3) / 10
    labels = [1, 0, 0, 0] + [1] * 6
    probs = [0.3] * 4 + [0.7] * 6
    assert expected_calibration_error(labels, probs) == pytest.approx(0.2)


def test_ece_of_a_large_calibrated_sample_is_near_zero():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, 200_000)
    labels = rng.uniform(0, 1, 200_000) < probs
    assert expected_calibration_error(labels, probs) < 0.01


def test_bootstrap_intervals_bracket_the_estimate_and_are_reproducible():
    labels, probs = _scored(300)
    stats = {"auc": skm.roc_auc_score, "accuracy": lambda y, p: np.mean((p >= 0.5) == y)}
    intervals = bootstrap_intervals(labels, probs, stats, rounds=300, seed=3)
    assert intervals == bootstrap_intervals(labels, probs, stats, rounds=300, seed=3)
    for name, fn in stats.items():
        low, high = intervals[name]
        assert low < fn(labels, probs) < high
        assert high - low < 0.2
    # resampling within classes: even with one fake in a hundred, every resample has both classes
    labels = np.r_[np.zeros(99, int), 1]
    probs = np.linspace(0, 1, 100)
    low, high = bootstrap_intervals(labels, probs, {"auc": skm.roc_auc_score}, rounds=50)["auc"]
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
