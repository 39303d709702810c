import torch

from dfcore.models import build_model
from dfcore.trainers import SimMIM


def test_mim_loss_sends_nonzero_gradients_into_every_encoder_weight():
    torch.manual_seed(0)
    mim = SimMIM(build_model("resnet10t"), mask_ratio=0.5)
    images = torch.randn(2, 3, 64, 64)
    # timm zero-initialises each residual block's last BN scale, which blocks the gradient of the
    # convs before it on the very first step; after one step every encoder weight must get one
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
    assert grads["conv1.0.weight"].abs().sum() > 0 and grads["layer4.0.conv2.weight"].abs().sum() > 0


def test_masking_ratio_is_honoured_at_the_output_stride():
    mim = SimMIM(build_model("resnet10t"), mask_ratio=0.75)
    mask = mim.random_mask(torch.zeros(3, 3, 128, 128))
    assert mim.stride == 32
    patches = mask[:, 0, ::32, ::32]
    assert patches.shape == (3, 4, 4)
    assert (patches.sum((1, 2)) == 12).all()  # 75% of 16 patches, per image
    assert torch.equal(mask, patches.repeat_interleave(32, 1).repeat_interleave(32, 2).unsqueeze(1))


def test_visible_patches_do_not_count_in_the_loss():
    torch.manual_seed(0)
    mim = SimMIM(build_model("resnet10t"), mask_ratio=0.5)
    images = torch.randn(2, 3, 64, 64)
    mask = mim.random_mask(images)
    recon = {}
    mim.decoder.register_forward_hook(lambda m, i, o: recon.setdefault("out", o.retain_grad() or o))
    loss, _, _ = mim(images, mask)
    loss.backward()
    grad = recon["out"].grad
    assert grad[(mask == 0).expand_as(grad)].abs().max() == 0
    assert grad[(mask == 1).expand_as(grad)].abs().max() > 0


def test_mim_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    mim = SimMIM(build_model("resnet10t"), mask_ratio=0.5)
    images = torch.randn(4, 3, 64, 64)
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
