"""Benchmarks: speed of the data and training paths, written to JSON (``make bench``).

Targets live here, not in timed tests. Each measurement is repeated and its median reported.
Real data is used where ``../shared/data`` is present; the demo set otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dfcore.datasets import build_manifest, make_demo_set, split_loader
from dfcore.models import build_model, data_config
from dfcore.runtime import seed_everything
from dfcore.trainers import build_optimizer, build_scheduler, train_one_epoch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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


def bench_training(backbone: str = "resnet10t", image_size: int = 64, batch_size: int = 64, repeats: int = 3) -> dict:
    """Returns the median training throughput (images/s) of one epoch over the demo set's training split."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_demo_set(Path(tmp) / "demo", crops_per_photo=40, image_size=image_size)
        manifest = build_manifest(root).manifest
        frames = {s: manifest[manifest["split"] == s] for s in ("train", "val", "test")}
        seed_everything(0)
        model = build_model(backbone, image_size=image_size)
        cfg = data_config(model)
        loader = split_loader(frames, root, "train", image_size=image_size, mean=cfg["mean"], std=cfg["std"],
                              batch_size=batch_size, train=True, augment="recipe")
        optimizer = build_optimizer(model, lr_head=1e-3, lr_backbone=1e-3)
        scheduler = build_scheduler(optimizer, epochs=repeats + 1, steps_per_epoch=len(loader))
        rates = [train_one_epoch(model, loader, optimizer, scheduler, device=torch.device("cpu"))["images_per_s"]
                 for _ in range(repeats + 1)][1:]  # the first epoch warms up allocators and caches
    return {"backbone": backbone, "image_size": image_size, "batch_size": batch_size,
            "train_images_per_s": {"median": statistics.median(rates), "runs": rates}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="reports/bench", help="folder for the JSON results")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, fn in (("data", bench_data), ("training", bench_training)):
        result = {"machine": machine, **fn()}
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({name: result}, indent=2))


if __name__ == "__main__":
    main()
