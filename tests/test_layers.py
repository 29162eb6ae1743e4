"""Shared layers: earth padding and grid checks."""

import pytest
import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, earth_pad, set_padding
from esszoo.layers.padding import EarthConv2d, EarthMaxPool2d


def test_earth_pad_wraps_longitude_and_zero_pads_latitude():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = earth_pad(x, lat=1, lon=1)
    assert padded.shape == (1, 1, 5, 6)
    assert torch.equal(padded[0, 0, 1], torch.tensor([3.0, 0, 1, 2, 3, 0]))
    assert torch.equal(padded[0, 0, 0], torch.zeros(6))


def test_a_signal_at_the_dateline_reaches_the_other_side():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    set_padding(conv, "earth")
    x = torch.zeros(1, 1, 5, 8)
    x[0, 0, 2, 0] = 1.0
    out = conv(x)[0, 0]
    assert out[2, -1] == 1.0 and out[2, 1] == 1.0 and out[2, 4] == 0.0


def test_earth_convolution_commutes_with_a_longitude_roll():
    torch.manual_seed(0)
    net = set_padding(
        nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 1, 1)), "earth"
    )
    x = torch.randn(1, 2, 6, 16)
    assert torch.allclose(net(torch.roll(x, 5, dims=-1)), torch.roll(net(x), 5, dims=-1), atol=1e-6)


def test_set_padding_keeps_parameters_and_skips_unpadded_layers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 1), nn.MaxPool2d(3, 2, 1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    set_padding(net, "earth")
    assert isinstance(net[0], EarthConv2d) and type(net[1]) is nn.Conv2d
    assert isinstance(net[2], EarthMaxPool2d)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_unknown_padding_is_an_error():
    with pytest.raises(ModelError, match="unknown padding"):
        set_padding(nn.Conv2d(1, 1, 3), "reflect-ish")


def test_check_grid_names_the_minimum():
    with pytest.raises(ModelError, match="at least 32x32 points, got 18x432"):
        check_grid(torch.zeros(1, 1, 18, 432), (32, 32), "vgg16")
    check_grid(torch.zeros(1, 1, 32, 32), (32, 32), "vgg16")


def test_earth_pad_wraps_more_than_once_on_narrow_grids():
    x = torch.tensor([[[[1.0, 2.0]]]])
    assert earth_pad(x, lat=0, lon=3)[0, 0, 0].tolist() == [2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]
