import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dfcore.checkpoint import load_checkpoint, save_checkpoint
from dfcore.models import build_model
from dfcore.runtime import seed_everything
from dfcore.trainers import MAE, SimMIM, backbone_state, build_mim, pretrain

CPU = torch.device("cpu")
# (backbone, image side, mask ratio): a CNN (SimMIM, pixel mask token), a ViT (MAE) and a
# hierarchical transformer (SimMIM, mask token after the patch embedding), all tiny
CASES = [("resnet10t", 64, 0.5), ("vit_tiny_patch16_224", 64, 0.75), ("mvitv2_tiny", 64, 0.5)]
IDS = [c[0] for c in CASES]


def _mim(name, size, ratio, norm_pix=False):
    torch.manual_seed(0)
    return build_mim(build_model(name, image_size=size), mask_ratio=ratio, norm_pix=norm_pix,
                     decoder_dim=64, decoder_depth=1, decoder_heads=4)


def test_the_method_follows_the_backbone_structure():
    assert isinstance(_mim(*CASES[1]), MAE)
    mvit, cnn = _mim(*CASES[2]), _mim(*CASES[0])
    assert isinstance(mvit, SimMIM) and mvit.token_stride == 4 and mvit.stride == 32
    assert isinstance(cnn, SimMIM) and cnn.token_stride == 1 and cnn.stride == 32


@pytest.mark.parametrize("name,size,ratio", CASES, ids=IDS)
def test_mim_loss_sends_nonzero_gradients_into_every_encoder_weight(name, size, ratio):
    mim = _mim(name, size, ratio)
    images = torch.randn(2, 3, size, size)
    # timm zero-initialises each residual block's last BN scale in resnets, which blocks the gradient
    # of the convs before it on the very first step; after one step every encoder weight must get one
    opt = torch.optim.SGD(mim.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss, _, _ = mim(images)
        loss.backward()
        opt.step()
    head = {id(p) for p in mim.encoder.get_classifier().parameters()}
    grads = {n: p.grad for n, p in mim.encoder.named_parameters() if id(p) not in head}
    without = [n for n, g in grads.items() if g is None or g.abs().sum() == 0]
    assert without == []
    assert len(grads) > 20


def test_masking_ratio_is_honoured_at_the_output_stride():
    mim = _mim("resnet10t", 128, 0.75)
    mask = mim.random_mask(torch.zeros(3, 3, 128, 128))
    patches = mask[:, 0, ::32, ::32]
    assert patches.shape == (3, 4, 4)
    assert (patches.sum((1, 2)) == 12).all()  # 75% of 16 patches, per image
    assert torch.equal(mask, patches.repeat_interleave(32, 1).repeat_interleave(32, 2).unsqueeze(1))


def test_mae_encoder_sees_only_the_visible_patches():
    mim = _mim(*CASES[1])  # 64 px: 16 patches of 16 px, 12 masked
    seen = []
    mim.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    mim(torch.randn(2, 3, 64, 64))
    assert seen == [torch.Size([2, 1 + 4, 192])]  # the class token and the 4 visible patches


def test_simmim_replaces_masked_patch_embeddings_by_the_mask_token_before_the_blocks():
    mim = _mim(*CASES[2])  # MViTv2: 4-pixel patch embeddings, 32-pixel mask patches
    images = torch.randn(2, 3, 64, 64)
    mask = mim.random_mask(images)
    tokens = []
    mim.encoder.stages[0].register_forward_hook(lambda m, i, o: tokens.append(i[0]))
    loss, _, _ = mim(images, mask)
    masked = mask[:, 0, ::4, ::4].flatten(1).bool()  # B x 256 patch embeddings
    assert masked.float().mean() == 0.5
    assert torch.equal(tokens[0][masked], mim.mask_token.expand(int(masked.sum()), -1))
    assert not torch.isclose(tokens[0][~masked], mim.mask_token).all(-1).any()
    loss.backward()
    assert mim.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize("name,size,ratio", CASES, ids=IDS)
def test_masked_pixels_never_reach_the_encoder(name, size, ratio):
    mim = _mim(name, size, ratio).eval()
    images = torch.randn(2, 3, size, size)
    mask = mim.random_mask(images)
    features = []
    last = mim.encoder.norm if hasattr(mim.encoder, "norm") else mim.encoder.layer4
    last.register_forward_hook(lambda m, i, o: features.append(o))
    with torch.no_grad():
        mim(images, mask)
        mim(images + 5 * torch.randn_like(images) * mask, mask)  # other pixels in the masked patches only
        mim(images + 5 * torch.randn_like(images) * (1 - mask), mask)  # other visible pixels
    assert torch.allclose(features[0], features[1], atol=1e-5)
    assert not torch.allclose(features[0], features[2], atol=1e-3)


@pytest.mark.parametrize("norm_pix", [False, True])
@pytest.mark.parametrize("name,size,ratio", CASES, ids=IDS)
def test_visible_patches_do_not_count_in_the_loss(name, size, ratio, norm_pix):
    mim = _mim(name, size, ratio, norm_pix=norm_pix)
    images = torch.randn(2, 3, size, size)
    mask = mim.random_mask(images)
    predicted = {}
    predict = mim.predict

    def spy(*args):
        predicted["out"] = out = predict(*args)
        out.retain_grad()
        return out

    mim.predict = spy
    loss, _, _ = mim(images, mask)
    loss.backward()
    grad = predicted["out"].grad
    assert grad[(mask == 0).expand_as(grad)].abs().max() == 0
    assert grad[(mask == 1).expand_as(grad)].abs().max() > 0


@pytest.mark.parametrize("name,size,ratio", CASES, ids=IDS)
def test_mim_loss_falls_on_a_fixed_batch(name, size, ratio):
    mim = _mim(name, size, ratio)
    images = torch.randn(4, 3, size, size)
    mask = mim.random_mask(images)
    opt = torch.optim.AdamW(mim.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss, _, _ = mim(images, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("name,head", [("vit_tiny_patch16_224", {"head.weight", "head.bias"}),
                                       ("mvitv2_tiny", {"head.fc.weight", "head.fc.bias"})])
def test_pretrained_backbone_loads_every_weight_and_only_the_classifier_is_new(tmp_path, name, head):
    mim = _mim(name, 64, 0.5)
    state = backbone_state(mim.encoder)
    assert not any("decoder" in k or "mask_token" in k for k in state)
    save_checkpoint({"kind": "mim-backbone", "backbone": name, "model": state}, tmp_path / "b.pt")
    target = build_model(name, image_size=64, mim_checkpoint=tmp_path / "b.pt")
    assert set(target.state_dict()) - set(state) == head
    assert set(state) <= set(target.state_dict())
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value), key


def _pretrain(tmp_path, epochs, resume=False):
    seed_everything(0)
    mim = _mim("resnet10t", 64, 0.5)
    images = torch.randn(24, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(images[:16], torch.zeros(16)), batch_size=8, shuffle=True,
                        generator=torch.Generator())
    history = pretrain(mim, loader, epochs=epochs, lr=1e-3, out_dir=tmp_path, device=CPU, resume=resume,
                       watch=images[16:20], snapshots=3, meta={"backbone": "resnet10t", "image_size": 64})
    return mim, history


def test_pretrain_writes_backbone_history_and_reconstructions_and_resumes_to_the_same_result(tmp_path, interrupt_at):
    full, full_history = _pretrain(tmp_path / "full", epochs=3)
    assert {"train_loss", "val_loss", "lr"} <= set(full_history)
    assert len(pd.read_csv(tmp_path / "full" / "steps.csv")) == 3 * 2  # two steps an epoch
    shown = load_checkpoint(tmp_path / "full" / "reconstructions.pt", kind="mim-reconstructions")
    assert sorted(shown["recon"]) == [0, 2, 3]  # before training, and after epochs 2 and 3
    assert shown["recon"][3].shape == shown["images"].shape == (4, 3, 64, 64)
    assert load_checkpoint(tmp_path / "full" / "backbone.pt", backbone="resnet10t", kind="mim-backbone")
    interrupt_at(2)
    with pytest.raises(KeyboardInterrupt):
        _pretrain(tmp_path / "cut", epochs=3)
    assert not (tmp_path / "cut" / "backbone.pt").exists()
    resumed, resumed_history = _pretrain(tmp_path / "cut", epochs=3, resume=True)
    pd.testing.assert_frame_equal(full_history.drop(columns="train_images_per_s"),
                                  resumed_history.drop(columns="train_images_per_s"))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    steps = [pd.read_csv(tmp_path / run / "steps.csv") for run in ("full", "cut")]
    pd.testing.assert_frame_equal(*steps)
    resumed_shown = load_checkpoint(tmp_path / "cut" / "reconstructions.pt", kind="mim-reconstructions")
    assert all(torch.equal(shown["recon"][k], resumed_shown["recon"][k]) for k in shown["recon"])


def test_mim_learns_from_extra_folders_but_never_from_validation_or_test_images(kaggle_root, tmp_path):
    import shutil

    from conftest import write_image
    from dfcore.datasets import build_manifest, save_manifests
    import dataclasses

    from dfcore.params import load_config
    from dfcore.stages.training import mim_images

    save_manifests(build_manifest(kaggle_root), tmp_path / "reports" / "smoke" / "manifests")
    extra = tmp_path / "extra"
    write_image(extra / "real" / "new_0.jpg", seed=100)
    write_image(extra / "fake" / "new_1.jpg", seed=101)
    shutil.copy(kaggle_root / "Validation" / "Real" / "VaR0.jpg", extra / "real" / "copied.jpg")  # a leak
    config = load_config("02_mim_pretrain", "smoke", reports_root=str(tmp_path / "reports"), mim_extra_sets=[str(extra)])
    images, counts = mim_images(config)
    assert counts == {"train": 6, "extra": 2}
    assert sorted(p.rsplit("/", 1)[-1] for p in images["path"] if p.startswith(str(extra))) == ["new_0.jpg", "new_1.jpg"]
    assert all(p.startswith("/") for p in images["path"])
    assert mim_images(dataclasses.replace(config, mim_images="real", mim_extra_sets=[]))[1] == {"train": 3}
    mim = build_mim(build_model("resnet10t", image_size=64), mask_ratio=0.5, mask_patch=16)
    mask = mim.random_mask(torch.zeros(2, 3, 64, 64))
    assert mask.mean() == 0.5 and mask[0, 0].unfold(0, 16, 16).unfold(1, 16, 16).std((-1, -2)).max() == 0
