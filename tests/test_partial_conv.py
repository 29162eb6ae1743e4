"""Partial convolutions (Liu et al. 2018) and masked batch norm."""

import torch
from torch import nn

from esszoo.layers import MaskedBatchNorm2d, PartialConv2d, PartialConv3d, set_padding


def holes(shape, fraction=0.4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=generator) > fraction).float()


def test_with_nothing_missing_it_is_an_ordinary_convolution_inside_the_grid():
    torch.manual_seed(0)
    partial = PartialConv2d(3, 4, 3, padding=1)
    plain = nn.Conv2d(3, 4, 3, padding=1)
    plain.load_state_dict(partial.state_dict())
    x = torch.randn(2, 3, 10, 12)
    out, mask = partial(x, torch.ones(2, 1, 10, 12))
    assert torch.allclose(out[..., 1:-1, 1:-1], plain(x)[..., 1:-1, 1:-1], atol=1e-5)
    assert mask.shape == (2, 1, 10, 12) and mask.all()


def test_a_constant_field_stays_constant_whatever_the_holes():
    conv = PartialConv2d(1, 1, 5, padding=2, bias=False)
    nn.init.constant_(conv.weight, 1.0 / 25)
    mask = holes((1, 1, 16, 16))
    out, new_mask = conv(torch.full((1, 1, 16, 16), 7.0) * mask, mask)
    assert torch.allclose(out[new_mask.bool()], torch.tensor(7.0))  # Eq. 1's rescaling


def test_values_under_the_holes_do_not_matter_and_holes_shrink():
    torch.manual_seed(0)
    conv = PartialConv2d(2, 3, 3, padding=1)
    mask = torch.ones(1, 1, 9, 9)
    mask[..., 2:7, 2:7] = 0  # a 5x5 hole
    x = torch.randn(1, 2, 9, 9)
    garbage = x + 100.0 * (1 - mask)
    out, new_mask = conv(x, mask)
    assert torch.equal(out, conv(garbage, mask)[0])
    assert new_mask[..., 3:6, 3:6].sum() == 0 and new_mask[..., 2, 2] == 1  # Eq. 2
    assert (out[..., 4, 4] == 0).all()


def test_per_channel_masks_count_each_variable_s_own_gaps():
    conv = PartialConv2d(2, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    mask = torch.ones(1, 2, 5, 5)
    mask[:, 1] = 0  # the second variable is missing everywhere
    x = torch.ones(1, 2, 5, 5)
    out, new_mask = conv(x * mask, mask)
    assert torch.allclose(out[..., 2, 2], torch.tensor(18.0))  # 9 valid of 18, scaled by 2
    assert new_mask.all()


def test_earth_padding_wraps_values_and_masks_in_longitude():
    conv = PartialConv2d(1, 1, 3, padding=1, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    set_padding(conv, "earth")
    assert conv.earth
    x = torch.zeros(1, 1, 4, 6)
    x[..., 1, 0] = 9.0
    out, _ = conv(x, torch.ones(1, 1, 4, 6))
    assert out[0, 0, 1, -1] > 0  # the other side of the dateline sees it


def test_partial_conv3d_on_volumes():
    conv = PartialConv3d(1, 2, 3, padding=1)
    mask = holes((1, 1, 4, 6, 8))
    out, new_mask = conv(torch.randn(1, 1, 4, 6, 8) * mask, mask)
    assert out.shape == (1, 2, 4, 6, 8) and new_mask.shape == (1, 1, 4, 6, 8)


def test_masked_batch_norm_ignores_the_holes():
    norm = MaskedBatchNorm2d(2).train()
    x = torch.randn(4, 2, 6, 6)
    mask = holes((4, 1, 6, 6))
    polluted = x + 1e4 * (1 - mask)
    out = norm(polluted, mask)
    valid = x.permute(1, 0, 2, 3)[:, mask[:, 0].bool()]
    expected = (valid - valid.mean(1, keepdim=True)) / (
        valid.var(1, unbiased=False, keepdim=True) + 1e-5
    ).sqrt()
    assert torch.allclose(out.permute(1, 0, 2, 3)[:, mask[:, 0].bool()], expected, atol=1e-4)
    assert torch.allclose(norm.running_mean, 0.1 * valid.mean(1), atol=1e-5)
