"""The operations of the DARTS search space (Liu, Simonyan & Yang 2019, section 3.1 and
appendix A.1), once for the searched supernet and the networks derived from it.

Eight candidates on every edge of a cell (``PRIMITIVES``): no connection (``none``), 3x3
max and average pooling, the identity (``skip_connect``), 3x3 and 5x5 separable
convolutions (each applied twice: ``SepConv``) and 3x3 and 5x5 dilated separable
convolutions (``DilConv``), all ReLU-conv-BN, as in NASNet (Zoph et al. 2018). An edge
that strides (into a reduction cell) turns the identity into ``FactorizedReduce``: two
1x1 convolutions of stride 2, the second offset by one point, concatenated.

``affine``: the search keeps batch norm without its learned scale and shift (the
architecture weights would otherwise be rescaled by them, appendix A.1.1); the networks
derived from it learn them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, pad: int, affine: bool):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, a depthwise convolution (dilated), a pointwise one, batch norm."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        pad: int,
        dilation: int,
        affine: bool,
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, pad, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """A separable convolution applied twice (the first strides), as NASNet's."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, pad: int, affine: bool):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, pad, 1, affine),
            DilConv(c_in, c_out, kernel, 1, pad, 1, affine),
        )


class Zero(nn.Module):
    """No connection: zeros of the output's grid."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]) * 0.0


class FactorizedReduce(nn.Module):
    """Halve the grid without losing every other point: two 1x1 convolutions of stride 2,
    the second on the grid shifted by one point, concatenated to `c_out` channels. The
    shifted grid is padded by one point at its end first, so that odd sides (Earth grids:
    73, 19) give the same ceil(n / 2) points on both paths; for even sides this is the
    authors' operation exactly."""

    def __init__(self, c_in: int, c_out: int, affine: bool):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda c, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    ),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}


def drop_path(x: torch.Tensor, probability: float) -> torch.Tensor:
    """Zero whole samples of a path with `probability`, scaling the rest (Larsson et al.
    2017's drop-path, as the DARTS evaluation networks train)."""
    keep = 1.0 - probability
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask
