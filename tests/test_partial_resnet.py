"""The mask-aware ResNet: partial convolutions (Liu et al. 2018) for inputs with missing data."""

import pytest
import torch
from torch import nn

import esszoo
from esszoo.errors import ModelError
from esszoo.layers import MaskedBatchNorm2d, PartialConv2d
from esszoo.layers.padding import EarthMaxPool2d
from esszoo.models.cnn.resnet import BasicBlock, Bottleneck

DEPTHS = ["resnet18", "resnet50"]  # basic blocks and bottlenecks


def resnet(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return esszoo.create_model(name, in_channels=3, num_classes=5, width=8, **kwargs)


def field_with_holes(shape, fraction=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator)
    mask = (torch.rand(shape[0], 1, *shape[2:], generator=generator) > fraction).float()
    return x, mask


@pytest.mark.parametrize("name", DEPTHS)
def test_the_weights_keep_their_names_and_a_plain_checkpoint_loads(name):
    plain, partial = resnet(name), resnet(name, seed=1, partial_conv=True)
    assert list(partial.state_dict()) == list(plain.state_dict())
    partial.load_state_dict(plain.state_dict())
    convolutions = [m for m in partial.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in partial.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(isinstance(m, PartialConv2d) for m in convolutions)
    assert all(isinstance(m, MaskedBatchNorm2d) for m in norms)
    # the default is the plain network, built of the plain layers
    assert {type(m) for m in plain.modules() if isinstance(m, nn.Conv2d)} == {nn.Conv2d}
    assert {type(m) for m in plain.modules() if isinstance(m, nn.BatchNorm2d)} == {nn.BatchNorm2d}


@pytest.mark.parametrize("name", DEPTHS)
def test_values_under_the_holes_do_not_change_the_logits(name):
    model = resnet(name, partial_conv=True)
    x, mask = field_with_holes((2, 3, 40, 56))
    mask[..., 10:30, 20:40] = 0  # and a hole that outlives the stem
    garbage = x + 1e3 * (1 - mask)
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            assert torch.equal(model(x, mask), model(garbage, mask))
            features = model.stages(x, mask)
            assert all(
                torch.equal(a, b)
                for a, b in zip(features, model.stages(garbage, mask), strict=True)
            )


@pytest.mark.parametrize("name", DEPTHS)
def test_features_are_zero_where_their_masks_are_and_the_sum_takes_the_branch_mask(name):
    model = resnet(name, partial_conv=True).eval()
    x, mask = field_with_holes((1, 3, 96, 96))
    mask[..., 8:88, 8:88] = 0  # a hole that layer1 narrows and layer2 closes
    with torch.no_grad():
        features, masks = model.masked_stages(x, mask)
        assert masks[1].min() == 0 and masks[2].all() and masks[-1].shape[1] == 1
        assert all(torch.equal(f * m, f) for f, m in zip(features, masks, strict=True))
        # every block: the shortcut's mask lies inside the branch's, so the branch's is the union
        h, m = features[0], masks[0]
        for block in [*model.layer1, *model.layer2, *model.layer3, *model.layer4]:
            shortcut_mask = m if block.downsample is None else block.downsample[0](h, m)[1]
            h, m = block.masked_forward(h, m)
            assert torch.equal(torch.maximum(m, shortcut_mask), m)


@pytest.mark.parametrize("name", DEPTHS)
def test_with_a_full_mask_the_stem_is_the_plain_stem_away_from_the_edges(name):
    plain = resnet(name).eval()
    partial = resnet(name, partial_conv=True).eval()
    partial.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stem = partial.stages(x, torch.ones(2, 1, 64, 64))[0]  # (2, 8, 16, 16)
        plain_stem = plain.stages(x)[0]
        assert torch.equal(stem, partial.stages(x)[0])  # no mask: every point valid
    # stem point i reads input rows 4i - 5 .. 4i + 5: inside the grid for 2 <= i <= 13
    assert torch.allclose(stem[..., 2:-2, 2:-2], plain_stem[..., 2:-2, 2:-2], atol=1e-5)
    # at the edge the partial convolution rescales the window for its padded part
    assert not torch.allclose(stem[..., 0, :], plain_stem[..., 0, :], atol=1e-3)


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck])
def test_with_a_full_mask_a_block_is_the_plain_block_inside_the_grid(block):
    torch.manual_seed(0)
    plain = block(16, 4 if block is Bottleneck else 16, stride=2).eval()
    partial = block(16, 4 if block is Bottleneck else 16, stride=2, partial=True).eval()
    partial.load_state_dict(plain.state_dict())
    x = torch.randn(1, 16, 12, 12)
    with torch.no_grad():
        out, mask = partial.masked_forward(x, torch.ones(1, 1, 12, 12))
        expected = plain(x)
    # two 3x3 convolutions in a row: two points from the edge they read no padding
    assert mask.all()
    assert torch.allclose(out[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], atol=1e-5)
    assert not torch.allclose(out[..., 0, :], expected[..., 0, :], atol=1e-3)


def test_earth_padding_wraps_partial_convolutions_and_pools_masks_across_the_dateline():
    earth = resnet("resnet18", partial_conv=True, padding="earth").eval()
    padded = [m for m in earth.modules() if isinstance(m, PartialConv2d) and any(m.padding)]
    assert padded and all(m.earth for m in padded)
    assert isinstance(earth.maxpool, EarthMaxPool2d)
    x, mask = field_with_holes((1, 3, 32, 64))
    rolled = (torch.roll(x, 32, dims=-1), torch.roll(mask, 32, dims=-1))
    zeros = resnet("resnet18", partial_conv=True).eval()
    with torch.no_grad():
        # a width that divides by the total stride 32: rolling the globe keeps the logits
        assert torch.allclose(earth(*rolled), earth(x, mask), atol=1e-5)
        assert not torch.allclose(zeros(*rolled), zeros(x, mask), atol=1e-5)


def test_masks_are_checked_and_plain_nets_refuse_them():
    x, mask = field_with_holes((1, 3, 16, 16))
    with pytest.raises(ModelError, match="partial_conv=True"):
        resnet("resnet18")(x, mask)
    with pytest.raises(ModelError, match="mask"):
        resnet("resnet18", partial_conv=True)(x, mask[..., :8])
    model = resnet("resnet18", partial_conv=True).eval()
    with torch.no_grad():  # a mask per input channel, as (B, C, H, W), works too
        per_channel = model(x, mask.expand(-1, 3, -1, -1))
        assert torch.allclose(per_channel, model(x, mask), atol=1e-5)
        assert model(x[..., :1, :1], mask[..., :1, :1]).shape == (1, 5)  # a single point
