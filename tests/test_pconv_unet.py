"""The partial-convolution U-Net (Liu et al. 2018) and Kadow et al.'s (2020) configuration."""

import pytest
import torch
from torch import nn

import esszoo
from esszoo.errors import ModelError
from esszoo.layers import PartialConv2d

TINY = dict(in_channels=2, out_channels=2, encoder_layers=3, width=4)


def tiny(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return esszoo.create_model("pconv_unet", **{**TINY, **overrides})


def field_with_holes(shape, fraction=0.4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator)
    mask = (torch.rand(shape[0], 1, *shape[2:], generator=generator) > fraction).float()
    return x, mask


def test_values_under_the_holes_do_not_change_the_reconstruction():
    model = tiny()
    x, mask = field_with_holes((2, 2, 20, 28))
    garbage = x + 1e3 * (1 - mask)
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            assert torch.equal(model(x, mask), model(garbage, mask))


def test_a_hole_is_filled_once_enough_levels_have_closed_it():
    x, mask = field_with_holes((1, 2, 64, 64), fraction=0.0)
    mask[..., 20:44, 20:44] = 0  # a 24 x 24 hole: three strided levels close it
    with torch.no_grad():
        deep = tiny(encoder_layers=3).eval()(x * mask, mask)
        shallow = tiny(encoder_layers=2).eval()(x * mask, mask)
    assert torch.isfinite(deep).all() and (deep[..., 28:36, 28:36] != 0).all()
    # two levels leave the hole's centre missing: a partial convolution outputs zero there
    assert (shallow[..., 31:33, 31:33] == 0).all() and (shallow[..., :8, :8] != 0).any()


@pytest.mark.parametrize("grid", [(1, 1), (5, 7), (37, 19), (73, 144), (721, 1440)])
def test_the_output_grid_is_the_input_grid(grid):
    model = tiny().eval()
    x, mask = field_with_holes((1, 2, *grid))
    with torch.no_grad():
        out = model(x, mask)
    assert out.shape == (1, 2, *grid) and torch.isfinite(out).all()


def test_a_shared_mask_equals_the_same_mask_per_channel():
    model = tiny().eval()
    x, mask = field_with_holes((2, 2, 16, 24))
    with torch.no_grad():
        assert torch.allclose(model(x, mask), model(x, mask.expand(-1, 2, -1, -1)), atol=1e-6)


def test_liu_layer_table():
    with torch.device("meta"):
        model = esszoo.create_model("pconv_unet", in_channels=3, out_channels=3)
    encoder = [layer.conv for layer in model.encoder]
    decoder = [layer.conv for layer in model.decoder]
    assert [c.kernel_size[0] for c in encoder] == [7, 5, 5, 3, 3, 3, 3, 3]
    assert all(c.stride == (2, 2) for c in encoder)
    assert [c.out_channels for c in encoder] == [64, 128, 256] + [512] * 5
    # PConv9 .. PConv16: [upsampled, skip] -> skip channels, 3x3, stride 1
    assert [c.in_channels for c in decoder] == [1024] * 4 + [768, 384, 192, 67]
    assert [c.out_channels for c in decoder] == [512] * 4 + [256, 128, 64, 3]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in decoder)
    assert all(isinstance(c, PartialConv2d) for c in encoder + decoder)
    # batch norm everywhere but in PConv1 and PConv16; a bias in PConv16 only
    layers = list(model.encoder) + list(model.decoder)
    assert [layer.norm is None for layer in layers] == [True] + [False] * 14 + [True]
    assert [layer.conv.bias is not None for layer in layers] == [False] * 15 + [True]
    assert all(isinstance(layer.activation, nn.ReLU) for layer in model.encoder)
    leaky = [layer.activation for layer in model.decoder[:-1]]
    assert all(isinstance(a, nn.LeakyReLU) and a.negative_slope == 0.2 for a in leaky)
    assert isinstance(model.decoder[-1].activation, nn.Identity)


def test_kadow_configuration():
    with torch.device("meta"):
        model = esszoo.create_model("pconv_unet", in_channels=1, out_channels=1, config="kadow2020")
    assert [layer.conv.kernel_size[0] for layer in model.encoder] == [7, 5, 3]
    assert [layer.conv.out_channels for layer in model.encoder] == [18, 36, 72]
    assert [layer.conv.in_channels for layer in model.decoder] == [108, 54, 19]
    assert (
        esszoo.count_parameters("pconv_unet", in_channels=1, out_channels=1, config="kadow2020")
        == 84_646
    )
    assert "84,646" in esszoo.model_card("pconv_unet").reference_note


def test_arguments_override_the_configuration():
    with torch.device("meta"):
        model = esszoo.create_model(
            "pconv_unet", in_channels=1, out_channels=1, config="kadow2020", encoder_layers=4
        )
    assert [layer.conv.kernel_size[0] for layer in model.encoder] == [7, 5, 5, 3]
    assert [layer.conv.out_channels for layer in model.encoder] == [18, 36, 72, 144]


def test_bad_configurations_and_masks_are_named():
    with pytest.raises(ModelError, match="kadow2020"):
        esszoo.create_model("pconv_unet", in_channels=1, out_channels=1, config="kadow")
    with pytest.raises(ModelError, match="kernel_sizes"):
        tiny(kernel_sizes=(7, 5))
    x, mask = field_with_holes((1, 2, 8, 8))
    with pytest.raises(ModelError, match="mask"):
        tiny()(x, mask.expand(-1, 3, -1, -1))


def test_earth_padding_wraps_every_partial_convolution_and_the_internal_padding():
    earth = tiny(padding="earth").eval()
    assert all(m.earth for m in earth.modules() if isinstance(m, PartialConv2d))
    x, mask = field_with_holes((1, 2, 16, 24))
    rolled = (torch.roll(x, 8, dims=-1), torch.roll(mask, 8, dims=-1))
    with torch.no_grad():
        # a grid whose width divides by 2^3: rolling by 8 columns rolls the output
        assert torch.allclose(earth(*rolled), torch.roll(earth(x, mask), 8, dims=-1), atol=1e-5)
        zeros = tiny().eval()
        assert not torch.allclose(zeros(*rolled), torch.roll(zeros(x, mask), 8, dims=-1))
        # a width that needs internal padding gets real columns from across the dateline
        narrow = field_with_holes((1, 2, 16, 21))
        assert not torch.allclose(earth(*narrow), zeros(*narrow))


def test_masked_batch_norm_keeps_the_holes_out_of_the_statistics():
    x, mask = field_with_holes((4, 2, 32, 32))
    mask[..., 4:28, 4:28] = 0  # PConv2's output still has a 3 x 3 hole
    masked, plain = tiny(masked_batch_norm=True).train(), tiny().train()
    masked(x, mask)
    plain(x, mask)
    norm = masked.encoder[1].norm
    assert not torch.allclose(norm.running_mean, plain.encoder[1].norm.running_mean)
    assert torch.equal(masked(x, mask), masked(x + 1e3 * (1 - mask), mask))
