"""3-D U-Net for volume-to-volume prediction, as the Deep Density Displacement Model (D3M).

Paper: He, Li, Feng, Ho, Ravanbakhsh, Chen & Póczos (2019), "Learning to predict the
cosmological structure formation", PNAS 116(28), 13825-13832, arXiv:1811.06533
(doi:10.1073/pnas.1821458116). D3M takes the displacement field of the Zel'dovich
approximation on a 32^3 grid (three channels: the x, y and z displacements of the
particles) and returns the displacement field of a FastPM N-body simulation, a U-Net on
volumes with two resolution steps. The same network maps any gridded volume to another:
here (B, C, D, H, W) with D the levels (or depth), H latitude and W longitude, for
example a column of the atmosphere or ocean to a tendency or a downscaled state.

Paper to code. The layer facts below are those of the authors' code (github.com/siyucosmo/
ML-Recon, ``Unet/uNet.py``, class ``Lpt2NbodyNet``); module names are theirs, so their
weights map one to one. 15 convolution or deconvolution layers, 8,415,939 parameters at
the reference configuration (the paper: about 8.4 million):

- ``BasicBlock``: a 3x3x3 convolution (with bias), batch norm, ReLU, the unit everything
  is built of.
- Contracting path: ``layer1`` two blocks at ``width`` (64) channels; ``layer2`` one
  block of stride 2 to 2 ``width`` channels (downsampling by a strided convolution, not a
  pool); ``layer3`` two blocks; ``layer4`` one block of stride 2 to 4 ``width``;
  ``layer5`` two blocks at the bottom (D/4, H/4, W/4).
- Expanding path: ``deconv1``, a 3x3x3 transposed convolution of stride 2 to 2 ``width``
  channels, then batch norm and ReLU (``deconv_batchnorm1``), concatenated with
  ``layer3``'s output (the skip); ``layer6`` two blocks back to 2 ``width``; ``deconv2``
  and ``deconv_batchnorm2`` up to full resolution and ``width`` channels, concatenated with
  ``layer1``'s output; ``layer7`` two blocks.
- ``deconv4``: a 1x1x1 transposed convolution (a 1x1x1 convolution) to ``out_channels``,
  linear, for a displacement (or any unbounded field).

Grids and padding. The authors pad every 3x3x3 convolution periodically in all three
directions, since their simulation box is periodic, and pad each transposed convolution's
input by one periodic plane after its end, then crop, so that the upsampled grid is
exactly twice as large and its last point also hears the first. A stack of levels on the
Earth is periodic in longitude only: ``padding="zeros"`` pads with zeros everywhere (the
transposed convolutions then reduce to PyTorch's padding 1, output padding 1), and
``padding="earth"`` wraps longitude (convolutions through `set_padding`; the transposed
convolutions by appending the first longitude, ``Deconv3d``) and zero-pads levels and
latitude. The input is padded internally up to a multiple of 4 in each of D, H and W
(half before, half after; longitude wrapped under earth padding) and the output cropped
back, so any volume of at least one point works; the authors' boxes are 32^3.

Departures: the periodic padding in level and latitude, for the reason above; the
internal padding for grids that 4 does not divide; initialization is PyTorch's default,
as in the authors' code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, pad_to_multiple, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1, 1)  # (D, H, W)
STRIDE = 4  # two stride-2 steps


class BasicBlock(nn.Module):
    """3x3x3 convolution, batch norm, ReLU (the authors' ``BasicBlock``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, in_channels, D, H, W) -> (B, out_channels, D/stride, H/stride, W/stride)
        return self.relu(self.bn1(self.conv1(x)))


def stage(in_channels: int, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """`blocks` blocks, the first one changing the channels (and striding)."""
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class Deconv3d(nn.ConvTranspose3d):
    """3x3x3 transposed convolution of stride 2: (D, H, W) -> (2D, 2H, 2W) exactly."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=1
        )
        self.wrap_longitude = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.wrap_longitude:
            return super().forward(x)
        # the authors' periodic plane after the end, in longitude only: the last output
        # longitude also hears the first input longitude, across the dateline
        width = x.shape[-1]
        wrapped = torch.cat([x, x[..., :1]], dim=-1)  # (B, C, D, H, W + 1)
        out = F.conv_transpose3d(
            wrapped, self.weight, self.bias, self.stride, self.padding, (1, 1, 0)
        )  # (B, C_out, 2D, 2H, 2W + 1)
        return out[..., : 2 * width]


@register_model(
    name="unet3d",
    family="encoder_decoder",
    tasks=("translation",),
    paper=Paper(
        authors="He, Li, Feng, Ho, Ravanbakhsh, Chen & Póczos",
        year=2019,
        title="Learning to predict the cosmological structure formation",
        venue="PNAS 116(28), 13825-13832",
        arxiv="1811.06533",
        doi="10.1073/pnas.1821458116",
    ),
    reference=dict(in_channels=3, out_channels=3, width=64),
    reference_params=8_415_939,
    reference_note="D3M: Zel'dovich displacements (3 channels) to N-body displacements (3); "
    "counted here, equal to the authors' Lpt2NbodyNet (github.com/siyucosmo/ML-Recon); the "
    "paper gives about 8.4 million",
    small=dict(in_channels=2, out_channels=2, width=4),
    example_input=(2, 2, 6, 12, 20),
    min_size=MIN_SIZE,
)
class UNet3d(nn.Module):
    """3-D U-Net (D3M): volumes (B, C, level, lat, lon) to volumes, two resolution steps.

    ``width`` (64) is the channels of the first level, doubled at each of the two stride-2
    steps; ``out_channels`` the output variables.
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, width: int = 64, padding: str = "zeros"
    ):
        super().__init__()
        if width < 1:
            raise ModelError(f"unet3d needs width >= 1, got {width}")
        self.wrap_longitude = padding == "earth"
        # contracting path
        self.layer1 = stage(in_channels, width, blocks=2)
        self.layer2 = stage(width, 2 * width, blocks=1, stride=2)
        self.layer3 = stage(2 * width, 2 * width, blocks=2)
        self.layer4 = stage(2 * width, 4 * width, blocks=1, stride=2)
        self.layer5 = stage(4 * width, 4 * width, blocks=2)
        # expanding path
        self.deconv1 = Deconv3d(4 * width, 2 * width)
        self.deconv_batchnorm1 = nn.BatchNorm3d(2 * width)
        self.layer6 = stage(4 * width, 2 * width, blocks=2)
        self.deconv2 = Deconv3d(2 * width, width)
        self.deconv_batchnorm2 = nn.BatchNorm3d(width)
        self.layer7 = stage(2 * width, width, blocks=2)
        self.deconv4 = nn.ConvTranspose3d(width, out_channels, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.deconv1.wrap_longitude = self.deconv2.wrap_longitude = self.wrap_longitude
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "unet3d")
        # (B, C, D, H, W) -> (B, C, D', H', W'), each the next multiple of 4
        x, grid = pad_to_multiple(x, STRIDE, dims=3, wrap_longitude=self.wrap_longitude)
        x1 = self.layer1(x)  # (B, width, D', H', W')
        x = self.layer2(x1)  # (B, 2 width, D'/2, H'/2, W'/2)
        x2 = self.layer3(x)  # (B, 2 width, D'/2, H'/2, W'/2)
        x = self.layer4(x2)  # (B, 4 width, D'/4, H'/4, W'/4)
        x = self.layer5(x)  # (B, 4 width, D'/4, H'/4, W'/4)
        x = self.relu(self.deconv_batchnorm1(self.deconv1(x)))  # (B, 2 width, D'/2, ...)
        x = self.layer6(torch.cat((x, x2), dim=1))  # (B, 4 width, ...) -> (B, 2 width, ...)
        x = self.relu(self.deconv_batchnorm2(self.deconv2(x)))  # (B, width, D', H', W')
        x = self.layer7(torch.cat((x, x1), dim=1))  # (B, 2 width, ...) -> (B, width, ...)
        return self.deconv4(x)[grid]  # (B, out_channels, D, H, W)
