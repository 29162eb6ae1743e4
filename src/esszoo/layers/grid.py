"""Checks on the grids that dense and convolutional models receive."""

from __future__ import annotations

import torch

from esszoo.errors import ModelError


def check_grid(x: torch.Tensor, min_size: tuple[int, ...], model: str) -> None:
    """Raise a clear error unless `x` is (batch, channels, *grid) with the grid's sides
    (H, W, or for volumes D, H, W) at least `min_size`."""
    if x.dim() != 2 + len(min_size):
        kind = (
            "volumes (batch, channels, level, lat, lon)"
            if len(min_size) == 3
            else ("fields (batch, channels, lat, lon)")
        )
        raise ModelError(
            f"{model} takes {kind}, got shape {tuple(x.shape)}",
            "add or remove dimensions (x.unsqueeze / x.squeeze)",
        )
    sides = tuple(x.shape[-len(min_size) :])
    if any(side < least for side, least in zip(sides, min_size, strict=True)):
        shape = "x".join(map(str, sides))
        least = "x".join(map(str, min_size))
        raise ModelError(
            f"{model} needs grids of at least {least} points, got {shape}",
            "pad or interpolate the grid to that size, or choose a model with fewer "
            "downsampling stages",
        )


def check_series(x: torch.Tensor, context: int, model: str) -> None:
    """Raise a clear error unless `x` is (batch, time, channels) with at most `context`
    time steps (the positions a sequence model was built for)."""
    if x.dim() != 3:
        raise ModelError(
            f"{model} takes series (batch, time, channels), got shape {tuple(x.shape)}",
            "add or remove dimensions (x.unsqueeze / x.squeeze)",
        )
    if x.shape[1] > context:
        raise ModelError(
            f"{model} sees at most {context} steps (its context), got {x.shape[1]}",
            "shorten the window or build the model with a larger context",
        )
