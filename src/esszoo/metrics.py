"""Scores for Earth system predictions, computed over all given points.

Each function takes a prediction and the truth (torch tensors of one shape, physical
units) and returns a float. Gridded scores that weight by latitude arrive with the
gridded tasks.
"""

from __future__ import annotations

import torch


def rmse(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Root-mean-square error."""
    return float(((prediction.double() - truth.double()) ** 2).mean().sqrt())


def mae(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean absolute error."""
    return float((prediction.double() - truth.double()).abs().mean())


def bias(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean error, prediction minus truth."""
    return float((prediction.double() - truth.double()).mean())


def relative_error(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Relative L2 error, ||prediction - truth|| / ||truth||."""
    error = torch.linalg.vector_norm(prediction.double() - truth.double())
    return float(error / torch.linalg.vector_norm(truth.double()).clamp(min=1e-300))


def r2(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Coefficient of determination, 1 - SSE / SST."""
    truth = truth.double()
    residual = ((prediction.double() - truth) ** 2).sum()
    total = ((truth - truth.mean()) ** 2).sum().clamp(min=1e-300)
    return float(1.0 - residual / total)


def correlation(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Pearson correlation."""
    stacked = torch.stack([prediction.double().flatten(), truth.double().flatten()])
    return float(torch.corrcoef(stacked)[0, 1])


def negative_fraction(prediction: torch.Tensor) -> float:
    """Fraction of values below zero: violations of positivity for a non-negative quantity."""
    return float((prediction < 0).double().mean())
