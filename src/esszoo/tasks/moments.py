"""Statistics of the training split that tasks normalize by: per channel, in one pass
over blocks of samples, so that data left on disk need no second read."""

from __future__ import annotations

import math

import torch


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each channel of (N, C, ...) over all else, NaN-aware."""
    return ChannelMoments().add(x).result()


class ChannelMoments:
    """Per-channel count, mean, sum of squared deviations and range of (N, C, ...) blocks,
    NaN-aware, combined block by block (Chan, Golub & LeVeque 1979) in float64: one block
    gives the two-pass mean and standard deviation exactly."""

    def __init__(self) -> None:
        self.count = self.mean = self.squares = self.low = self.high = None

    def add(self, x: torch.Tensor) -> ChannelMoments:
        channels = x.transpose(0, 1).reshape(x.shape[1], -1).double()
        valid = torch.isfinite(channels)
        count = valid.sum(1).double()
        mean = torch.where(valid, channels, 0.0).sum(1) / count.clamp(min=1)
        squares = (torch.where(valid, channels - mean[:, None], 0.0) ** 2).sum(1)
        low = torch.where(valid, channels, math.inf).amin(1)
        high = torch.where(valid, channels, -math.inf).amax(1)
        if self.count is None:
            self.count, self.mean, self.squares = count, mean, squares
            self.low, self.high = low, high
            return self
        self.low, self.high = torch.minimum(self.low, low), torch.maximum(self.high, high)
        total = self.count + count
        delta = mean - self.mean
        share = count / total.clamp(min=1)
        self.mean = self.mean + delta * share
        self.squares = self.squares + squares + delta**2 * self.count * share
        self.count = total
        return self

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        std = (self.squares / self.count.clamp(min=1)).sqrt()
        return self.mean.float(), torch.where(std > 0, std, torch.ones_like(std)).float()

    def range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest and largest valid value of each channel."""
        return self.low, self.high
