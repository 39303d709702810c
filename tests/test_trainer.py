import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_image
from torch.utils.data import DataLoader, TensorDataset

from dfcore.datasets import build_manifest, split_loader
from dfcore.models import build_model
from dfcore.runtime import seed_everything
from dfcore.trainers import (
    Task,
    TrainingError,
    build_optimizer,
    class_weights,
    fit,
    freeze_backbone,
    run,
    unfreeze_last,
)

CPU = torch.device("cpu")


def _loaders(seed=0, poison=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 3, 32, 32, generator=g)
    if poison:
        x[:32] = float("nan")
    y = torch.arange(48) % 2
    x[y == 1, 0] += 1.5  # a learnable signal: fakes are redder
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True, generator=torch.Generator())
    val = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=16)
    return train, val


def _run(tmp_path, epochs, resume=False, lr=3e-3, poison=False):
    seed_everything(0)
    model = build_model("resnet10t")
    train, val = _loaders(poison=poison)
    opt = build_optimizer(model, lr_head=lr, lr_backbone=lr)
    history = fit(model, train, val, optimizer=opt, warmup_epochs=1, epochs=epochs, out_dir=tmp_path, device=CPU,
                  patience=10, resume=resume, meta={"backbone": "resnet10t", "image_size": 32})
    return model, history


def test_fit_writes_history_and_best_and_last_checkpoints(tmp_path):
    _, history = _run(tmp_path, epochs=4)
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert {"train_loss", "val_loss", "val_auc", "val_accuracy", "lr_head", "lr_backbone"} <= set(history)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()
    assert pd.read_csv(tmp_path / "history.csv").shape[0] == 4
    assert history["val_auc"].max() > 0.8  # the signal is learnt


def test_resume_continues_an_interrupted_run_to_the_same_result(tmp_path, interrupt_at):
    full, full_history = _run(tmp_path / "full", epochs=4)
    interrupt_at(2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", epochs=4)  # interrupted after two epochs
    assert len(pd.read_csv(tmp_path / "cut" / "history.csv")) == 2
    resumed, resumed_history = _run(tmp_path / "cut", epochs=4, resume=True)
    pd.testing.assert_frame_equal(full_history.drop(columns="train_images_per_s"),
                                  resumed_history.drop(columns="train_images_per_s"))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def _run_augmented(root, out, epochs, resume=False):
    """Trains on real image files with the recipe's augmentation drawn in a loader worker."""
    seed_everything(0)
    manifests = {s: f for s, f in build_manifest(root).manifest.groupby("split")}
    loaders = [split_loader(manifests, root, split, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=2,
                            train=split == "train", num_workers=1) for split in ("train", "val")]
    model = build_model("resnet10t")
    opt = build_optimizer(model, lr_head=3e-3, lr_backbone=3e-3)
    return fit(model, *loaders, optimizer=opt, epochs=epochs, out_dir=out, device=CPU, patience=10,
               resume=resume, meta={"backbone": "resnet10t", "image_size": 32})


def test_resume_replays_augmentation_drawn_in_loader_workers(kaggle_root, tmp_path, interrupt_at):
    full = _run_augmented(kaggle_root, tmp_path / "full", epochs=3)
    interrupt_at(1)
    with pytest.raises(KeyboardInterrupt):
        _run_augmented(kaggle_root, tmp_path / "cut", epochs=3)
    resumed = _run_augmented(kaggle_root, tmp_path / "cut", epochs=3, resume=True)
    pd.testing.assert_frame_equal(full.drop(columns="train_images_per_s"),
                                  resumed.drop(columns="train_images_per_s"))


def test_loader_workers_draw_different_augmentations(tmp_path):
    write_image(tmp_path / "same.jpg", seed=0, size=32)
    frame = pd.DataFrame({"path": ["same.jpg"] * 8, "label": [0] * 8})
    loader = split_loader({"train": frame}, tmp_path, "train", image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3,
                          batch_size=1, train=True, num_workers=2)
    images = [batch[0] for batch, _ in loader]  # workers 0 and 1 alternate batches
    assert not all(torch.equal(a, b) for a, b in zip(images[0::2], images[1::2]))


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path):
    _run(tmp_path, epochs=1)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(TrainingError, match=r"epoch 1, step 0"):
        _run(tmp_path, epochs=2, resume=True, poison=True)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_phase1_freezes_backbone_weights_and_batchnorm_statistics(tmp_path):
    seed_everything(0)
    model = build_model("resnet10t")
    trainable = freeze_backbone(model)
    assert {id(p) for p in trainable} == {id(p) for p in model.get_classifier().parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    train, val = _loaders()
    opt = build_optimizer(model, lr_head=1e-2)
    fit(model, train, val, optimizer=opt, epochs=1, out_dir=tmp_path, device=CPU,
        meta={"backbone": "resnet10t"})
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running_mean/var included
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["name"] == "head"


def test_two_runs_with_the_same_seed_give_identical_validation_metrics(tmp_path):
    _, a = _run(tmp_path / "a", epochs=2)
    _, b = _run(tmp_path / "b", epochs=2)
    assert a["val_auc"].tolist() == b["val_auc"].tolist()
    assert a["val_loss"].tolist() == b["val_loss"].tolist()
    # with deterministic kernels, but without the NaN-filling of new tensors that slowed CPU training 22%
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False


@pytest.mark.parametrize("name,size,n,expected", [
    ("vit_tiny_patch16_224", 32, 4, {"blocks.8", "blocks.9", "blocks.10", "blocks.11", "norm", "head"}),
    ("resnet10t", 32, 1, {"layer4", "fc"}),
    ("mvitv2_tiny", 64, 1, {"stages.3", "norm", "head"}),
])
def test_unfreeze_last_trains_the_last_blocks_and_the_head_only(name, size, n, expected):
    model = build_model(name, image_size=size)
    trainable = unfreeze_last(model, n)
    parts = [t.split(".") for t in trainable]
    assert {".".join(p[:2]) if p[0] in ("blocks", "stages") else p[0] for p in parts} == expected
    assert all(p.requires_grad == (name_ in trainable) for name_, p in model.named_parameters())
    assert len(unfreeze_last(model, -1)) == len(list(model.parameters()))


@pytest.mark.parametrize("name,size", [("resnet10t", 32), ("vit_tiny_patch16_224", 32)])
def test_layer_decay_gives_each_layer_below_the_head_a_smaller_learning_rate(name, size):
    model = build_model(name, image_size=size)
    plain = build_optimizer(model, lr_head=2e-3, lr_backbone=1e-3)
    assert [(g["name"], g["lr"]) for g in plain.param_groups] == [("head", 2e-3), ("backbone", 1e-3)]
    decayed = build_optimizer(model, lr_head=2e-3, lr_backbone=1e-3, layer_decay=0.5)
    head, *layers = decayed.param_groups
    assert (head["name"], head["lr"]) == ("head", 2e-3)
    lrs = [g["lr"] for g in layers]
    assert lrs[-1] == pytest.approx(0.5e-3)  # the layer just below the head
    assert np.allclose(np.array(lrs[1:]) / np.array(lrs[:-1]), 2.0)  # halved at every step down
    grouped = [id(p) for g in decayed.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # every parameter once
    unfreeze_last(model, 1)  # frozen layers get no group
    partial = build_optimizer(model, lr_head=2e-3, lr_backbone=1e-3, layer_decay=0.5)
    assert sum(len(g["params"]) for g in partial.param_groups) == sum(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="layer_decay"):
        build_optimizer(model, lr_head=1e-3, lr_backbone=1e-3, layer_decay=0)


def test_class_weights_balance_what_the_loss_sees():
    labels = [0] * 30 + [1] * 10
    assert class_weights(labels, "none")[2] == pytest.approx(0.25)
    weights, sampler, share = class_weights(labels, "loss")
    assert not sampler and share == pytest.approx(0.5)
    assert weights[1] / weights[0] == pytest.approx(3.0)
    assert class_weights(labels, "sampler")[1:] == (True, 0.5)
    with pytest.raises(ValueError, match="balance must be"):
        class_weights(labels, "oversample")


_TRAIN_SCRIPT = """
import sys, time, torch
from torch.utils.data import DataLoader, Dataset
from dfcore.models import build_model
from dfcore.runtime import seed_everything
from dfcore.trainers import build_optimizer, fit

class Slow(Dataset):  # 5 ms an image, so that an epoch lasts long enough to be killed in
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.y)
    def __getitem__(self, i):
        time.sleep(0.005)
        return self.x[i], self.y[i]

torch.set_num_threads(1)
seed_everything(0)
g = torch.Generator().manual_seed(0)
x = torch.randn(160, 3, 32, 32, generator=g)
y = torch.arange(160) % 2
x[y == 1, 0] += 1.5
train = DataLoader(Slow(x[:128], y[:128]), batch_size=16, shuffle=True, generator=torch.Generator())
val = DataLoader(Slow(x[128:], y[128:]), batch_size=32)
model = build_model("resnet10t")
opt = build_optimizer(model, lr_head=3e-3, lr_backbone=3e-3)
fit(model, train, val, optimizer=opt, warmup_epochs=1, epochs=4, out_dir=sys.argv[1], device=torch.device("cpu"),
    patience=10, resume=True, meta={"backbone": "resnet10t", "image_size": 32, "params": {"lr": 3e-3, "resume": True}})
"""


def _train(out, *, kill_after_epochs=None):
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, str(out)], stdout=subprocess.PIPE, text=True)
    if kill_after_epochs is None:
        assert process.wait(timeout=300) == 0
        return process.stdout.read()
    history = out / "history.csv"
    while not (history.exists() and len(history.read_text().splitlines()) > kill_after_epochs):
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # in the middle of the next epoch
    process.wait(timeout=60)
    return process.stdout.read()


@pytest.mark.slow  # a training process killed with SIGKILL
def test_a_run_killed_mid_epoch_continues_by_itself_to_the_uninterrupted_result(tmp_path):
    _train(tmp_path / "full")
    _train(tmp_path / "cut", kill_after_epochs=1)
    assert len(pd.read_csv(tmp_path / "cut" / "history.csv")) < 4
    log = _train(tmp_path / "cut")  # the same command again: no resume flag to set
    assert "Resuming the interrupted run" in log
    full = pd.read_csv(tmp_path / "full" / "history.csv").drop(columns="train_images_per_s")
    resumed = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="train_images_per_s")
    pd.testing.assert_frame_equal(full, resumed)
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_with_other_parameters_starts_fresh_and_keeps_the_old_one_aside(tmp_path, capsys):
    _run(tmp_path / "run", epochs=2)
    stale = (tmp_path / "run" / "last.pt").read_bytes()
    seed_everything(0)
    model = build_model("resnet10t")
    train, val = _loaders()
    opt = build_optimizer(model, lr_head=1e-3, lr_backbone=1e-3)
    history = fit(model, train, val, optimizer=opt, epochs=2, out_dir=tmp_path / "run", device=CPU,
                  resume=True, meta={"backbone": "resnet10t", "image_size": 32, "params": {"lr": 1e-3}})
    assert list(history["epoch"]) == [0, 1]  # trained from the start
    assert "kept aside" in capsys.readouterr().out
    (aside,) = tmp_path.glob("run.replaced-*")
    assert (aside / "last.pt").read_bytes() == stale


class _SaysFake(torch.nn.Module):
    """Every image is fake: the real ones are exactly the misclassified."""

    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), torch.ones(len(x))], 1)


def test_hard_examples_are_the_training_images_the_model_gets_wrong_and_are_drawn_more(kaggle_root):
    from dfcore.trainers import hard_example_weights

    frames = {s: f for s, f in build_manifest(kaggle_root).manifest.groupby("split")}
    kwargs = dict(image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=4)
    scored = split_loader(frames, kaggle_root, "train", **kwargs)
    weights = hard_example_weights(_SaysFake(), scored, weight=5.0, device=CPU)
    real = frames["train"]["label"].eq(0).to_numpy()
    assert weights[frames["train"]["path"][real]].eq(5.0).all() and weights[frames["train"]["path"][~real]].eq(1.0).all()
    train = split_loader(frames, kaggle_root, "train", train=True, weights=weights, **kwargs)
    draw = train.sampler.weights.numpy()
    assert list(draw) == [5.0 if label == 0 else 1.0 for label in train.dataset.manifest["label"]]
    sbi = split_loader(frames, kaggle_root, "train", train=True, weights=weights, fakes="sbi", **kwargs)
    assert list(sbi.sampler.weights.numpy()) == [5.0] * 3 + [1.0] * 3  # pseudo-fakes are not re-weighted


class _Regression(torch.nn.Module):
    """No batch statistics, so one step on a batch equals one step accumulated over its halves."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class _CrossEntropy(Task):
    def loss(self, model, batch):
        images, labels = batch
        return torch.nn.functional.cross_entropy(model(images), labels)


@pytest.mark.parametrize("accum_steps", [2, 4])
def test_gradient_accumulation_takes_the_steps_of_the_whole_batch(tmp_path, accum_steps):
    x = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(32) % 2
    weights = {}
    for accum in (1, accum_steps):
        torch.manual_seed(0)
        model = _Regression()
        loader = DataLoader(TensorDataset(x, y), batch_size=16 // accum, generator=torch.Generator())
        history = run(model, loader, _CrossEntropy(), optimizer=torch.optim.SGD(model.parameters(), lr=0.5), epochs=2,
                      out_dir=tmp_path / str(accum), device=CPU, accum_steps=accum)
        weights[accum] = model.state_dict()
        steps = pd.read_csv(tmp_path / str(accum) / "steps.csv")
        assert len(steps) == 2 * 2  # two optimizer steps of 16 images an epoch, whatever the accumulation
        assert np.isclose(steps["train_loss"].iloc[:2].mean(), history["train_loss"].iloc[0])
    for key, value in weights[1].items():
        torch.testing.assert_close(weights[accum_steps][key], value, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.equal(weights[1]["fc.weight"], _Regression().fc.weight)  # it did train


def test_loader_settings_are_chosen_by_device(monkeypatch):
    from dfcore.runtime import loader_settings

    assert loader_settings(CPU) == {"num_workers": 0, "pin_memory": False}
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four GPU processes share the node's 16 cores
    assert loader_settings(torch.device("cuda")) == {"num_workers": 3, "pin_memory": True}
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert loader_settings(torch.device("cuda"))["num_workers"] == 8
    assert loader_settings(CPU, 2)["num_workers"] == 2  # a number given is kept


def test_an_ensemble_member_changes_notebook_4_parameters_only_and_leaves_the_first_model_alone():
    import dataclasses

    from dfcore.checkpoint import run_key
    from dfcore.config import Phase2Config
    from dfcore.stages.phase2 import member_config

    config = Phase2Config(profile="p", reports_root="r", p2_epochs=6)
    member = member_config(config, 1, {"p2_init": "none", "seed": 1})
    assert member == dataclasses.replace(config, p2_init="none", seed=1, members=[], member=1)
    for bad in ({"p2_epoch": 3}, {"members": []}, {"reports_root": "elsewhere"}):
        with pytest.raises(ValueError, match=f"sets \\['{next(iter(bad))}'\\]"):
            member_config(config, 1, bad)
    # adding members to a profile does not make its trained first model out of date
    with_members = dataclasses.replace(config, members=[{"seed": 1}])
    assert run_key({"params": config.as_dict()}) == run_key({"params": with_members.as_dict()})
    assert run_key({"params": config.as_dict()}) != run_key({"params": member.as_dict()})


def test_without_members_an_earlier_ensemble_is_kept_aside_and_the_phase_2_model_scored(tmp_path, monkeypatch):
    from dfcore.artifacts import stage_outputs
    from dfcore.config import Phase2Config
    from dfcore.stages import phase2

    monkeypatch.setattr(phase2, "train", lambda config: config)  # the training itself is not the test
    out = stage_outputs(tmp_path / "p")
    out.ensemble.parent.mkdir(parents=True)
    out.ensemble.write_bytes(b"an earlier ensemble")
    (out.ensemble.parent / "ensemble.decision.json").write_text("{}")
    config = Phase2Config(reports_root=str(tmp_path), profile="p")
    assert phase2.train_models(config) == [config]
    assert out.study_model == out.phase2_best
    aside = list(out.ensemble.parent.glob("ensemble.replaced-*"))
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == ["ensemble.decision.json", "ensemble.pt"]
    assert (aside[0] / "ensemble.pt").read_bytes() == b"an earlier ensemble"
