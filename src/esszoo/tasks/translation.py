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
last input frame) and, for windows of rain, the references of radar nowcasting:
pysteps' extrapolation along the observed motion and the mean of its STEPS ensemble
(`esszoo.tasks.extrapolation`). A field rebuilt from itself is compared, as Hinton & Salakhutdinov
(2006) compared their codes with principal components, with its truncation to as many
EOFs as the network's code has numbers (at most the training fields less one).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field
from torch import nn

from esszoo.data.dataset import SplitData, Table
from esszoo.data.stream import StreamBatches
from esszoo.data.variables import Variable, load_values
from esszoo.data.windows import lead_times, window_inputs
from esszoo.errors import DataError
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, broadcast_stat, predict_in_batches
from esszoo.tasks import register_task
from esszoo.tasks.base import Task
from esszoo.tasks.baselines import Climatology, PointRegression
from esszoo.tasks.extrapolation import members_option, motion_nowcasts
from esszoo.tasks.moments import ChannelMoments


def area_weights(weights: np.ndarray | None, like: torch.Tensor) -> torch.Tensor:
    """The area weight of every point (H, W), cos(latitude), broadcast to `like` (B, C,
    *grid); ones where the grid has no latitude."""
    if weights is None:
        return torch.ones_like(like)
    weights = torch.from_numpy(np.ascontiguousarray(weights)).to(like.dtype)
    return weights.expand_as(like)


class TranslationOptions(TaskOptions):
    name: str = "translation"
    loss: Literal["mse"] = Field(
        default="mse", description="over the known target points, weighted by cos(latitude)"
    )
    steps_members: int = members_option()


@register_task
class TranslationTask(Task):
    """Train `net` to map input fields to target fields."""

    name = "translation"
    Options = TranslationOptions
    data_kinds = ("paired_fields", "windows", "streamed_fields")
    headline = ("rmse", "lower")
    plot_file = "prediction_vs_truth.png"

    def __init__(self, net: nn.Module, spec: TranslationOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        self.fitted: FittedBaselines | None = None  # the baselines, fitted with the stats

    def target_range(self, data: SplitData) -> tuple[torch.Tensor, torch.Tensor]:
        """Found in the pass that fixed the statistics (data on disk are read once)."""
        return self.target_low, self.target_high

    @classmethod
    def data_kind(cls, data: dict[str, Any]) -> str:
        """Fields left on disk (data.stream: true), windows of frames (data.window), or
        else target fields of the same time steps."""
        if data.get("stream") is True:
            return "streamed_fields"
        return "windows" if data.get("window") is not None else "paired_fields"

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        sample = data.train.head(1)
        return {"in_channels": sample.x.shape[1], "out_channels": sample.y.shape[1]}

    def fit(self, data: SplitData) -> None:
        """Normalization statistics of the training split and its baselines, in one pass
        over its blocks."""
        inputs, outputs = ChannelMoments(), ChannelMoments()
        baselines = FittedBaselines(data)
        for table in data.train.blocks():
            inputs.add(table.x)
            outputs.add(table.y)
            baselines.add(table)
        if inputs.count is None or not (inputs.count > 0).all() or not (outputs.count > 0).all():
            raise DataError(
                "the training split holds no valid value of an input or a target channel",
                "check the variables over the training period, or move the split",
            )
        (input_mean, input_std), (output_mean, output_std) = inputs.result(), outputs.result()
        self.target_low, self.target_high = outputs.range()
        self.stats = {
            "input_mean": input_mean,
            "input_std": input_std,
            "output_mean": output_mean,
            "output_std": output_std,
        }
        self.fitted = baselines

    def transform(self, data: SplitData) -> Callable[[Table], dict[str, torch.Tensor]]:
        """Table -> the batch tensors (picklable, for the workers of streamed data)."""
        return partial(translation_tensors, stats=self.stats, weights=data.grid.area_weights())

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        self.fit(data)
        transform = self.transform(data)
        return {split: transform(table) for split, table in data.tables.items()}

    def stream_loaders(
        self, data: SplitData, batch_size: int, seed: int
    ) -> tuple[StreamBatches, StreamBatches]:
        """Training and validation batches of data left on disk (`data.stream`), read by
        the split's worker processes."""
        self.fit(data)
        transform = self.transform(data)
        workers = data.train.workers
        return (
            StreamBatches(
                data.train, transform, batch_size, shuffle=True, seed=seed, workers=workers
            ),
            StreamBatches(data.val, transform, batch_size, workers=workers),
        )

    def predictor(self) -> Predictor:
        return Predictor(self.net, **self.stats, fill_missing=True)

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        error = (self.net(batch["x"]).float() - batch["y"]) ** 2
        return (error * batch["known"]).sum() / batch["known"].sum().clamp(min=1e-6)

    @staticmethod
    def _rebuilds_itself(data: SplitData) -> bool:
        return data.window is None and [v.name for v in data.inputs] == [
            v.name for v in data.targets
        ]

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        """The training climatology; for fields rebuilt from themselves, their truncation to
        as many EOFs as the network's code has numbers; otherwise linear regressions of the
        targets on the inputs (pooled over the points, and at every point) and, for
        windows of one variable, persistence."""
        fitted = self.fitted
        if fitted is None:  # a task built to evaluate a run: fit them now
            fitted = FittedBaselines(data)
            for table in data.train.blocks():
                fitted.add(table)
        found = {fitted.climatology.name: fitted.on_channels(fitted.climatology.predictor())}
        if self._rebuilds_itself(data):
            code = self._code_size(data)
            if code is not None:
                modes = min(code, len(data.train) - 1)
                found[f"EOF truncation ({modes} modes)"] = eof_truncation(data.train.y, modes)
            return found
        pooled = fitted.on_channels(fitted.pooled.predictor())
        found["linear regression (pooled)"] = pooled
        # points with too few samples fall back to the pooled regression
        point = fitted.point.predictor(fallback=fitted.pooled.predictor())
        found["linear regression (per point)"] = fitted.on_channels(point)
        if data.window is not None and data.inputs[0].name == data.targets[0].name:
            found["persistence"] = persistence
            found |= self._motion_baselines(data)
        return found

    def _motion_baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        """For windows of rain: pysteps' extrapolation along the motion and STEPS's mean."""
        members = self.spec.steps_members
        nowcasts = motion_nowcasts(data, members, self.trainer_spec.seed)
        if nowcasts is None:
            return {}

        def extrapolation(table: Table) -> torch.Tensor:
            return nowcasts.extrapolation(table.x).reshape(table.y.shape)

        def steps_mean(table: Table) -> torch.Tensor:
            return nowcasts.ensemble(table.x).mean(1).reshape(table.y.shape)

        found = {"extrapolation (pysteps)": extrapolation}
        if nowcasts.calibrated:  # STEPS's scales need the grid spacing and the time step
            found[f"STEPS (pysteps, mean of {members})"] = steps_mean
        return found

    def _code_size(self, data: SplitData) -> int | None:
        """How many numbers the network's code keeps per sample (networks with `encode`)."""
        if not hasattr(self.net, "encode"):
            return None
        parameter = next(self.net.parameters())
        sample = torch.zeros(
            data.train.head(1).x.shape, device=parameter.device, dtype=parameter.dtype
        )
        with torch.no_grad():
            return self.net.encode(sample).numel()

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        return self.scorer(data).add(prediction, truth).result()

    def scorer(self, data: SplitData) -> FieldScores:
        """Scores accumulated block by block (for data streamed from disk)."""
        return FieldScores(data.grid.area_weights())

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        from esszoo.plots import field_panels

        field_panels(predictions, truth, data, path)

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """The target fields of every time step, or, for a model of windows, the next
        frames after every window of past frames (along `lead_time`, from the time of the
        window's last frame). Points without a value at any time (land, outside the radar)
        stay missing, and so do time steps without any input value."""
        outputs = [Variable.from_dict(v) for v in description["outputs"]]
        window = description.get("recipe", {}).get("data", {}).get("window")
        volume = len(description["card"]["example_input"]) == 5
        grid = [d for d in inputs[0].dims if d != sample_dim]
        comment = f"predicted by esszoo model '{description['model']['name']}' from " + ", ".join(
            str(a.name) for a in inputs
        )
        coords = {k: v for k, v in inputs[0].coords.items() if set(v.dims) <= set(grid)}
        if window:
            x, times = window_inputs(inputs[0], sample_dim, window["past"], volume)
            out = predict_in_batches(predictor, x).numpy()
            out = out[:, 0] if volume else out  # (N, future, *grid)
            frames = x[:, 0] if volume else x
            lead, lead_attrs = lead_times(inputs[0][sample_dim].values, out.shape[1])
            dims = (sample_dim, "lead_time", *grid)
            coords |= {
                sample_dim: (sample_dim, times, {"long_name": "time of the last input frame"})
            }
            coords["lead_time"] = ("lead_time", lead, lead_attrs)
            values = [out]
        else:
            x = torch.from_numpy(
                np.stack(
                    [load_values(a.transpose(sample_dim, *grid), dtype=np.float32) for a in inputs],
                    axis=1,
                )
            )  # (N, C, *grid)
            out = predict_in_batches(predictor, x).numpy()  # (N, C_out, *grid)
            frames = x
            dims = (sample_dim, *grid)
            coords[sample_dim] = inputs[0][sample_dim]
            values = [out[:, c] for c in range(out.shape[1])]
        finite = np.isfinite(frames.numpy())
        domain = finite.any(axis=(0, 1))  # (*grid)
        seen = finite.reshape(len(finite), -1).any(1)  # samples with an input value
        shape = (-1, *[1] * (len(dims) - 1))
        predicted = xr.Dataset(coords=coords)
        for variable, field in zip(outputs, values, strict=True):
            field = np.where(domain & seen.reshape(shape), field, np.nan).astype(np.float32)
            predicted[variable.name] = (dims, field, variable.attrs() | {"comment": comment})
        return predicted


class FittedBaselines:
    """Climatology and linear regressions, fitted block by block on the training split.

    They see every sample as channels on a grid (N, C, *grid): windows of frames as
    volumes (N, 1, frames, H, W) have their frames as channels."""

    def __init__(self, data: SplitData):
        self.frames_as_channels = data.window is not None
        self.climatology = Climatology(data.split.dim)
        self.rebuilds = TranslationTask._rebuilds_itself(data)
        self.pooled, self.point = PooledRegression(), PointRegression()

    def view(self, table: Table) -> Table:
        def channels(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(1, 2) if self.frames_as_channels and t.dim() == 5 else t

        return Table(channels(table.x), channels(table.y), coords=table.coords)

    def add(self, table: Table) -> None:
        view = self.view(table)
        self.climatology.add(view)
        if not self.rebuilds:
            self.pooled.add(view.x, view.y)
            self.point.add(view.x, view.y)

    def on_channels(
        self, predict: Callable[[Table], torch.Tensor]
    ) -> Callable[[Table], torch.Tensor]:
        """`predict` of the channel view, applied to a table (and shaped as its targets)."""
        return lambda table: predict(self.view(table)).reshape(table.y.shape)


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


def translation_tensors(
    table: Table, stats: dict[str, torch.Tensor], weights: np.ndarray | None
) -> dict[str, torch.Tensor]:
    """A table's batch tensors: inputs normalized (missing points at 0, the channel mean),
    targets normalized (0 where unknown), and `known`: the area weight of each known target
    point, 0 elsewhere and for samples whose inputs are all missing."""
    channels = broadcast_stat
    x = (table.x - channels(stats["input_mean"], table.x)) / channels(stats["input_std"], table.x)
    known = torch.isfinite(table.y)
    target = (table.y - channels(stats["output_mean"], table.y)) / channels(
        stats["output_std"], table.y
    )
    observed = torch.isfinite(table.x).flatten(1).any(1)
    weights = known.float() * area_weights(weights, table.y)
    weights = weights * observed.view(-1, *[1] * (weights.dim() - 1))
    return {
        "x": torch.nan_to_num(x, nan=0.0),
        "y": torch.where(known, target, 0.0),
        "known": weights,
    }


def _columns(t: torch.Tensor) -> torch.Tensor:
    """(N, C, *grid) -> (points, C) in float64."""
    return t.transpose(0, 1).reshape(t.shape[1], -1).T.double()


class PooledRegression:
    """y_c = sum_k a_ck x_k + b_c at every point, a and b fitted over all training points:
    normal equations accumulated block by block (about the first block's means, so that
    values far from zero, such as temperatures in K, lose no precision)."""

    def __init__(self) -> None:
        self.gram: torch.Tensor | None = None
        self.cross: torch.Tensor | None = None

    def add(self, x: torch.Tensor, y: torch.Tensor) -> PooledRegression:
        inputs, targets = _columns(x), _columns(y)
        usable = torch.isfinite(inputs).all(1) & torch.isfinite(targets).all(1)
        if not usable.any():
            return self
        inputs, targets = inputs[usable], targets[usable]
        if self.gram is None:
            self.shift = inputs.mean(0)
            self.gram = torch.zeros(inputs.shape[1] + 1, inputs.shape[1] + 1, dtype=torch.float64)
            self.cross = torch.zeros(inputs.shape[1] + 1, targets.shape[1], dtype=torch.float64)
        design = self._design(inputs)
        self.gram += design.T @ design
        self.cross += design.T @ targets
        return self

    def _design(self, inputs: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(len(inputs), 1, dtype=torch.float64)
        return torch.cat([inputs - self.shift, ones], 1)

    def predictor(self) -> Callable[[Table], torch.Tensor]:
        if self.gram is None:
            raise DataError("no training point has all its inputs and targets: no regression")
        solution = torch.linalg.lstsq(self.gram, self.cross).solution  # (C_in + 1, C_out)

        def predict(table: Table) -> torch.Tensor:
            out = self._design(_columns(table.x).nan_to_num()) @ solution
            shape = (table.y.shape[1], table.x.shape[0], *table.x.shape[2:])
            return out.T.reshape(shape).transpose(0, 1).float()

        return predict


class FieldScores:
    """RMSE, MAE and bias over the known points (each weighted by cos(latitude) where the
    data have one), and the correlation of prediction and truth over the same points,
    accumulated block by block in float64."""

    def __init__(self, weights: np.ndarray | None):
        self.weights = weights  # of every point (H, W), or None: every point alike
        self.sums = torch.zeros(10, dtype=torch.float64)
        self.shift: float | None = None

    def add(self, prediction: torch.Tensor, truth: torch.Tensor) -> FieldScores:
        known = torch.isfinite(truth)
        weights = area_weights(self.weights, truth).double() * known
        error = (prediction.double() - truth.double()).nan_to_num() * known
        p, t = prediction[known].double(), truth[known].double()
        if self.shift is None and len(t):
            self.shift = float(t.mean())
        p, t = p - (self.shift or 0.0), t - (self.shift or 0.0)
        self.sums += torch.stack(
            [
                weights.sum(),
                (error**2 * weights).sum(),
                (error.abs() * weights).sum(),
                (error * weights).sum(),
                torch.tensor(float(len(t)), dtype=torch.float64),
                p.sum(),
                t.sum(),
                (p * p).sum(),
                (t * t).sum(),
                (p * t).sum(),
            ]
        )
        return self

    def result(self) -> dict[str, float]:
        total, squares, absolute, errors, n, sp, st, spp, stt, spt = self.sums.tolist()
        covariance = spt / n - (sp / n) * (st / n)
        spread = ((spp / n - (sp / n) ** 2) * (stt / n - (st / n) ** 2)) ** 0.5
        return {
            "rmse": (squares / total) ** 0.5,
            "mae": absolute / total,
            "bias": errors / total,
            "corr": covariance / spread if spread > 0 else float("nan"),
        }
