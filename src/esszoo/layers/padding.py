"""Padding for the sphere: circular in longitude, no wrap in latitude.

A convolution near the dateline of a global grid should see the other side of the
dateline, not zeros; near the poles there is nothing to wrap to, so latitude keeps zero
padding. Any zoo conv net takes ``padding="earth"``: its constructor builds ordinary
``nn.Conv2d`` and pooling layers and ends with ``set_padding(self, padding)``, which turns
every padded convolution and pooling layer into its earth-padded twin. The twins keep
their parameters and names, so a checkpoint trained with one padding loads into the other.

Grids are ``(..., lat, lon)`` or, for volumes, ``(..., level, lat, lon)``: longitude is
the last dimension; every other spatial dimension is zero-padded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError

PADDINGS = ("zeros", "earth")


def earth_pad(
    x: torch.Tensor, lat: int, lon: int, lat_value: float = 0.0, level: int = 0
) -> torch.Tensor:
    """Pad `lon` columns circularly on each side and `lat` rows of `lat_value` top and bottom
    (and, for volumes, `level` planes of `lat_value` before and after).

    On a grid narrower than the padding (deep in a network) the columns wrap more than once,
    as they do on the sphere.
    """
    width = x.shape[-1]
    if lon and lon <= width:
        x = torch.cat([x[..., -lon:], x, x[..., :lon]], dim=-1)
    elif lon:
        columns = torch.arange(-lon, width + lon, device=x.device) % width
        x = x.index_select(-1, columns)
    if lat or level:
        x = F.pad(x, (0, 0, lat, lat, level, level)[: 4 if x.dim() == 4 else 6], value=lat_value)
    return x


class EarthConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose padding wraps around in longitude."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        lat, lon = self.padding
        return F.conv2d(
            earth_pad(input, lat, lon), weight, bias, self.stride, 0, self.dilation, self.groups
        )


class EarthConv3d(nn.Conv3d):
    """``nn.Conv3d`` on (level, lat, lon) whose padding wraps around in longitude."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        level, lat, lon = self.padding
        return F.conv3d(
            earth_pad(input, lat, lon, level=level),
            weight,
            bias,
            self.stride,
            0,
            self.dilation,
            self.groups,
        )


class EarthMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose padding wraps around in longitude (latitude pads with -inf)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        lat, lon = _pair(self.padding)
        return F.max_pool2d(
            earth_pad(input, 0, lon),
            self.kernel_size,
            self.stride,
            (lat, 0),
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )


class EarthAvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` whose padding wraps around in longitude."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        lat, lon = _pair(self.padding)
        return F.avg_pool2d(
            earth_pad(input, 0, lon),
            self.kernel_size,
            self.stride,
            (lat, 0),
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


def _pair(value: int | tuple[int, ...], count: int = 2) -> tuple[int, ...]:
    return (value,) * count if isinstance(value, int) else tuple(value)


_TWINS = {
    nn.Conv2d: EarthConv2d,
    nn.Conv3d: EarthConv3d,
    nn.MaxPool2d: EarthMaxPool2d,
    nn.AvgPool2d: EarthAvgPool2d,
}


def set_padding(model: nn.Module, padding: str) -> nn.Module:
    """Give every padded convolution (2-D, 3-D) and 2-D pooling layer of `model` the `padding`
    kind. 3-D pooling keeps zero padding (pool volumes without padding)."""
    if padding not in PADDINGS:
        raise ModelError(f"unknown padding '{padding}'", f"choose one of {PADDINGS}")
    if padding == "zeros":
        return model
    for module in model.modules():
        if hasattr(module, "earth"):  # partial convolutions pad their values and masks
            module.earth = any(_pair(module.padding, 3))
            continue
        twin = _TWINS.get(type(module))
        if twin is None:
            continue
        if isinstance(module, nn.Conv2d | nn.Conv3d) and module.padding_mode != "zeros":
            continue
        if isinstance(module.padding, str):  # "same"/"valid": resolved to numbers below
            if module.padding == "valid":
                continue
            module.padding = tuple(
                d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size, strict=True)
            )
        if any(_pair(module.padding)):
            module.__class__ = twin
    return model
