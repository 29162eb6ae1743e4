"""Partial-convolution U-Net: inpainting irregular holes, and missing climate observations.

Paper: Liu, Reda, Shih, Wang, Tao & Catanzaro (2018), "Image Inpainting for Irregular Holes
Using Partial Convolutions", ECCV, arXiv:1804.07723. A U-Net in which every convolution is
a partial convolution (Section 3.1, `esszoo.layers.partial_conv`): each layer reads only
the valid points under its window, rescaled for the share of the window they fill, and
passes on an updated mask, valid wherever the window saw one valid point. The holes shrink
at every level, and the decoder fills them from what the encoder gathered around them.
Kadow, Hall & Ulbrich (2020), "Artificial intelligence reconstructs missing climate
information", Nature Geoscience 13, 408-413 (doi:10.1038/s41561-020-0582-5), train it on
20CR reanalysis and CMIP5 temperatures and fill the gaps of HadCRUT4 with it.

Paper to code (Section 3.2, "Network Architecture and Implementation", and the layer
table of the supplementary material):

- Encoder, PConv1 .. PConv8: partial convolutions of stride 2 with kernels 7, 5, 5, 3, 3,
  3, 3, 3 and 64, 128, 256, 512, 512, 512, 512, 512 channels, each followed by batch norm
  (not PConv1) and a ReLU: ``PConvUNet.encoder``. ``width`` (64) is PConv1's channels,
  doubled at each layer up to 8 x width; ``encoder_layers`` (8) is the depth.
- Decoder, PConv9 .. PConv16: each level upsamples the features and their mask by 2
  (nearest neighbour), concatenates the features and the mask that the encoder left at
  the same grid, and applies a 3x3 partial convolution, batch norm and LeakyReLU with
  slope 0.2: ``PConvUNet.decoder``. The concatenated mask has one channel per feature
  channel, so the layer's sum(M) counts each part's valid points, as Liu et al. concatenate
  masks alongside features. The last level concatenates the input field and its mask, so
  that the network can copy the known values, and has neither batch norm nor activation.
- Partial convolution as padding: a window hanging over the edge of the grid treats the
  outside as a hole (zero values, zero mask) and is rescaled like a window over a hole.
- Output: the raw prediction, I_out in the paper, (B, out_channels, H, W). Its composite
  I_comp (I_out with the known points put back) and the losses of Section 3.3 (valid,
  hole, perceptual, style and total-variation terms, VGG-16 features) belong to the task.

Configurations (``config``):

- ``"liu2018"``, the default: the paper's network, eight levels, 64 .. 512 channels.
  Reference count 32,859,732 at 3 input and 3 output channels (the paper gives none;
  counted here, with a bias in the last layer only, see below).
- ``"kadow2020"``: the network of Kadow et al.'s code (CRAI, github.com/FREVA-CLINT/
  climatereconstructionAI) for their 72 x 72 temperature grids (``--image-size 72
  --encoding-layers 3 --pooling-layers 0``): three levels whose channels follow the grid,
  72/4, 72/2 and 72 (18, 36, 72), kernels 7, 5, 3 (first 7, last 3, 5 between), and
  otherwise Liu's layers (no batch norm in the first and last layers, LeakyReLU 0.2, a
  bias in the last layer only), one input and one output channel: 84,646 parameters.
  This is CRAI's early network; later CRAI versions keep a batch norm in the first layer
  unless ``--disable-first-bn`` (36 more parameters) and use LeakyReLU's default slope
  0.01. The configuration is read from the code, not from the paper's text.
  ``encoder_layers``, ``width`` and ``kernel_sizes`` override a configuration's values;
  with ``encoder_layers`` alone, kernels follow the configuration's rule.

Any grid. The encoder halves the grid ``encoder_layers`` times, so the field and its mask
are padded inside the network to the next multiple of 2^encoder_layers in each direction
(half before, half after; `esszoo.layers.grid_padding`), the padded points missing (mask
0), and the output is cropped back: 18 x 432, 73 x 144, 190 x 228, 721 x 1440 and a single
point all work. With ``padding="earth"`` the padding and every partial convolution wrap
around in longitude, values and mask alike, so the padded columns are the real field from
the other side of the dateline.

Departures and choices:

- Biases. The paper does not say which layers have one. As in the PyTorch implementations
  Kadow et al. build on, only the last layer does; a batch norm's shift makes a bias
  redundant in the others. This fixes the parameter counts above.
- Batch norm counts every point of the grid, holes and padding included, as in the paper
  and in CRAI's default. ``masked_batch_norm=True`` takes the batch statistics from the
  valid points only (`MaskedBatchNorm2d`, CRAI's ``--masked-bn``), which matters where the
  internal padding is large (a 73 x 144 grid fills a 256 x 256 one at eight levels). Liu
  et al.'s second training stage freezes the encoder's batch norms; that is the task's
  choice (``encoder[i].norm.eval()``), not the model's.
- Grids. Liu et al. train on 512 x 512 images, Kadow et al. on 72 x 72 grids; the
  internal padding is esszoo's, for any grid.
- Weights start from PyTorch's default initialization.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError, choices_hint
from esszoo.layers import MaskedBatchNorm2d, PartialConv2d, check_grid, pad_to_multiple, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)
LEAKY_SLOPE = 0.2  # Section 3.2: LeakyReLU with alpha = 0.2 in the decoder


def liu_kernels(layers: int) -> tuple[int, ...]:
    """Liu et al.'s table: 7x7 for PConv1, 5x5 for PConv2 and PConv3, 3x3 below."""
    return tuple(7 if i == 0 else 5 if i < 3 else 3 for i in range(layers))


def crai_kernels(layers: int) -> tuple[int, ...]:
    """Kadow et al.'s code: 7x7 for the first layer, 3x3 for the last, 5x5 between."""
    return tuple(7 if i == 0 else 3 if i == layers - 1 else 5 for i in range(layers))


# config -> (encoder_layers, width, the rule for the encoder's kernel sizes)
CONFIGS: dict[str, tuple[int, int, Callable[[int], tuple[int, ...]]]] = {
    "liu2018": (8, 64, liu_kernels),
    "kadow2020": (3, 18, crai_kernels),
}


class PartialConvLayer(nn.Module):
    """One row of the layer table: partial convolution, then batch norm and activation.

    ``forward(x, mask) -> (x', mask')``; the batch norm is left out (``norm`` None) for
    PConv1 and the last layer, the activation (identity) for the last layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int,
        batch_norm: bool,
        activation: nn.Module,
        masked_batch_norm: bool,
        bias: bool = False,
    ):
        super().__init__()
        self.conv = PartialConv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=bias
        )
        self.norm = MaskedBatchNorm2d(out_channels) if batch_norm else None
        self.activation = activation
        self.masked_batch_norm = masked_batch_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, in, h, w), mask: (B, 1 or in, h, w) -> (B, out, h/s, w/s), (B, 1, h/s, w/s)
        x, mask = self.conv(x, mask)
        if self.norm is not None:
            x = self.norm(x, mask if self.masked_batch_norm else None)
        return self.activation(x), mask


def _per_channel(mask: torch.Tensor, channels: int) -> torch.Tensor:
    """A mask with one channel per feature channel, for a concatenation of masks."""
    return mask if mask.shape[1] == channels else mask.expand(-1, channels, -1, -1)


@register_model(
    name="pconv_unet",
    family="encoder_decoder",
    tasks=("inpainting",),
    paper=Paper(
        authors="Liu, Reda, Shih, Wang, Tao & Catanzaro",
        year=2018,
        title="Image Inpainting for Irregular Holes Using Partial Convolutions",
        venue="ECCV",
        arxiv="1804.07723",
    ),
    reference=dict(in_channels=3, out_channels=3),
    reference_params=32_859_732,
    reference_note="Liu et al.'s network (Section 3.2, supplementary table) on RGB images; "
    "the paper gives no count, counted here with a bias in the last layer only. Kadow, Hall "
    "& Ulbrich (2020, Nature Geoscience, doi:10.1038/s41561-020-0582-5), config='kadow2020' "
    "with in_channels=1, out_channels=1 (three levels of 18, 36, 72 channels, their code's "
    "setting for 72 x 72 grids): 84,646",
    small=dict(in_channels=2, out_channels=2, encoder_layers=3, width=4),
    example_input=(2, 2, 12, 20),
    min_size=MIN_SIZE,
    inputs=("x", "mask"),
)
class PConvUNet(nn.Module):
    """Partial-convolution U-Net (Liu et al. 2018): fills holes of any shape in a field.

    ``forward(x, mask)``: x (B, in_channels, H, W), its validity mask (B, 1 or in_channels,
    H, W), 1 valid, 0 missing; returns the reconstruction (B, out_channels, H, W) at every
    point, holes and known points alike. ``config`` is ``"liu2018"`` (8 levels, 64 .. 512
    channels) or ``"kadow2020"`` (3 levels, 18, 36, 72 channels); ``encoder_layers``,
    ``width`` (first layer's channels, doubled per level up to 8x) and ``kernel_sizes``
    (one per encoder layer) override it. ``masked_batch_norm`` takes batch statistics from
    the valid points only.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        config: str = "liu2018",
        encoder_layers: int | None = None,
        width: int | None = None,
        kernel_sizes: tuple[int, ...] | None = None,
        masked_batch_norm: bool = False,
        padding: str = "zeros",
    ):
        super().__init__()
        if config not in CONFIGS:
            raise ModelError(f"pconv_unet has no config '{config}'", choices_hint(config, CONFIGS))
        default_layers, default_width, kernel_rule = CONFIGS[config]
        layers = default_layers if encoder_layers is None else encoder_layers
        width = default_width if width is None else width
        kernels = kernel_rule(layers) if kernel_sizes is None else tuple(kernel_sizes)
        if layers < 1 or width < 1:
            raise ModelError(
                f"pconv_unet needs encoder_layers >= 1 and width >= 1, got {layers} and {width}"
            )
        if len(kernels) != layers or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ModelError(
                f"pconv_unet: kernel_sizes {kernels} must give one odd size per encoder layer "
                f"({layers})",
                "e.g. kernel_sizes=(7, 5, 5) for three layers, or leave it to the config",
            )
        self.in_channels = in_channels
        self.stride = 2**layers  # the grid must divide by it inside the network
        self.wrap_longitude = padding == "earth"

        # Encoder, PConv1 ..: stride 2, channels 64, 128, 256, 512, 512, ..., no BN in PConv1
        channels = [min(width * 2**i, 8 * width) for i in range(layers)]
        self.encoder = nn.ModuleList(
            PartialConvLayer(
                c_in,
                c_out,
                kernel,
                stride=2,
                batch_norm=level > 0,
                activation=nn.ReLU(),
                masked_batch_norm=masked_batch_norm,
            )
            for level, (c_in, c_out, kernel) in enumerate(
                zip([in_channels, *channels[:-1]], channels, kernels, strict=True)
            )
        )
        # Decoder, .. PConv16, deepest level first: [upsampled, skip] -> the skip's channels;
        # the last level's skip is the input field, and it maps to the output variables
        skips = [in_channels, *channels[:-1]][::-1]
        below = channels[::-1]
        self.decoder = nn.ModuleList(
            PartialConvLayer(
                c_below + c_skip,
                c_skip,
                3,
                stride=1,
                batch_norm=True,
                activation=nn.LeakyReLU(LEAKY_SLOPE),
                masked_batch_norm=masked_batch_norm,
            )
            for c_below, c_skip in zip(below[:-1], skips[:-1], strict=True)
        )
        self.decoder.append(
            PartialConvLayer(
                below[-1] + in_channels,
                out_channels,
                3,
                stride=1,
                batch_norm=False,
                activation=nn.Identity(),
                masked_batch_norm=False,
                bias=True,
            )
        )
        set_padding(self, padding)

    def _check_mask(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        if (
            mask.dim() != 4
            or mask.shape[1] not in (1, self.in_channels)
            or (mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:])
        ):
            raise ModelError(
                f"pconv_unet: the mask has shape {tuple(mask.shape)}, x has {tuple(x.shape)}",
                f"give a mask of shape (B, 1, H, W) or (B, {self.in_channels}, H, W), "
                "1 where x is valid, 0 where it is missing",
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "pconv_unet")
        self._check_mask(x, mask)
        # (B, C, H, W) -> (B, C, H', W'), H' and W' multiples of 2^encoder_layers; the
        # padded points are missing (mask 0) unless earth padding wraps real columns in
        x, grid = pad_to_multiple(x, self.stride, dims=2, wrap_longitude=self.wrap_longitude)
        mask, _ = pad_to_multiple(
            mask.to(x.dtype), self.stride, dims=2, wrap_longitude=self.wrap_longitude
        )

        skips = [(x, mask)]
        for layer in self.encoder:
            x, mask = layer(x, mask)  # (B, c_l, H'/2^l, W'/2^l), mask (B, 1, H'/2^l, W'/2^l)
            skips.append((x, mask))
        skips.pop()  # the deepest features go on below, not across

        for layer in self.decoder:
            skip, skip_mask = skips.pop()
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # (B, c, 2h, 2w)
            mask = F.interpolate(mask, scale_factor=2.0, mode="nearest")
            # features and masks side by side, one mask channel per feature channel
            mask = torch.cat(
                [_per_channel(mask, x.shape[1]), _per_channel(skip_mask, skip.shape[1])], dim=1
            )
            x = torch.cat([x, skip], dim=1)  # (B, c + c_skip, 2h, 2w)
            x, mask = layer(x, mask)  # (B, c_skip or out_channels, 2h, 2w)
        return x[grid]  # (B, out_channels, H, W)
