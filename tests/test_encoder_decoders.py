"""Encoder-decoders (autoencoder, unet, unet3d): any grid, earth padding, masks, compression."""

from __future__ import annotations

import pytest
import torch

import esszoo
from esszoo.errors import ModelError
from esszoo.models.encoder_decoder.unet import UNet

TINY = {
    "autoencoder": dict(in_channels=2, out_channels=3, width=2, depth=3, latent_channels=2),
    "unet": dict(in_channels=2, out_channels=3, width=2),
}
# grids of real data sets: OSTIA (18 x 432), 2.5-degree reanalysis (73 x 144), RADOLAN (190 x 228)
GRIDS = [(18, 432), (73, 144), (190, 228)]


def tiny(name: str, seed: int = 0, **changes) -> torch.nn.Module:
    torch.manual_seed(seed)
    arguments = {**TINY.get(name, dict(in_channels=2, out_channels=3, width=2)), **changes}
    return esszoo.create_model(name, **arguments).eval()


def holes(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    mask = (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) > 0.3).float()
    mask[..., 5:12, 8:20] = 0  # and one large hole
    return mask


@pytest.mark.parametrize("name", ["autoencoder", "unet"])
@pytest.mark.parametrize("padding", ["zeros", "earth"])
def test_output_grid_equals_the_input_grid(name, padding):
    model = tiny(name, padding=padding)
    with torch.no_grad():
        for grid in GRIDS:
            assert model(torch.randn(1, 2, *grid)).shape == (1, 3, *grid)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("autoencoder", (1, 2, 721, 1440)),
        ("unet", (1, 2, 721, 1440)),
        ("deeplabv3plus", (1, 2, 721, 1440)),
        ("unet3d", (1, 2, 3, 721, 1440)),  # three levels of a quarter-degree global field
    ],
)
def test_a_quarter_degree_global_grid_goes_through(name, shape):
    changes = {"backbone": "resnet18", "head_width": 4} if name == "deeplabv3plus" else {}
    model = tiny(name, width=1, padding="earth", **changes)
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (1, 3, *shape[2:]) and torch.isfinite(out).all()


def roll_commutes(model, x, shift, *extra) -> bool:
    rolled = [t.roll(shift, dims=-1) for t in (x, *extra)]
    with torch.no_grad():
        return torch.allclose(model(*rolled), model(x, *extra).roll(shift, dims=-1), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "shift", "shape"),
    [
        ("unet", 16, (1, 2, 20, 48)),
        ("autoencoder", 8, (1, 2, 20, 48)),
        ("unet3d", 4, (1, 2, 5, 6, 24)),
    ],
)
def test_earth_padding_makes_the_output_roll_with_the_input(name, shift, shape):
    # the width is a multiple of the network's total stride: no padding in longitude
    x = torch.randn(*shape)
    assert roll_commutes(tiny(name, padding="earth"), x, shift)
    assert not roll_commutes(tiny(name, padding="zeros"), x, shift)  # zeros: the edge is seen


def test_partial_conv_unet_with_earth_padding_rolls_its_masks_too():
    x = torch.randn(2, 2, 20, 48)
    mask = holes(x.shape)
    model = tiny("unet", partial_conv=True, batch_norm=True, padding="earth")
    assert roll_commutes(model, x * mask, 16, mask)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("mask_channels", [1, 2])
def test_partial_conv_unet_ignores_the_values_under_the_holes(batch_norm, mask_channels):
    model = tiny("unet", partial_conv=True, batch_norm=batch_norm).train()  # batch statistics
    x = torch.randn(2, 2, 23, 37)
    mask = holes((2, mask_channels, 23, 37))
    garbage = x + 1e3 * torch.randn_like(x) * (1 - mask)
    out = model(x, mask)
    assert torch.equal(out, model(garbage, mask))
    assert torch.isfinite(out).all() and out[..., 8, 14].abs().sum() > 0  # the hole is filled
    assert not torch.equal(out, model(x, torch.ones_like(mask)))  # the mask matters


@pytest.mark.parametrize("batch_norm", [False, True])
def test_partial_conv_unet_has_the_plain_unet_s_weights(batch_norm):
    plain = tiny("unet", batch_norm=batch_norm)
    partial = tiny("unet", batch_norm=batch_norm, partial_conv=True)
    assert list(partial.state_dict()) == list(plain.state_dict())
    partial.load_state_dict(plain.state_dict())


def test_unet_masks_go_with_partial_conv_only():
    x = torch.randn(1, 2, 16, 16)
    with pytest.raises(ModelError, match="needs a validity mask"):
        tiny("unet", partial_conv=True)(x)
    with pytest.raises(ModelError, match="takes no mask"):
        tiny("unet")(x, torch.ones(1, 1, 16, 16))
    with pytest.raises(ModelError, match="mask has shape"):
        tiny("unet", partial_conv=True)(x, torch.ones(1, 3, 16, 16))


def test_unet_has_the_paper_s_23_convolutions_and_channels():
    model = UNet(in_channels=1, out_channels=2)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    upconvolutions = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convolutions) + len(upconvolutions) == 23
    assert [block.conv2.out_channels for block in model.encoder] == [64, 128, 256, 512, 1024]
    assert [up.out_channels for up in upconvolutions] == [512, 256, 128, 64]


@pytest.mark.parametrize(
    ("depth", "latent", "grid", "ratio"),
    [(3, 2, (16, 32), 2 * 64 / 2), (2, 4, (20, 36), 2 * 16 / 4), (2, 1, (73, 144), None)],
)
def test_autoencoder_compression_ratio_is_what_the_code_keeps(depth, latent, grid, ratio):
    model = tiny("autoencoder", depth=depth, latent_channels=latent)
    x = torch.randn(1, 2, *grid)
    with torch.no_grad():
        code = model.encode(x)
        assert torch.equal(model.decode(code, grid), model(x))
    assert code.shape[-2:] == model.latent_grid(*grid)
    assert model.compression_ratio(grid) == pytest.approx(x.numel() / code.numel())
    if ratio is not None:  # 2^depth divides the grid: the nominal ratio
        assert model.compression_ratio() == ratio == model.compression_ratio(grid)
    else:
        assert model.compression_ratio(grid) < model.compression_ratio()


@pytest.mark.parametrize("volume", [(3, 18, 40), (1, 7, 30), (5, 12, 20), (2, 3, 1)])
@pytest.mark.parametrize("padding", ["zeros", "earth"])
def test_unet3d_takes_non_cubic_volumes(volume, padding):
    model = tiny("unet3d", padding=padding)
    with torch.no_grad():
        assert model(torch.randn(2, 2, *volume)).shape == (2, 3, *volume)


def test_unet3d_refuses_fields_and_names_the_volume_shape():
    with pytest.raises(ModelError, match="volumes"):
        tiny("unet3d")(torch.randn(1, 2, 12, 20))
