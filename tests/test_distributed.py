"""One training loop, one or several processes: torchrun with gloo on CPU gives what one process gives, and resumes."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from dfcore.datasets import build_manifest, save_manifests
from dfcore.params import stage_parameters
from conftest import ROOT


pytestmark = pytest.mark.slow  # torchrun subprocesses


def _write(path, seed, fake):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 200, (48, 48, 3))
    pixels[..., 0] += 55 * fake  # fakes are redder: a signal a head on random features can learn
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def params_for(tmp_path_factory):
    """Returns a function giving phase-1 parameters whose manifests live under a fresh reports root."""
    data = tmp_path_factory.mktemp("data")
    seed = 0
    for split, n in (("Train", 96), ("Validation", 24), ("Test", 4)):
        for cls, fake in (("Real", 0), ("Fake", 1)):
            for i in range(n):
                seed += 1
                _write(data / split / cls / f"{i}.png", seed, fake)
    result = build_manifest(data)

    def make(name, stage="03_phase1_head", **overrides):
        reports = tmp_path_factory.mktemp(name)
        save_manifests(result, reports / "smoke" / "manifests")
        settings = dict(backbone="resnet10t", image_size=48, p1_init="none", p1_epochs=4, p1_lr_head=3e-3, batch_size=16,
                        amp=False, augment="flip", patience=10)
        if stage == "02_mim_pretrain":  # 64 px: two 32-pixel patches a side for resnet10t's stride
            settings = dict(backbone="resnet10t", image_size=64, mim_epochs=2, mim_batch_size=16, amp=False)
        params = stage_parameters(stage, "smoke", defaults=True, reports_root=str(reports),
                                  **{**settings, **overrides})
        path = reports / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        return path, reports / "smoke" / "checkpoints" / ("mim" if stage == "02_mim_pretrain" else "phase1")

    return make


def _train(params_file, processes, *, kill_after_epochs=None, stage="03_phase1_head"):
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "dfcore", "train", stage, "--params-file", str(params_file)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    if kill_after_epochs is None:
        log = process.communicate(timeout=600)[0]
        assert process.returncode == 0, log[-3000:]
        return log
    history = params_file.parent / "smoke" / "checkpoints" / "phase1" / "history.csv"
    while not (history.exists() and len(history.read_text().splitlines()) > kill_after_epochs):
        assert process.poll() is None, "the run ended before it could be killed: " + process.stdout.read()[-2000:]
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both workers, mid-epoch
    process.wait(timeout=60)
    return ""


def _history(folder):
    return pd.read_csv(folder / "history.csv").drop(columns="train_images_per_s")


def test_two_gloo_processes_reach_the_validation_auc_of_one(params_for):
    one, one_dir = params_for("one")
    two, two_dir = params_for("two", nproc_per_node=2, decode_cache=True)  # same pixels, decoded once by one process
    _train(one, 1)
    log = _train(two, 2)
    assert "2 process(es)" in log
    assert sorted(p.name.split("-")[0] + p.suffix for p in (two.parent / "smoke" / "cache").iterdir()) == [
        "train.json", "train.u8", "val.json", "val.u8"]
    single, ddp = _history(one_dir), _history(two_dir)
    assert len(single) == len(ddp) == 4
    assert single["val_auc"].iloc[-1] > 0.8  # the signal is learnt
    assert abs(single["val_auc"].iloc[-1] - ddp["val_auc"].iloc[-1]) < 0.05
    import torch

    state = torch.load(two_dir / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(params_for):
    full, full_dir = params_for("full", nproc_per_node=2, p1_epochs=6)
    cut, cut_dir = params_for("cut", nproc_per_node=2, p1_epochs=6)
    _train(full, 2)
    _train(cut, 2, kill_after_epochs=1)
    assert len(pd.read_csv(cut_dir / "history.csv")) < 6
    assert "Resuming the interrupted run" in _train(cut, 2)
    pd.testing.assert_frame_equal(_history(full_dir), _history(cut_dir), rtol=1e-6)


def test_mim_pretraining_runs_in_the_same_loop_under_two_gloo_processes(params_for):
    import torch

    one, one_dir = params_for("mim-one", stage="02_mim_pretrain")
    two, two_dir = params_for("mim-two", stage="02_mim_pretrain", nproc_per_node=2, decode_cache=True)
    _train(one, 1, stage="02_mim_pretrain")
    assert "2 process(es)" in _train(two, 2, stage="02_mim_pretrain")
    assert len(list((two.parent / "smoke" / "cache").glob("mim-*.u8"))) == 1  # decoded once, for both processes
    single, ddp = _history(one_dir), _history(two_dir)
    assert len(single) == len(ddp) == 2
    assert ddp["train_loss"].iloc[-1] < ddp["train_loss"].iloc[0]  # the encoder learns under DDP
    # the same global batch of 16 (8 a process) and the same draw of images; masks and batch-norm statistics
    # differ per process, so the losses agree closely but not exactly
    assert abs(single["train_loss"].iloc[-1] - ddp["train_loss"].iloc[-1]) < 0.1 * single["train_loss"].iloc[-1]
    assert len(pd.read_csv(two_dir / "steps.csv")) == 2 * (192 // 16)  # one logged row per optimizer step
    state = torch.load(two_dir / "backbone.pt", weights_only=True)
    assert state["kind"] == "mim-backbone" and not any(k.startswith("module.") for k in state["model"])
    assert (two_dir / "reconstructions.pt").exists()
