"""Checks on the grids that dense and convolutional models receive."""

from __future__ import annotations

import torch

from esszoo.errors import ModelError


def check_grid(x: torch.Tensor, min_size: tuple[int, int], model: str) -> None:
    """Raise a clear error if `x` (..., H, W) is smaller than the model can take."""
    height, width = x.shape[-2], x.shape[-1]
    if height < min_size[0] or width < min_size[1]:
        raise ModelError(
            f"{model} needs grids of at least {min_size[0]}x{min_size[1]} points, "
            f"got {height}x{width}",
            "pad or interpolate the grid to that size, or choose a model with fewer "
            "downsampling stages",
        )
