"""The decision rule stored with a model: a temperature and a threshold, both fitted on the validation split only.

The fitting functions take `Scores`, which carry the name of the split they came from, and
refuse every split but validation: a threshold or temperature chosen on test (or on an extra
evaluation set) would make that set's numbers optimistic. The rule is written next to the
checkpoint (``best.pt`` -> ``best.decision.json``) and checked against it when loaded, so
prediction applies the temperature and threshold fitted for exactly that model.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm

from dfcore.checkpoint import CheckpointError
from dfcore.evaluation.groups import confident_mean
from dfcore.evaluation.metrics import eer_threshold
from dfcore.evaluation.predict import Scores

FIT_SPLIT = "val"
RULES = ("eer", "f1")
TEMPERATURE_RANGE = (0.05, 20.0)  # outside it a fitted temperature means a degenerate fit, not a calibration


def _require_validation(scores: Scores) -> None:
    if scores.split != FIT_SPLIT:
        raise ValueError(
            f"Temperatures and thresholds are fitted on the '{FIT_SPLIT}' split only, not on '{scores.split}': "
            "anything chosen on an evaluation set makes that set's numbers optimistic."
        )


def fit_temperature(scores: Scores) -> float:
    """Returns the temperature that minimises the validation log loss of P(fake) (temperature scaling).

    scikit-learn's temperature scaling only wraps its own estimators through
    ``CalibratedClassifierCV``; here the torch model's logits are fitted directly, one scalar
    searched on a log scale between 1e-3 and 1e3.
    """
    _require_validation(scores)
    margin = scores.margin.astype(float)
    labels = scores.label.astype(float)

    def nll(log_t: float) -> float:
        z = margin / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, z) - labels * z))  # -log sigmoid(+-z), stable for large |z|

    found = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded")
    return float(np.exp(found.x))


def fit_threshold(scores: Scores, *, temperature: float = 1.0, rule: str = "eer") -> float:
    """Returns the validation threshold on P(fake) at ``temperature``: the equal-error point or the best-F1 one."""
    _require_validation(scores)
    probs = scores.prob(temperature)
    if rule == "eer":
        return eer_threshold(scores.label, probs)[1]
    if rule == "f1":
        precision, recall, thresholds = skm.precision_recall_curve(scores.label, probs)
        f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
        return float(thresholds[int(np.argmax(f1[:-1]))])
    raise ValueError(f"threshold rule must be one of {RULES}, got {rule!r}")


@dataclass(frozen=True)
class DecisionRule:
    """How scores become decisions: P(fake) = sigmoid(margin / temperature), fake when P(fake) >= threshold."""

    temperature: float = 1.0
    threshold: float = 0.5
    rule: str = "default"
    fitted_on: str = ""
    fitted_temperature: float | None = None  # the temperature found, before the range check
    flip: bool = False  # fitted on flip test-time-augmented scores: every later scoring must flip too
    group_t: float = 0.8  # a video's (group's) confident score: the mean of its frames above this...
    group_min_share: float = 0.4  # ...when at least this share of them are (`dfcore.evaluation.groups`)

    def prob(self, scores: Scores) -> np.ndarray:
        """Returns the calibrated P(fake) of ``scores``."""
        return scores.prob(self.temperature)

    def prob_of_logits(self, logits: np.ndarray) -> np.ndarray:
        """Returns the calibrated P(fake) of two-class ``logits`` (one row per image)."""
        return Scores("", np.zeros(len(logits), dtype=int), np.asarray(logits, dtype=float)).prob(self.temperature)

    def aggregate(self, probs, how: str = "confident") -> float:
        """Returns one video's (group's) P(fake) from its frames' calibrated ``probs``: their ``mean``, or the
        ``confident`` mean with this rule's settings."""
        probs = np.asarray(probs, dtype=float)
        return float(probs.mean()) if how == "mean" else confident_mean(probs, t=self.group_t,
                                                                          min_share=self.group_min_share)

    def predict(self, scores: Scores) -> np.ndarray:
        """Returns 1 (fake) or 0 (real) for each image of ``scores``."""
        return (self.prob(scores) >= self.threshold).astype(int)


def fit_decision_rule(scores: Scores, *, rule: str = "eer", temperature_range=TEMPERATURE_RANGE,
                      group_t: float = 0.8, group_min_share: float = 0.4) -> DecisionRule:
    """Returns the temperature (kept at 1 with a warning when the fit leaves ``temperature_range``) and the
    threshold on calibrated P(fake), both fitted on the validation ``scores``; the rule also records how frames
    become a video's score (``group_t``, ``group_min_share``), so that prediction aggregates as evaluation did."""
    fitted = fit_temperature(scores)
    low, high = temperature_range
    temperature = fitted
    if not low <= fitted <= high:
        warnings.warn(
            f"The temperature fitted on validation, {fitted:.3g}, is outside [{low}, {high}]: a degenerate fit "
            "(validation separable, or its logits nearly constant). It is not applied; temperature 1 is kept."
        )
        temperature = 1.0
    threshold = fit_threshold(scores, temperature=temperature, rule=rule)
    return DecisionRule(temperature, threshold, rule, scores.split, fitted, scores.flip, group_t, group_min_share)


def decision_path(checkpoint) -> Path:
    """Returns where the decision rule of ``checkpoint`` lives: ``best.pt`` -> ``best.decision.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.decision.json")


def _sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_decision_rule(rule: DecisionRule, checkpoint) -> Path:
    """Returns the path of the JSON written next to ``checkpoint``, holding ``rule`` and the checkpoint's sha256."""
    path = decision_path(checkpoint)
    path.write_text(json.dumps({**asdict(rule), "checkpoint_sha256": _sha256(checkpoint)}, indent=2))
    return path


def load_decision_rule(checkpoint) -> DecisionRule:
    """Returns the decision rule stored next to ``checkpoint``; the default one (temperature 1, threshold 0.5),
    with a warning, when there is none. A rule fitted for another version of the checkpoint is an error."""
    path = decision_path(checkpoint)
    if not path.exists():
        warnings.warn(f"No decision rule at {path} (notebook 05 writes it): temperature 1 and threshold 0.5 are used.")
        return DecisionRule()
    stored = json.loads(path.read_text())
    if stored.pop("checkpoint_sha256") != _sha256(checkpoint):
        raise CheckpointError(f"{path} was fitted for another version of {checkpoint}: re-run notebook 05.")
    return DecisionRule(**stored)
