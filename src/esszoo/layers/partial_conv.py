"""Partial convolutions: convolutions that see only the valid points of their input.

Liu, Reda, Shih, Wang, Tao & Catanzaro (2018), "Image Inpainting for Irregular Holes Using
Partial Convolutions", ECCV, arXiv:1804.07723, Section 3.1. With W the weights, b the
bias, X the input values under the sliding window and M its binary validity mask:

    x' = W^T (X * M) * sum(1) / sum(M) + b    if sum(M) > 0,   else 0        (Eq. 1)
    m' = 1                                      if sum(M) > 0,   else 0        (Eq. 2)

sum(1) / sum(M) rescales for the share of the window that is valid; the mask update (Eq.
2) marks an output valid as soon as its window saw one valid input, so holes shrink layer
by layer until, deep enough, none is left. Kadow, Hall & Ulbrich (2020, Nature
Geoscience 13, 408-413) reconstruct missing climate observations with this network.

Masks may have one channel (shared by all input channels) or one per input channel (each
variable its own gaps, counted per channel in sum(M)); the output mask has one channel.
Each layer takes and returns ``(x, mask)``. Padding: the window's padded border counts as
missing (zero in X and M), except that ``padding="earth"`` (see `padding.py`) wraps the
border around in longitude, values and mask alike.

`MaskedBatchNorm2d` normalizes with statistics of the valid points only (an option in Kadow
et al.'s code, off by default there): the means and variances of a field with holes
should not count the zeros in its holes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.layers.padding import earth_pad


class _PartialConv:
    """What PartialConv2d and PartialConv3d share; see the module docstring."""

    earth = False  # set_padding(model, "earth") sets it on every partial convolution

    def _pad(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.earth:
            *others, lon = self.padding
            return earth_pad(tensor, others[-1], lon, level=others[0] if len(others) == 2 else 0)
        return F.pad(tensor, [p for p in reversed(self.padding) for _ in range(2)])

    def window(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The padded X * M, the rescaling sum(1) / sum(M) of each window and the new mask
        (Eq. 1-2): what the weights then act on, and how."""
        mask = mask.to(x.dtype)
        x, padded_mask = self._pad(x * mask), self._pad(mask)
        window = (
            self.kernel_size[0]
            * self.kernel_size[1]
            * (self.kernel_size[2] if len(self.kernel_size) == 3 else 1)
        )
        with torch.no_grad():
            # sum(M) over each window, across the input channels a mask has
            ones = torch.ones(
                1, padded_mask.shape[1], *self.kernel_size, device=x.device, dtype=x.dtype
            )
            valid = self._convolve(padded_mask, ones, None)  # (B, 1, ...)
            channels = self.in_channels if mask.shape[1] == 1 else 1
            scale = window * self.in_channels / (valid * channels).clamp(min=1.0)
            new_mask = (valid > 0).to(x.dtype)
        return x, scale, new_mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded, scale, new_mask = self.window(x, mask)
        out = self._convolve(padded, self.weight, None) * (scale * new_mask)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, *[1] * (out.dim() - 2)) * new_mask
        return out, new_mask


class PartialConv2d(_PartialConv, nn.Conv2d):
    """``nn.Conv2d`` as a partial convolution: ``forward(x, mask) -> (x', mask')``."""

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


class PartialConv3d(_PartialConv, nn.Conv3d):
    """``nn.Conv3d`` as a partial convolution on (level, lat, lon) volumes."""

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return F.conv3d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose batch statistics come from the valid points only (mask 1).

    ``forward(x, mask)``; in eval mode, or without a mask, it is ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or not self.training:
            return super().forward(x)
        weight = mask.to(x.dtype).expand_as(x)
        count = weight.sum(dim=(0, 2, 3)).clamp(min=1.0)
        mean = (x * weight).sum(dim=(0, 2, 3)) / count
        variance = ((x - mean.view(1, -1, 1, 1)) ** 2 * weight).sum(dim=(0, 2, 3)) / count
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 0.1
                unbiased = variance * count / (count - 1).clamp(min=1.0)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(unbiased, momentum)
                self.num_batches_tracked += 1
        normalized = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(
            variance.view(1, -1, 1, 1) + self.eps
        )
        if self.affine:
            normalized = normalized * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return normalized
