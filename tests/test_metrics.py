import numpy as np
import pytest
from sklearn import metrics as skm

from dfcore.evaluation import binary_metrics, eer_threshold


def test_binary_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 200), 0, 1)
    m = binary_metrics(labels, probs, threshold=0.4)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probs))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(labels, probs))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, probs >= 0.4))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, probs >= 0.4))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs))


def test_eer_on_a_hand_computed_case():
    # scores: reals 0.1 0.2 0.3 0.6, fakes 0.4 0.7 0.8 0.9 -> at threshold 0.6..0.7 one real of four is
    # called fake and one fake of four is missed: FPR = FNR = 0.25
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    eer, threshold = eer_threshold(labels, probs)
    assert eer == pytest.approx(0.25)
    assert 0.4 < threshold <= 0.7
    assert eer_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
