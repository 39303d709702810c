import pytest
import torch
from safetensors.torch import load_file

from dfcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dfcore.models import Ensemble, build_model, classifier_names, data_config, load_backbone_state, load_classifier
from dfcore.models import save_ensemble
from dfcore.trainers import backbone_state


@pytest.mark.parametrize("name,size", [("resnet10t", 32), ("vit_tiny_patch16_224", 32), ("efficientnet_b0", 32)])
def test_builds_a_two_class_model_with_normalisation_from_its_config(name, size):
    model = build_model(name, image_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 2)
    cfg = data_config(model)
    assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3


def test_backbone_state_loads_every_weight_but_the_classifier(tmp_path):
    source = build_model("resnet10t")
    state = backbone_state(source)
    assert set(source.state_dict()) - set(state) == classifier_names(source) == {"fc.weight", "fc.bias"}
    save_checkpoint({"kind": "mim-backbone", "backbone": "resnet10t", "model": state}, tmp_path / "b.pt")
    target = build_model("resnet10t", mim_checkpoint=tmp_path / "b.pt")
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key


def test_backbone_state_with_a_missing_key_is_refused():
    model = build_model("resnet10t")
    state = backbone_state(model)
    state.pop("conv1.0.weight")
    with pytest.raises(CheckpointError, match="conv1.0.weight"):
        load_backbone_state(model, state)


def test_missing_weights_file_and_wrong_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model("resnet10t", pretrained_file=tmp_path / "nothing.safetensors")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dfcore checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    save_checkpoint({"kind": "mim-backbone", "backbone": "resnet10t", "model": {}}, tmp_path / "r.pt")
    with pytest.raises(CheckpointError, match="'resnet10t' model, not 'efficientnet_b0'"):
        build_model("efficientnet_b0", mim_checkpoint=tmp_path / "r.pt")


def test_checkpoint_write_is_atomic_and_round_trips(tmp_path):
    model = build_model("resnet10t")
    save_checkpoint({"kind": "classifier", "backbone": "resnet10t", "image_size": 32, "model": model.state_dict()},
                    tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind
    loaded, state = load_classifier(tmp_path / "c.pt")
    assert state["backbone"] == "resnet10t"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_a_crash_half_way_through_a_checkpoint_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = save_checkpoint({"kind": "classifier", "epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(before[: len(before) // 2])  # half a file, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"kind": "classifier", "epoch": 2}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


@pytest.mark.parametrize("name", ["mobilenetv2_100", "tf_efficientnet_lite0", "resnet10t"])
def test_a_timm_weights_file_written_here_is_loaded_through_the_local_file_path(tmp_path, name):
    from safetensors.torch import save_file

    import timm

    torch.manual_seed(1)
    imagenet = timm.create_model(name, num_classes=1000)  # stands in for a downloaded timm weights file
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()}, path)
    model = build_model(name, pretrained_file=path)
    head = classifier_names(model)
    expected = imagenet.state_dict()
    body = [k for k in model.state_dict() if k not in head and k in expected]
    assert len(body) == len(expected) - len(head) and body
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in body)
    assert model.get_classifier().out_features == 2 and model.get_classifier().weight.std() < 0.02


@pytest.mark.parametrize("name", ["mobilenetv2_100", "tf_efficientnet_lite0"])
def test_local_imagenet_weights_file_is_loaded(shared_dir, name):
    path = shared_dir / "weights" / f"{name}.imagenet.safetensors"
    model = build_model(name, pretrained_file=path)
    expected = load_file(path)
    head = classifier_names(model)
    loaded = {k: v for k, v in model.state_dict().items() if k not in head and k in expected}
    assert len(loaded) == len([k for k in expected if k not in head and not k.startswith("classifier")])
    assert all(torch.equal(v, expected[k]) for k, v in loaded.items())
    assert model.get_classifier().out_features == 2


FAMILIES = [  # (timm name, input size): MViTv2 needs a multiple of 32; the hybrid is a ResNet-stem ViT
    ("mvitv2_tiny", 64), ("vit_tiny_patch16_224", 32), ("vit_small_patch16_224", 32), ("vit_base_patch16_224", 32),
    ("efficientnet_b0", 32), ("efficientnet_b1", 32), ("vit_tiny_r_s16_p8_224", 32),
]


@pytest.mark.parametrize("name,size", FAMILIES)
def test_every_family_builds_trains_one_step_and_round_trips(tmp_path, name, size):
    torch.manual_seed(0)
    model = build_model(name, image_size=size, drop_rate=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, size, size)), torch.tensor([0, 1]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    save_checkpoint({"kind": "classifier", "backbone": name, "image_size": size, "drop_rate": 0.1,
                     "model": model.state_dict()}, tmp_path / "c.pt")
    loaded, _ = load_classifier(tmp_path / "c.pt")
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-5)


@pytest.mark.parametrize("name", ["mobilenetv2_100", "efficientnet_b0", "resnet10t", "vit_tiny_patch16_224"])
def test_a_new_two_class_head_is_initialised_small(name):
    head = build_model(name, image_size=64).get_classifier()
    assert head.weight.std() < 0.02  # timm's own EfficientNet/MobileNet init gives 0.41 for two classes
    assert torch.count_nonzero(head.bias) == 0


def test_imagenet_initialised_model_starts_near_chance_on_real_faces(shared_dir):
    from dfcore.datasets import build_manifest, split_loader

    root = shared_dir / "data" / "dfdc_faces_small"
    model = build_model("mobilenetv2_100", pretrained_file=shared_dir / "weights" / "mobilenetv2_100.imagenet.safetensors")
    cfg = data_config(model)
    manifest = build_manifest(root).manifest
    frames = {"val": manifest[manifest["split"] == "val"].sample(64, random_state=0)}
    images, labels = next(iter(split_loader(frames, root, "val", image_size=128, mean=cfg["mean"], std=cfg["std"],
                                            batch_size=64)))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model.eval()(images), labels)
    assert abs(loss.item() - 0.693) < 0.15  # with timm's own head init: 5.3


def _classifier_checkpoint(path, *, seed, image_size=32, face_crop=None, name="resnet10t"):
    torch.manual_seed(seed)
    model = build_model(name, image_size=image_size)
    save_checkpoint({"kind": "classifier", "backbone": name, "image_size": image_size, "drop_rate": 0.0,
                     "init": "none", "epoch": seed, "face_crop": face_crop, "model": model.state_dict()}, path)
    return model.eval()


def test_an_ensemble_checkpoint_scores_the_mean_of_its_members_logits(tmp_path):
    first = _classifier_checkpoint(tmp_path / "a.pt", seed=0)
    second = _classifier_checkpoint(tmp_path / "b.pt", seed=1)
    save_ensemble([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "ensemble.pt")
    model, state = load_classifier(tmp_path / "ensemble.pt")
    assert isinstance(model, Ensemble) and not model.training
    assert state["image_size"] == 32 and [m["source"] for m in state["members"]] == [str(tmp_path / "a.pt"),
                                                                                     str(tmp_path / "b.pt")]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = (first(x) + second(x)) / 2
        assert not torch.allclose(first(x), second(x))
        torch.testing.assert_close(model(x), expected)
    assert data_config(model)["mean"] == data_config(first)["mean"]


def test_ensemble_members_that_score_different_inputs_are_refused_by_name(tmp_path):
    _classifier_checkpoint(tmp_path / "a.pt", seed=0)
    _classifier_checkpoint(tmp_path / "b.pt", seed=1, image_size=64)
    with pytest.raises(CheckpointError, match=r"b\.pt has image_size 64"):
        save_ensemble([tmp_path / "a.pt", tmp_path / "b.pt"], tmp_path / "ensemble.pt")
    _classifier_checkpoint(tmp_path / "c.pt", seed=2, face_crop={"margin": 0.3})
    with pytest.raises(CheckpointError, match=r"c\.pt has face_crop"):
        save_ensemble([tmp_path / "a.pt", tmp_path / "c.pt"], tmp_path / "ensemble.pt")
    _classifier_checkpoint(tmp_path / "v.pt", seed=3, name="vit_tiny_patch16_224")  # mean and std 0.5
    with pytest.raises(CheckpointError, match=r"v\.pt'\] normalise their input differently"):
        save_ensemble([tmp_path / "a.pt", tmp_path / "v.pt"], tmp_path / "ensemble.pt")
    assert not (tmp_path / "ensemble.pt").exists()
