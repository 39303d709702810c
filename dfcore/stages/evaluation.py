"""Stage 05, evaluation: the study's model scored on validation (where its temperature and threshold are fitted),
then on test and every extra set, with intervals, calibration, a robustness sweep and video- or group-level
scores. Nothing is chosen on any set but validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from dfcore.artifacts import StageOutputs, write_metrics
from dfcore.config import EvaluationConfig as Config
from dfcore.datasets import load_manifests
from dfcore.evaluation import (
    TEMPERATURE_RANGE,
    DecisionRule,
    Scores,
    classification_report_table,
    evaluate_set,
    fit_decision_rule,
    load_decision_rule,
    load_eval_sets,
    predictions_table,
    robustness_sweep,
    save_decision_rule,
    scoring_units,
)
from dfcore.stages.temporal import TemporalEvaluation, evaluate_heads
from dfcore.study import StudyModel

__all__ = ["Config", "EvaluationResult", "run"]

METRIC_COLUMNS = ["n", "auc", "average_precision", "eer", "threshold", "accuracy", "balanced_accuracy",
                  "fake_precision", "fake_recall", "fake_f1", "real_precision", "real_recall", "real_f1", "log_loss",
                  "brier", "ece"]


@dataclass
class EvaluationResult:
    """Everything notebook 05 shows: the scores of each set, the rule fitted on validation and each set's metrics
    (``results``, as in ``metrics/05_evaluation.json``), the robustness sweep."""

    config: Config
    study: StudyModel
    sets: dict  # name -> (manifest, data root): val, test, then the extra sets
    scores: dict[str, Scores]
    rule: DecisionRule
    results: dict
    sweep: pd.DataFrame
    temporal: TemporalEvaluation | None = None  # videos judged by notebook 04's temporal heads, where it trained any

    @property
    def evaluated(self) -> list[str]:
        """The sets scored at the validation rule: test, then the extra sets."""
        return [name for name in self.sets if name != "val"]

    def scoring_table(self) -> pd.DataFrame:
        return pd.DataFrame({name: {"images": len(s.label), "fakes": int(s.label.sum()),
                                    "images/s": round(s.images_per_s)} for name, s in self.scores.items()}
                            ).T.rename_axis(f"scored on {self.study.device}, flip TTA {self.study.flip}")

    def metrics_table(self) -> pd.DataFrame:
        return pd.DataFrame({(name, at): r[at] for name, r in self.results.items()
                             for at in ("raw@0.5", "calibrated@val_threshold")}).T[METRIC_COLUMNS].round(4)

    def intervals_table(self) -> pd.DataFrame:
        return pd.DataFrame({name: {stat: f"{low:.3f} to {high:.3f}" for stat, (low, high) in r["bootstrap_95"].items()}
                             for name, r in self.results.items()}).T.rename_axis(
            f"bootstrap 95% intervals ({self.config.bootstrap_rounds} class-stratified resamples)")

    def calibration_table(self) -> pd.DataFrame:
        return pd.DataFrame({(name, when): {k: r[at][k] for k in ("log_loss", "brier", "ece")}
                             for name, r in self.results.items()
                             for when, at in (("before", "raw@0.5"), ("after", "calibrated@val_threshold"))}).T.round(4)

    def groups_table(self) -> pd.DataFrame:
        return pd.DataFrame({(name, how): {"unit": r["groups"]["unit"], "units": r["groups"]["units"],
                                           "groups": r["groups"]["groups"], "frame AUC": r["groups"]["frame_auc"],
                                           "unit-level AUC": r["groups"][how]["auc"],
                                           "unit-level accuracy": r["groups"][how]["accuracy"]}
                             for name, r in self.results.items() for how in ("mean", "confident")}).T.round(4)

    def robustness_table(self) -> pd.DataFrame:
        return self.sweep.pivot_table(index=["corruption", "severity"], values=["auc", "accuracy", "ece"],
                                      sort=False).round(4)


def run(config: Config) -> EvaluationResult:
    """Scores every set, fits the decision rule on validation (written beside the checkpoint), evaluates, writes
    the predictions, the classification report and ``metrics/05_evaluation.json``; returns the result."""
    c = config
    out = StageOutputs(c.run_dir)
    manifests, data_root = load_manifests(out.manifests)
    study = StudyModel.load(out.study_model, device=c.device, with_rule=False, flip=c.flip_tta)
    scorer = study.scorer(batch_size=c.eval_batch_size, amp=c.amp, num_workers=c.num_workers)
    seen = pd.concat([manifests["train"], manifests["val"]])["sha256"]  # never count these as unseen data
    sets = {split: (manifests[split], data_root) for split in ("val", "test")}
    sets.update(load_eval_sets(c.extra_eval_sets, split=c.extra_eval_split, exclude_sha256=seen,
                               crops_dir=out.root / "faces_eval",
                               crop=study.state.get("face_crop")))  # video sets: faces cut as in training
    scores = {name: scorer(name, manifest, root) for name, (manifest, root) in sets.items()}

    save_decision_rule(fit_decision_rule(scores["val"], rule=c.threshold_rule, group_t=c.group_t,
                                         group_min_share=c.group_min_share), study.checkpoint)
    rule = load_decision_rule(study.checkpoint)
    study = study.with_rule(rule)

    results = {}
    for name, s in scores.items():
        units, unit = scoring_units(sets[name][0])  # source videos where the faces came from videos
        results[name] = evaluate_set(s, units, rule, bootstrap_rounds=c.bootstrap_rounds, seed=c.seed,
                                     group_t=rule.group_t, group_min_share=rule.group_min_share,
                                     n_bins=c.calibration_bins)
        results[name]["groups"]["unit"] = unit
    temporal = evaluate_heads(out, sets, device=c.device, bootstrap_rounds=c.bootstrap_rounds, seed=c.seed,
                              group_t=rule.group_t, group_min_share=rule.group_min_share, threshold_rule=c.threshold_rule)
    sweep = robustness_sweep(scorer, "test", *sets["test"], rule, seed=c.seed) if c.robustness else pd.DataFrame()
    result = EvaluationResult(c, study, sets, scores, rule, results, sweep, temporal)
    _write(result, out, scorer)
    return result


def _temporal_headline(temporal: TemporalEvaluation) -> dict:
    test = temporal.table[temporal.table["set"] == "test"].set_index("method")["video AUC"]
    return {f"test video AUC, {method}": auc for method, auc in test.items()}


def _write(result: EvaluationResult, out: StageOutputs, scorer) -> None:
    """Writes the per-image predictions, the classification report and the metrics of ``result``."""
    c, rule, scores, sets = result.config, result.rule, result.scores, result.sets
    for name in result.evaluated:
        predictions_table(sets[name][0], scores[name], rule).to_csv(out.predictions(name), index=False)
    classification_report_table({name: (scores[name].label, rule.predict(scores[name])) for name in result.evaluated}
                                ).to_csv(out.classification_report, index=False)
    results = result.results
    test = results["test"]
    write_metrics(out.metrics / "05_evaluation.json", {
        "checkpoint": str(result.study.checkpoint), "backbone": result.study.backbone,
        "scoring": {"device": str(result.study.device), "dtype": str(scorer.dtype), "batch_size": c.eval_batch_size},
        "decision_rule": {**asdict(rule), "temperature_range": list(TEMPERATURE_RANGE)},
        "sets": results,
        "extra_eval_sets": {name: str(root) for name, (_, root) in sets.items() if name not in ("val", "test")},
        "extra_eval_split": c.extra_eval_split,
        "robustness": result.sweep.to_dict("records"),
        "predictions": {name: str(out.predictions(name)) for name in result.evaluated},
        "classification_report": str(out.classification_report),
        "temporal": None if result.temporal is None else {
            "study_head": result.temporal.chosen, "checkpoint": str(out.temporal_head),
            "rules": {method: asdict(r) for method, r in result.temporal.rules.items()},
            "videos": result.temporal.table.to_dict("records")},
    }, headline={
        "test AUC": test["raw@0.5"]["auc"],
        "test AUC 95% interval": " to ".join(f"{v:.3f}" for v in test["bootstrap_95"].get("auc", [])),
        "test accuracy at validation threshold": test["calibrated@val_threshold"]["accuracy"],
        "test ECE before / after calibration": f"{test['raw@0.5']['ece']:.3f} / "
                                               f"{test['calibrated@val_threshold']['ece']:.3f}",
        "temperature": rule.temperature,
        "validation AUC": results["val"]["raw@0.5"]["auc"],
        **{f"{name} AUC": results[name]["raw@0.5"]["auc"] for name in result.evaluated if name != "test"},
        **(_temporal_headline(result.temporal) if result.temporal else {}),
    })
    print(f"wrote {out.metrics / '05_evaluation.json'}")
