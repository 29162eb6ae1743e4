"""U-Net: a contracting path for context, an expanding path for localization, skips between.

Paper: Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI, arXiv:1505.04597. A fully convolutional network whose
upsampling half is as deep as its downsampling half and is fed, at every level, the
features the downsampling half computed there, so that the output is both informed by a
wide context and sharp. In Earth system science it is the workhorse of dense prediction:
fronts and cyclones (segmentation), downscaling and bias correction (translation), gap
filling (inpainting, with ``partial_conv``).

Paper to code (Section 2 and Figure 1):

- Contracting path: "the repeated application of two 3x3 convolutions ..., each followed
  by a rectified linear unit (ReLU) and a 2x2 max pooling operation with stride 2 for
  downsampling. At each downsampling step we double the number of feature channels":
  ``DoubleConv`` at five levels of ``width`` (64), 128, 256, 512 and 1024 channels
  (``UNet.encoder``), with ``UNet.pool`` between them: four downsampling steps.
- Expanding path: "an upsampling of the feature map followed by a 2x2 convolution
  ('up-convolution') that halves the number of feature channels, a concatenation with the
  correspondingly cropped feature map from the contracting path, and two 3x3
  convolutions, each followed by a ReLU": ``UNet.upconv`` (a transposed convolution with
  a 2x2 kernel and stride 2, the "Deconvolution" of the authors' Caffe net) and
  ``UNet.decoder``.
- "At the final layer a 1x1 convolution is used to map each 64-component feature vector
  to the desired number of classes. In total the network has 23 convolutional layers":
  ``UNet.head``; 10 + 4 x 3 + 1 = 23.
- Section 3: drop-out layers at the end of the contracting path: ``dropout`` (the paper
  gives no rate; off by default). Weights drawn from a Gaussian of standard deviation
  sqrt(2/N), N the number of incoming nodes of one neuron (9 x 64 for a 3x3 convolution
  on 64 channels; the input channels for a 2x2 stride-2 up-convolution, where each output
  sees one input point): ``UNet._init_weights``. The pixel-wise soft-max, cross-entropy
  and weight map of Section 3 belong to the task, not to the model.

Grids, and the departure from the paper's. The paper's convolutions are unpadded: a
572 x 572 tile gives a 388 x 388 map and the skips are cropped to fit, and Section 2 asks
for tiles on which every 2x2 max pool meets an even size. Here every 3x3 convolution is
padded by one point (zero, or ``padding="earth"``), so each level keeps its grid, the
skips are copied whole, and the output has the input's grid. The input is padded
internally up to a multiple of 2^4 = 16 in each direction (half before, half after: zero
rows in latitude; in longitude zero columns, or with earth padding the columns from the
other side of the dateline, `esszoo.layers.grid_padding`) and the output cropped back, so
any grid works: 18 x 432, 73 x 144, 190 x 228, 721 x 1440, and a single point. On a grid
whose width is a multiple of 16, earth padding wraps longitude exactly and rolling the
input by 16 columns rolls the output by 16 columns.

Options beyond the paper:

- ``batch_norm`` (off: the paper has none; it appeared in the same year) puts a batch
  norm between each 3x3 convolution and its ReLU, as most later U-Nets do; those
  convolutions then have no bias, which the norm would cancel.
- ``partial_conv`` makes the network mask-aware, for fields with missing values: every
  convolution becomes a partial convolution (Liu et al. 2018, arXiv:1804.07723, see
  `esszoo.layers.partial_conv`) and every batch norm a masked one, and ``forward(x,
  mask)`` takes a validity mask (B, 1 or C, H, W), 1 valid, 0 missing. The masks travel
  with the features: max pooled alongside (a coarse point is valid if one of its four
  points is; features are zeroed where the mask is, so the pool picks a valid value),
  upsampled with nearest (the 2x2 stride-2 up-convolution reads one input point for each
  output point, so its output is valid where that point was), and concatenated at the
  skips one mask channel per feature channel, as the partial convolution counts
  per-channel masks. Values under the holes do not change the output, and the weights
  have the same names as the plain network's. This is Ronneberger's network with Liu's
  convolution, not Liu's network (strided 7x7 .. 3x3 partial convolutions, eight levels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import MaskedBatchNorm2d, PartialConv2d, check_grid, pad_to_multiple, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)
LEVELS = 5  # 64, 128, 256, 512, 1024 channels: four 2x2 max pools
STRIDE = 2 ** (LEVELS - 1)  # the grid must divide by 16 inside the network


class DoubleConv(nn.Module):
    """Two 3x3 convolutions, each followed by (batch norm and) a ReLU: one level of Fig. 1."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, partial: bool):
        super().__init__()
        conv = PartialConv2d if partial else nn.Conv2d
        norm = MaskedBatchNorm2d if partial else nn.BatchNorm2d
        self.conv1 = conv(in_channels, out_channels, 3, padding=1, bias=not batch_norm)
        self.bn1 = norm(out_channels) if batch_norm else None
        self.conv2 = conv(out_channels, out_channels, 3, padding=1, bias=not batch_norm)
        self.bn2 = norm(out_channels) if batch_norm else None
        self.relu = nn.ReLU(inplace=True)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x: (B, in_channels, H, W) -> (B, out_channels, H, W)
        # mask: (B, 1 or in_channels, H, W) -> (B, 1, H, W)
        for conv, norm in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
            if mask is None:
                x = conv(x)
                x = x if norm is None else norm(x)
            else:
                x, mask = conv(x, mask)
                x = x if norm is None else norm(x, mask)
            x = self.relu(x)
        # zero the points still missing (a batch norm shifted them), for the max pool
        return (x if mask is None else x * mask), mask


@register_model(
    name="unet",
    family="encoder_decoder",
    tasks=("segmentation", "translation", "inpainting"),
    paper=Paper(
        authors="Ronneberger, Fischer & Brox",
        year=2015,
        title="U-Net: Convolutional Networks for Biomedical Image Segmentation",
        venue="MICCAI",
        arxiv="1505.04597",
    ),
    reference=dict(in_channels=1, out_channels=2, width=64),
    reference_params=31_030_658,
    reference_note="the paper's network (Figure 1: one input channel, two classes, 23 "
    "convolutional layers, no batch norm); the paper gives no count, counted here (padding "
    "does not change it): 3x3 convolutions and 2x2 up-convolutions with biases, the 1x1 head",
    small=dict(in_channels=3, out_channels=2, width=4),
    example_input=(2, 3, 20, 36),
    min_size=MIN_SIZE,
)
class UNet(nn.Module):
    """U-Net: contracting and expanding paths with skips, dense output on any grid.

    ``out_channels`` is the number of classes for segmentation, of output variables for
    translation and inpainting. ``width`` (64) is the first level's channels, doubled at
    each of the four downsampling steps. ``batch_norm`` adds batch norm (not in the paper);
    ``partial_conv`` makes every convolution a partial convolution and the forward
    ``forward(x, mask)`` with a validity mask (B, 1 or C, H, W), 1 valid; ``dropout`` is
    the drop-out rate at the end of the contracting path (off, as the paper gives none).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        width: int = 64,
        batch_norm: bool = False,
        partial_conv: bool = False,
        dropout: float = 0.0,
        padding: str = "zeros",
    ):
        super().__init__()
        if width < 1:
            raise ModelError(f"unet needs width >= 1, got {width}")
        self.in_channels = in_channels
        self.partial_conv = partial_conv
        self.wrap_longitude = padding == "earth"
        widths = [width * 2**level for level in range(LEVELS)]  # 64, 128, 256, 512, 1024

        # contracting path: level 0 reads the input, each later level doubles the channels
        self.encoder = nn.ModuleList(
            DoubleConv(c_in, c_out, batch_norm, partial_conv)
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout)
        # expanding path, from the bottom up: 2x2 up-convolution halving the channels, then
        # two 3x3 convolutions on [copied features, up-convolved features]
        coarse_to_fine = widths[::-1]
        self.upconv = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)
            for c_in, c_out in zip(coarse_to_fine[:-1], coarse_to_fine[1:], strict=True)
        )
        self.decoder = nn.ModuleList(
            DoubleConv(2 * c_out, c_out, batch_norm, partial_conv) for c_out in coarse_to_fine[1:]
        )
        self.head = (PartialConv2d if partial_conv else nn.Conv2d)(widths[0], out_channels, 1)
        self._init_weights()
        set_padding(self, padding)

    def _init_weights(self) -> None:
        """Section 3: Gaussian weights of standard deviation sqrt(2 / incoming nodes)."""
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=(2.0 / module.in_channels) ** 0.5)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            else:
                continue
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _check_mask(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        if self.partial_conv and mask is None:
            raise ModelError(
                "unet with partial_conv=True needs a validity mask: call model(x, mask)",
                "pass a mask of shape (B, 1 or C, H, W), 1 where x is valid, 0 where missing",
            )
        if not self.partial_conv and mask is not None:
            raise ModelError(
                "this unet takes no mask", "build it with partial_conv=True to use masks"
            )
        if mask is not None and (
            mask.shape[1] not in (1, self.in_channels)
            or mask.shape[0] != x.shape[0]
            or mask.shape[-2:] != x.shape[-2:]
        ):
            raise ModelError(
                f"unet: the mask has shape {tuple(mask.shape)}, x has {tuple(x.shape)}",
                f"give a mask of shape (B, 1, H, W) or (B, {self.in_channels}, H, W)",
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "unet")
        self._check_mask(x, mask)
        # (B, C, H, W) -> (B, C, H', W'), H' and W' the next multiples of 16
        x, grid = pad_to_multiple(x, STRIDE, dims=2, wrap_longitude=self.wrap_longitude)
        if mask is not None:
            mask, _ = pad_to_multiple(
                mask.to(x.dtype), STRIDE, dims=2, wrap_longitude=self.wrap_longitude
            )

        skips = []
        for level, block in enumerate(self.encoder):
            if level:  # (B, c, h, w) -> (B, c, h/2, w/2)
                x = self.pool(x)
                mask = None if mask is None else F.max_pool2d(mask, 2)
            x, mask = block(x, mask)  # (B, width * 2^level, H'/2^level, W'/2^level)
            skips.append((x, mask))
        skips.pop()  # the bottom level has no copy
        x = self.dropout(x)  # (B, 16 * width, H'/16, W'/16)

        for upconv, block in zip(self.upconv, self.decoder, strict=True):
            skip, skip_mask = skips.pop()
            x = upconv(x)  # (B, 2c, h, w) -> (B, c, 2h, 2w)
            if mask is not None:
                # one mask channel per feature channel of the concatenation below
                mask = F.interpolate(mask, scale_factor=2.0, mode="nearest")
                mask = torch.cat([skip_mask.expand_as(skip), mask.expand_as(x)], dim=1)
            x = torch.cat([skip, x], dim=1)  # (B, 2c, 2h, 2w)
            x, mask = block(x, mask)  # (B, c, 2h, 2w)

        out = self.head(x) if mask is None else self.head(x, mask)[0]  # (B, out, H', W')
        return out[grid]  # (B, out_channels, H, W)
