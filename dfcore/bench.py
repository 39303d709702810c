"""Benchmarks: speed of the data and training paths (``make bench``), MIM against random
initialisation (``make bench-mim``) and the crop-matching ablation (``make bench-crops``), written to JSON.

Targets live here, not in timed tests. Each speed measurement is repeated and its median
reported. Real data is used where ``--shared-data`` (``make``: ``../shared/data``) is present; the demo set
otherwise. Stages run through `dfcore.stages`, as the notebooks run them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dfcore import stages
from dfcore.artifacts import read_metrics, stage_outputs
from dfcore.datasets import build_manifest, build_transforms, make_demo_set, split_loader
from dfcore.models import build_model, data_config
from dfcore.params import load_config
from dfcore.runtime import amp_dtype, seed_everything
from dfcore.trainers import ClassifierTask, build_optimizer, build_scheduler, train_one_epoch, unfreeze_last

SHARED_DATA = Path("/nonexistent")  # the folder of real data sets, set by --shared-data (make: ../shared/data)


def _median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_data(repeats: int = 3) -> dict:
    """Returns the median seconds to generate the demo set and to build manifests (demo and, if present, DFDC)."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        median, times = _median_seconds(lambda: make_demo_set(Path(tmp) / f"d{time.time_ns()}", crops_per_photo=120,
                                                              image_size=64), repeats)
        results["demo_set_generation_s"] = {"median": median, "runs": times}
        demo = make_demo_set(Path(tmp) / "demo", crops_per_photo=120, image_size=64)
        median, times = _median_seconds(lambda: build_manifest(demo), repeats)
        results["manifest_demo_s"] = {"median": median, "runs": times, "images": 4080}
    dfdc = SHARED_DATA / "dfdc_faces_small"
    if dfdc.is_dir():
        median, times = _median_seconds(lambda: build_manifest(dfdc), repeats)
        results["manifest_dfdc_faces_small_s"] = {"median": median, "runs": times, "images": 7997}
    return results


class _RecipeDataset(Dataset):
    """The MViTv2 recipe's data path: PIL decode, one sample at a time.

    It augments with the trainer's own training transform (the recipe's set), so that both
    loops do the same augmentation work and differ only in how they decode, batch and compute.
    """

    def __init__(self, frame, root, image_size, mean, std):
        self.items = list(zip(frame["path"], frame["label"]))
        self.root = Path(root)
        self.transform = build_transforms(image_size, mean, std, train=True, augment="recipe")

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        image = np.asarray(Image.open(self.root / path).convert("RGB"))
        return self.transform(image=image)["image"], int(label)


def _recipe_loop_images_per_s(model, dataset, steps: int) -> float:
    """Returns images/s of the recipe's plain loop: batch 4, fp32, Adam, ``num_workers=0``, after 5 warm-up steps.

    As in the recipe, the model stays in ``train()`` mode and only parameters that require
    gradients are optimised (the head alone in phase 1).
    """
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    seen, start = 0, None
    for i, (images, labels) in enumerate(loader):
        if i == 5:
            seen, start = 0, time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
        if i == 5 + steps:
            break
    return seen / (time.perf_counter() - start)


def bench_trainer_vs_recipe(backbone: str = "mobilenetv2_100", image_size: int = 128, batch_size: int = 32,
                            images: int = 768, repeats: int = 3) -> dict:
    """Returns training images/s of dfcore's trainer against the recipe's loop, for phase 1 and phase 2.

    Phase 1 trains the head on a frozen backbone, phase 2 fine-tunes everything. The trainer
    runs in fp32, in bf16, in bf16 with one loader worker, and reading the decode cache (each
    image decoded and resized once, built before the timed epochs); ``*_in_memory`` steps on one
    batch held in memory (no loading at all): no data-path work can beat that rate. Same
    model, data and machine, in one run: the training images of ``dfdc_faces_small`` when
    ``--shared-data`` holds it, else of the demo set. Medians of ``repeats`` runs (epochs,
    after one warm-up epoch).
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = SHARED_DATA / "dfdc_faces_small"
        if not root.is_dir():
            root = make_demo_set(Path(tmp) / "demo", crops_per_photo=40, image_size=image_size)
        manifest = build_manifest(root).manifest
        frame = manifest[manifest["split"] == "train"].sample(images, random_state=0)
        result = {"backbone": backbone, "image_size": image_size, "data": str(root), "images": images}
        for phase, trainable_blocks in (("phase1_head", 0), ("phase2_full", -1)):
            seed_everything(0)
            model = build_model(backbone, image_size=image_size)
            unfreeze_last(model, trainable_blocks)
            cfg = data_config(model)
            recipe = [_recipe_loop_images_per_s(model, _RecipeDataset(frame, root, image_size, cfg["mean"], cfg["std"]),
                                                steps=images // 8) for _ in range(repeats)]
            result[f"{phase}_recipe_loop_images_per_s"] = {"median": statistics.median(recipe), "runs": recipe}
            for key, amp, workers in (("trainer_fp32", False, 0), ("trainer_bf16", True, 0),
                                      ("trainer_bf16_1worker", True, 1), ("trainer_fp32_cache", False, 0),
                                      ("trainer_bf16_cache", True, 0), ("trainer_fp32_in_memory", False, 0),
                                      ("trainer_bf16_in_memory", True, 0)):
                loader = split_loader({"train": frame}, root, "train", image_size=image_size, mean=cfg["mean"],
                                      std=cfg["std"], batch_size=batch_size, train=True, augment="recipe",
                                      num_workers=workers, cache_dir=Path(tmp) / "cache" if "cache" in key else None)
                if key.endswith("in_memory"):  # the compute floor: one batch, loaded once, stepped on repeatedly
                    loader = [next(iter(loader))] * len(loader)
                optimizer = build_optimizer(model, lr_head=1e-4, lr_backbone=1e-4)
                scheduler = build_scheduler(optimizer, epochs=repeats + 1, steps_per_epoch=len(loader))
                dtype = amp_dtype(torch.device("cpu"), amp)
                task = ClassifierTask(None, device=torch.device("cpu"))
                model.to(memory_format=torch.channels_last)  # as the loop's `run` does
                rates = [train_one_epoch(model, loader, task, optimizer, scheduler, device=torch.device("cpu"),
                                         dtype=dtype)["images_per_s"] for _ in range(repeats + 1)][1:]
                result[f"{phase}_{key}_images_per_s"] = {"median": statistics.median(rates), "runs": rates,
                                                         "batch_size": batch_size, "num_workers": workers}
                result[f"{phase}_{key}_speedup"] = statistics.median(rates) / statistics.median(recipe)
    return result


def bench_mim_init(profile: str = "demo", data_dir: str = "", out="reports/bench") -> dict:
    """Returns validation and test AUC after phase 1 + phase 2 from MIM initialisation and from random initialisation,
    with the same total budget, and draws them (``mim_vs_random-<data>-<profile>.png`` beside the JSON).

    Runs stages 01-05 once per arm (`dfcore.stages`, as the notebooks do) with the profile's parameters; only
    stage 03's ``p1_init`` differs (``mim`` or ``none``). The random arm skips stage 02 and spends its budget in
    phase 2 instead: ``mim_epochs`` more epochs (an MIM epoch passes the same training images through the same
    encoder, forward and backward), and without layer-wise LR decay (``layer_decay`` 1), which only protects
    pretrained layers. Ensemble members (stage 04's ``members``) are the same in both arms; the AUCs are then the
    ensemble's. Each arm's outputs land under ``out/mim_vs_random/<data>-<profile>/<init>/``, with each stage's wall
    time. Long: two full trainings.
    """
    name = f"{Path(data_dir).name or 'profile-data'}-{profile}"
    results = {"profile": profile, "data": str(data_dir) or "the profile's data_dir"}
    mim_epochs = load_config("02_mim_pretrain", profile).mim_epochs
    p2_epochs = load_config("04_phase2_finetune", profile).p2_epochs
    for init in ("mim", "none"):
        reports_root = Path(out).resolve() / "mim_vs_random" / name / init
        seconds = {}
        for stage in list(stages.MODULES)[:5]:  # 01 to 05: the gallery is not needed for AUC
            if stage == "02_mim_pretrain" and init != "mim":
                continue
            overrides = {"reports_root": str(reports_root)}
            if stage == "01_data_manifests" and data_dir:
                overrides["data_dir"] = str(data_dir)
            if stage == "03_phase1_head":
                overrides["p1_init"] = init
            if stage == "04_phase2_finetune" and init != "mim":
                overrides["p2_epochs"] = p2_epochs + mim_epochs  # the budget MIM would have spent
                overrides["layer_decay"] = 1.0  # layer decay keeps what pretraining taught; random init taught nothing
            start = time.perf_counter()
            stages.run(stage, load_config(stage, profile, **overrides))
            seconds[stage] = time.perf_counter() - start
        metrics = reports_root / profile / "metrics"
        evaluation = read_metrics(metrics / "05_evaluation.json")
        phase2 = read_metrics(metrics / "04_phase2_finetune.json")
        results[init] = {"val_auc": evaluation["sets"]["val"]["raw@0.5"]["auc"],
                         "test_auc": evaluation["sets"]["test"]["raw@0.5"]["auc"],
                         "phase1_best_val_auc": read_metrics(metrics / "03_phase1_head.json")["best_val_auc"],
                         "phase2_best_val_auc": phase2["best_val_auc"],
                         "phase2_val_auc_per_epoch": [row["val_auc"] for row in phase2["history"]],
                         "ensemble_members": len(phase2.get("members", [])),  # beside the phase-2 model
                         "p2_epochs": p2_epochs if init == "mim" else p2_epochs + mim_epochs,
                         "seconds": seconds, "minutes_total": sum(seconds.values()) / 60,
                         "reports": str(reports_root / profile)}
    results["mim_minus_random_test_auc"] = results["mim"]["test_auc"] - results["none"]["test_auc"]
    draw_mim_vs_random(results, mim_epochs, Path(out) / f"mim_vs_random-{name}.png")
    return results


def draw_mim_vs_random(results: dict, mim_epochs: int, path) -> Path:
    """Returns ``path`` after drawing `bench_mim_init`'s ``results`` there: each arm's phase-2 validation AUC per
    encoder epoch spent, and the validation and test AUC of the model notebook 05 scored (an ensemble's, when
    notebook 04 has members)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for init, label in (("mim", f"MIM ({mim_epochs} epochs) + fine-tuning"), ("none", "random init, longer fine-tuning")):
        curve = results[init]["phase2_val_auc_per_epoch"]
        offset = mim_epochs if init == "mim" else 0  # x: encoder epochs spent, pretraining included
        axes[0].plot(range(offset + 1, offset + len(curve) + 1), curve, "o-", label=label)
    members = results["mim"].get("ensemble_members", 0)
    axes[0].set(xlabel="encoder epochs spent (MIM + phase 2)", ylabel="validation AUC",
                title="phase 2 (the first model), per epoch" if members else "phase 2, per epoch")
    axes[0].legend(fontsize=8)
    bars = [(f"{init} {split}", results[init][f"{split}_auc"]) for init in ("mim", "none") for split in ("val", "test")]
    axes[1].bar([b[0] for b in bars], [b[1] for b in bars], color=["C0", "C0", "C1", "C1"])
    axes[1].set(ylim=(0.4, 1.0), ylabel="AUC", title=f"ensemble of {members + 1} models (notebook 05)" if members
                else "best checkpoint (picked on validation)")
    for i, (_, v) in enumerate(bars):
        axes[1].text(i, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    fig.suptitle(f"MIM against random initialisation, same budget: {results['profile']} on {results['data']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def bench_crop_matching(profile: str, reports_root="reports", out="reports/bench") -> dict:
    """Returns frame- and video-level AUC of a trained profile's model (`StudyModel`: the ensemble where notebook 04
    trained one, scored with flip TTA where its rule says, as notebook 05 scores it) on its extra evaluation sets,
    cut two ways: with the model's crop settings (as notebook 05 cuts them; ``recrop`` as the profile says) and the
    old way (image sets as given, video faces with the default crop settings). The ablation of ``match_crops``:
    the same model, only the crops differ. Crops go under ``out/crop_matching/<profile>/``."""
    from sklearn.metrics import roc_auc_score

    from dfcore.evaluation import aggregate_groups, load_eval_sets, scoring_units
    from dfcore.study import StudyModel

    run_dir = stage_outputs(Path(reports_root) / profile)
    if not run_dir.study_model.is_file():
        raise FileNotFoundError(f"{run_dir.study_model} is missing: run `make reproduce PROFILE={profile}` first.")
    study = StudyModel.load(run_dir.study_model, device="cpu")
    scorer = study.scorer(amp=True)
    sources = load_config("05_evaluation", profile).extra_eval_sets
    as_given = [{k: v for k, v in s.items() if k != "recrop"} if isinstance(s, dict) else s for s in sources]
    crop = study.state.get("face_crop")
    arms = {"checkpoint_crop": (sources, crop), "default_crop": (as_given, None)}
    results = {"profile": profile, "checkpoint": str(study.checkpoint), "flip_tta": study.flip, "checkpoint_crop": crop}
    for arm, (arm_sources, arm_crop) in arms.items():
        sets = load_eval_sets(arm_sources, crops_dir=Path(out) / "crop_matching" / profile / arm, crop=arm_crop)
        for name, (manifest, root) in sets.items():
            scores = scorer(name, manifest, root)
            units, kind = scoring_units(manifest)
            probs = study.rule.prob(scores)
            per_unit = aggregate_groups(pd.DataFrame({"group": units.to_numpy(), "label": scores.label, "prob": probs}),
                                        t=study.rule.group_t, min_share=study.rule.group_min_share)  # as notebook 05
            results.setdefault(name, {})[arm] = {
                "frames": len(manifest), "frame_auc": roc_auc_score(scores.label, probs),
                f"{kind}_auc": roc_auc_score(per_unit["label"], per_unit["mean"]) if per_unit["label"].nunique() == 2
                else None}
    return results


def _predict_checkpoint(folder: Path, profile: str, reports_root="reports") -> tuple[Path, str]:
    """Returns ``profile``'s model when it has been trained, else an untrained one of its backbone and size (speed
    does not depend on the weights), with a word on which."""
    from dfcore.checkpoint import save_checkpoint
    from dfcore.evaluation import DecisionRule, decision_path, save_decision_rule

    trained = stage_outputs(Path(reports_root) / profile).study_model
    if trained.is_file() and decision_path(trained).is_file():
        return trained, f"{profile}'s model (trained)"
    config = load_config("03_phase1_head", profile)
    model = build_model(config.backbone, image_size=config.image_size)
    path = save_checkpoint({"kind": "classifier", "backbone": config.backbone, "image_size": config.image_size,
                            "model": model.state_dict()}, folder / "best.pt")
    save_decision_rule(DecisionRule(rule="untrained", fitted_on="none"), path)
    return path, f"untrained {config.backbone} at {config.image_size} px ({profile}'s backbone; not trained yet)"


def bench_predict(frames: int = 32, repeats: int = 3, profile: str = "demo") -> dict:
    """Returns the speed of ``predict`` on the videos of ``<shared data>/videos_sample``: seconds per video split into
    decode, face detection and classification (model loaded, medians of ``repeats``), and the end-to-end wall time of
    ``python -m dfcore predict`` on the whole folder, command start included, with ``profile``'s model. Targets:
    4 s per 10-second 1080p video (32 frames), 50 s for a folder of ten."""
    import subprocess
    import sys

    from dfcore.inference import Predictor

    videos = sorted((SHARED_DATA / "videos_sample").rglob("*.mp4"))
    if not videos:
        return {"skipped": f"{SHARED_DATA / 'videos_sample'} is absent (give --shared-data)"}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, which = _predict_checkpoint(Path(tmp), profile)
        predictor = Predictor.load(checkpoint, device="cpu", frames=frames)
        per_video = {}
        for video in videos:
            runs = []
            for _ in range(repeats):
                predictor.timings = dict.fromkeys(predictor.timings, 0.0)
                start = time.perf_counter()
                record, _, _ = predictor(video)
                runs.append({"total": time.perf_counter() - start, **predictor.timings})
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            per_video[video.name] = {"resolution": f"{record.get('width', '')}", "seconds": median,
                                     "frames": record["frames_sampled"], "frames_with_face": record["frames_with_face"],
                                     "frames_per_s": record["frames_sampled"] / median["total"]}
        import cv2

        for video in videos:
            capture = cv2.VideoCapture(str(video))
            per_video[video.name]["resolution"] = (f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x"
                                                   f"{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}")
            capture.release()
        hd = [v["seconds"]["total"] for v in per_video.values() if v["resolution"] == "1920x1080"]
        folder_runs = []
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dfcore", "predict", str(SHARED_DATA / "videos_sample"),
                            "--checkpoint", str(checkpoint), "--frames", str(frames), "--device", "cpu"],
                           capture_output=True, check=False)
            folder_runs.append(time.perf_counter() - start)
    total_frames = sum(v["frames"] for v in per_video.values())
    total_s = sum(v["seconds"]["total"] for v in per_video.values())
    return {
        "checkpoint": which, "frames_per_video": frames, "per_video": per_video,
        "frames_per_s": total_frames / total_s, "videos_per_min": 60 * len(videos) / total_s,
        "split_s": {k: sum(v["seconds"][k] for v in per_video.values())
                    for k in ("decode", "detect", "classify", "temporal")},
        "temporal_head": predictor.judge.name if predictor.judge else None,  # "temporal": its embeddings and head
        "temporal_s_per_1080p_video_median": statistics.median(
            v["seconds"]["temporal"] for v in per_video.values() if v["resolution"] == "1920x1080") if hd else None,
        "seconds_per_1080p_video_median": statistics.median(hd) if hd else None,
        "target_seconds_per_1080p_video": 4.0,
        "folder_end_to_end_s": {"median": statistics.median(folder_runs), "runs": folder_runs,
                                "videos": len(videos)},
        "target_folder_of_10_s": 50.0,
    }


def main(argv=None) -> None:
    global SHARED_DATA
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="reports/bench", help="folder for the JSON results")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only these (repeatable)")
    parser.add_argument("--mim-vs-random", action="store_true",
                        help="only compare MIM with random initialisation (notebooks 01-05 twice; long)")
    parser.add_argument("--profile", default="demo", help="profile of the MIM comparison")
    parser.add_argument("--data-dir", default="", help="data root of the MIM comparison (default: the profile's data_dir)")
    parser.add_argument("--crop-matching", action="store_true",
                        help="only rescore a trained profile's extra sets with its own crops and the default ones")
    parser.add_argument("--reports-root", default="reports", help="where the trained profile of --crop-matching is")
    parser.add_argument("--shared-data", default="", help="the folder of real data sets (dfdc_faces_small, "
                                                          "videos_sample); without it, the demo set")
    parser.add_argument("--predict-profile", default="demo", help="the profile whose model the predict bench uses")
    args = parser.parse_args(argv)
    SHARED_DATA = Path(args.shared_data) if args.shared_data else SHARED_DATA
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.mim_vs_random:
        benches = {f"mim_vs_random-{Path(args.data_dir).name or 'profile-data'}-{args.profile}":
                   lambda: bench_mim_init(args.profile, args.data_dir, out)}
    elif args.crop_matching:
        benches = {f"crop_matching-{args.profile}": lambda: bench_crop_matching(args.profile, args.reports_root, out)}
    else:
        benches = {name: BENCHES[name] for name in args.only or sorted(BENCHES)}
        if "predict" in benches:
            benches["predict"] = lambda: bench_predict(profile=args.predict_profile)
    for name, fn in benches.items():
        result = {"machine": machine, **fn()}
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({name: result}, indent=2))


BENCHES = {"data": bench_data, "trainer_vs_recipe": bench_trainer_vs_recipe, "predict": bench_predict}

if __name__ == "__main__":
    main()
