"""Translation: fields to fields (next frames from past frames, one variable from another).

Batch contract: ``{"x": (B, C_in, *grid), "y": (B, C_out, *grid), "known": 1 where the
target is known}``; inputs and targets normalized per channel with the training split's
statistics, missing inputs set to 0 (the channel mean). Grids are (lat, lon) fields or
(level, lat, lon) volumes.

Data: windows of frames (the next frames from the last ones), or fields of the same time
steps: targets from other variables, or, without targets, every field from itself (an
autoencoder's compression).

Loss: mean squared error over the known target points, weighted by cos(latitude) when
the data have a latitude coordinate (every point then counts by its area).
Metrics, in physical units over the known points: (latitude-weighted) RMSE and MAE, bias,
correlation. Baselines: linear regression of each target channel on the input channels,
its coefficients shared by all points; for windows of one variable, persistence (the
last input frame). A field rebuilt from itself is compared, as Hinton & Salakhutdinov
(2006) compared their codes with principal components, with its truncation to as many
EOFs as the network's code has numbers (at most the training fields less one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from esszoo.data.dataset import SplitData, Table
from esszoo.errors import RecipeError
from esszoo.predictor import Predictor
from esszoo.recipe import TaskSpec, TrainerSpec
from esszoo.tasks.base import Task
from esszoo.tasks.classification import channel_stats


def area_weights(data: SplitData, like: torch.Tensor) -> torch.Tensor:
    """cos(latitude) broadcast to `like` (B, C, *grid), or ones without a latitude."""
    lat = data.grid.get("lat")
    if lat is None or np.ndim(lat) != 1 or len(lat) != like.shape[-2]:
        return torch.ones_like(like)
    weights = torch.from_numpy(np.cos(np.radians(lat))).to(like.dtype)
    return weights.view(*[1] * (like.dim() - 2), -1, 1).expand_as(like)


class TranslationTask(Task):
    """Train `net` to map input fields to target fields."""

    name = "translation"
    data_kind = "windows"
    same_time_pairs = True  # without data.window: targets of the same time steps
    plot_file = "prediction_vs_truth.png"

    def __init__(self, net: nn.Module, spec: TaskSpec, trainer: TrainerSpec):
        super().__init__(net, spec, trainer)
        if spec.loss not in (None, "mse"):
            raise RecipeError(f"task.loss '{spec.loss}' does not fit translation", "use mse")
        self.weights: torch.Tensor | None = None

    @staticmethod
    def model_shape(data: SplitData, takes_mask: bool = False) -> dict[str, int]:
        return {"in_channels": data.train.x.shape[1], "out_channels": data.train.y.shape[1]}

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        input_mean, input_std = channel_stats(data.train.x)
        output_mean, output_std = channel_stats(data.train.y)
        self.stats = {
            "input_mean": input_mean,
            "input_std": input_std,
            "output_mean": output_mean,
            "output_std": output_std,
        }
        predictor = self.predictor()
        tensors = {}
        for split, table in data.tables.items():
            known = torch.isfinite(table.y)
            target = (table.y - predictor._channels(output_mean, table.y)) / predictor._channels(
                output_std, table.y
            )
            tensors[split] = {
                "x": predictor.normalize(table.x),
                "y": torch.where(known, target, 0.0),
                "known": known.float() * area_weights(data, table.y),
            }
        return tensors

    def predictor(self) -> Predictor:
        return Predictor(self.net, **self.stats, fill_missing=True)

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        error = (self.net(batch["x"]).float() - batch["y"]) ** 2
        return (error * batch["known"]).sum() / batch["known"].sum().clamp(min=1e-6)

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        names = [[v.name for v in variables] for variables in (data.inputs, data.targets)]
        if data.window is None and names[0] == names[1]:  # every field rebuilt from itself
            code = self._code_size(data)
            if code is None:
                return {"identity": lambda table: table.x.nan_to_num()}
            modes = min(code, len(data.train) - 1)
            return {f"EOF truncation ({modes} modes)": eof_truncation(data.train.y, modes)}
        found = {"linear regression": pooled_linear_regression(data.train.x, data.train.y)}
        if data.window is not None and names[0][0] == names[1][0]:
            found["persistence"] = persistence
        return found

    def _code_size(self, data: SplitData) -> int | None:
        """How many numbers the network's code keeps per sample (networks with `encode`)."""
        if not hasattr(self.net, "encode"):
            return None
        parameter = next(self.net.parameters())
        sample = torch.zeros(data.train.x[:1].shape, device=parameter.device, dtype=parameter.dtype)
        with torch.no_grad():
            return self.net.encode(sample).numel()

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        known = torch.isfinite(truth)
        weights = area_weights(data, truth).double() * known
        error = (prediction.double() - truth.double()).nan_to_num() * known
        total = weights.sum()
        rmse = float(((error**2) * weights).sum().div(total).sqrt())
        mae = float((error.abs() * weights).sum() / total)
        bias = float((error * weights).sum() / total)
        pairs = torch.stack([prediction[known].double(), truth[known].double()])
        return {"rmse": rmse, "mae": mae, "bias": bias, "corr": float(torch.corrcoef(pairs)[0, 1])}

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        from esszoo.plots import field_panels

        field_panels(predictions, truth, data, path)


def persistence(table: Table) -> torch.Tensor:
    """The last input frame, repeated for every target frame (NaN kept as 0 change)."""
    x = table.x
    last = x[:, :, -1:] if x.dim() == 5 else x[:, -1:]
    frames = table.y.shape[2] if x.dim() == 5 else table.y.shape[1]
    repeats = [1, 1, frames, 1, 1] if x.dim() == 5 else [1, frames, 1, 1]
    return last.repeat(*repeats).nan_to_num()


def eof_truncation(train: torch.Tensor, modes: int) -> Callable[[Table], torch.Tensor]:
    """Fields projected on the leading `modes` EOFs of the training fields (N, C, *grid).

    The EOFs span the points every training field has; a missing input point enters the
    projection as the training mean, and points outside the span keep the training mean.
    """
    flat = train.reshape(len(train), -1).double()
    span = torch.isfinite(flat).all(0)
    mean = flat.nanmean(0).nan_to_num()
    anomalies = flat[:, span] - mean[span]
    eofs = torch.linalg.svd(anomalies, full_matrices=False).Vh[:modes]  # (modes, points)

    def predict(table: Table) -> torch.Tensor:
        x = table.x.reshape(len(table.x), -1).double()[:, span]
        x = torch.where(torch.isfinite(x), x, mean[span]) - mean[span]
        out = mean.repeat(len(x), 1)
        out[:, span] = (x @ eofs.T) @ eofs + mean[span]
        return out.reshape(table.y.shape).float()

    return predict


def pooled_linear_regression(x: torch.Tensor, y: torch.Tensor) -> Callable[[Table], torch.Tensor]:
    """y_c = sum_k a_ck x_k + b_c at every point, a and b fitted over all training points."""

    def columns(t: torch.Tensor) -> torch.Tensor:  # (N, C, *grid) -> (points, C)
        return t.transpose(0, 1).reshape(t.shape[1], -1).T.double()

    inputs, targets = columns(x), columns(y)
    usable = torch.isfinite(inputs).all(1) & torch.isfinite(targets).all(1)
    design = torch.cat([inputs[usable], torch.ones(int(usable.sum()), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, targets[usable]).solution  # (C_in + 1, C_out)

    def predict(table: Table) -> torch.Tensor:
        flat = columns(table.x).nan_to_num()
        out = torch.cat([flat, torch.ones(len(flat), 1, dtype=torch.float64)], 1) @ solution
        shape = (table.y.shape[1], table.x.shape[0], *table.x.shape[2:])
        return out.T.reshape(shape).transpose(0, 1).float()

    return predict
