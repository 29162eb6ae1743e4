"""Forecasting: the next steps of one or many series from their last ones.

Batch contract: ``{"x": (B, past, C_in), "y": (B, future, C_out)}`` (`esszoo.data.series`),
each channel normalized with the training split's mean and standard deviation; a model
maps x to (B, future, out_channels).

What the network outputs is defined by the loss, as neuralforecast's losses define their
heads (``task.distribution``):

- ``point``: one value per target channel (out_channels = C_out), MSE or MAE;
- ``gaussian``: a location and a scale per channel ([loc_1..loc_C, scale_1..scale_C], the
  scale made positive by softplus), the Gaussian negative log-likelihood;
- ``quantiles``: one value per quantile level and channel ([q_1: c_1..c_C, q_2: ...]),
  the pinball (quantile) loss summed over the levels.

Teacher forcing: a model that takes the truth (``forward(x, teacher)``: seq2seq, the
Transformer) reads it in training for point forecasts, and its own outputs when it is
validated, tested and used; a model that forecasts a distribution always reads its own.

An irregular past (``data.missing: keep`` or ``data.thin``, `esszoo.data.series`): the batch
holds the past with its gaps at 0 and their ``mask`` (1 observed), which the models of
irregular series take (``forward(x, mask)``: latent_ode, ode_rnn); a model that reads
complete windows only is refused with one line. ``esszoo predict`` forecasts from every
window whose past sees each input at least once.

Baselines, fitted on the training split, each a Gaussian forecast (a location and a
spread) scored as the model is:

- persistence: the last observed value, with the training spread of the change over
  each lead (the random walk); for an irregular past, the last value it observed;
- seasonal climatology: the training mean and spread of the target by calendar month of
  the target time (and hour of day for steps shorter than a day); the training mean
  where the training split spans a single month;
- linear autoregression: every target step regressed on the whole input window by least
  squares (an AR(past) model with the time features as covariates, one set of
  coefficients per lead: the direct strategy), with the training residual spread per lead;
  an irregular past is first filled by linear interpolation.

Pretraining, the tour's "use pretrained models when you can" (``task.pretraining``): on
many series, a model learns the targets from their own past before it is fine-tuned on a
short series with ``init_from``: ``next_steps``, GPT's objective, forecasts the next
`horizon` steps from every position of the window at once (``gpt``); ``masked_spans``,
BERT's, hides random spans of the past (``mask_ratio`` of the steps, ``span`` steps each)
and fills them in, with the future, from what is left (``bert``). The run is scored as a
forecaster like any other.

Scores in physical units: RMSE and MAE of the central forecast (the location, the median,
or the point), CRPS (scoringrules: closed form for Gaussians, from the quantiles for
quantile forecasts, the absolute error for a point forecast), the coverage of the central
50% and 90% intervals and the spread-skill ratio where the forecast has a spread; per lead
time in ``scores_by_lead.csv`` and ``skill_by_lead.png``; a reliability diagram
(``reliability.png``) for probabilistic forecasts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field, field_validator
from torch import nn

from esszoo.data.coords import time_dim
from esszoo.data.dataset import SplitData, Table
from esszoo.data.series import PERIODS, phase_features
from esszoo.data.variables import Variable, load_values
from esszoo.data.windows import lead_times
from esszoo.errors import DataError, ModelError
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, predict_in_batches
from esszoo.registry import model_card, takes_mask
from esszoo.tasks import register_task
from esszoo.tasks.base import Task

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
INTERVALS = {"cover50": (0.25, 0.75), "cover90": (0.05, 0.95)}


class ForecastingOptions(TaskOptions):
    name: str = "forecasting"
    distribution: Literal["point", "gaussian", "quantiles"] = Field(
        default="point", description="what the network forecasts, as its loss defines it"
    )
    quantiles: list[float] = Field(
        default=QUANTILES, description="the quantile levels of distribution: quantiles"
    )
    loss: Literal["mse", "mae"] = Field(default="mse", description="of point forecasts")
    teacher_forcing: bool = Field(
        default=True, description="models that take the truth read it in training (point)"
    )
    pretraining: Literal["none", "next_steps", "masked_spans"] = Field(
        default="none",
        description="self-supervised objectives on the inputs' own past: next_steps from "
        "every position (gpt), or masked spans filled in (bert); then init_from",
    )
    mask_ratio: float = Field(
        default=0.15, gt=0, lt=1, description="masked_spans: the share of past steps hidden"
    )
    span: int = Field(default=3, ge=1, description="masked_spans: steps per hidden span")

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, levels: list[float]) -> list[float]:
        if not levels or any(not 0 < q < 1 for q in levels) or sorted(set(levels)) != levels:
            raise ValueError("quantile levels must be increasing, distinct and inside (0, 1)")
        return levels


class Forecast:
    """A forecast (N, H, C) in physical units: a central value and, where it has one, a
    distribution (a Gaussian's scale, or quantiles at `levels`)."""

    def __init__(
        self,
        center: torch.Tensor,
        scale: torch.Tensor | None = None,
        quantiles: torch.Tensor | None = None,
        levels: list[float] | None = None,
    ):
        self.center, self.scale, self.quantiles, self.levels = center, scale, quantiles, levels

    def at_lead(self, lead: int) -> Forecast:
        """The forecast of one lead time, (N, C)."""
        pick = lambda t: None if t is None else t[:, lead]  # noqa: E731
        return Forecast(pick(self.center), pick(self.scale), pick(self.quantiles), self.levels)

    def spread(self) -> torch.Tensor | None:
        """The forecast's standard deviation: a Gaussian's scale, or from the quantiles the
        spread of the central 50% interval over that of a standard normal (1.349)."""
        if self.scale is not None:
            return self.scale
        lower, upper = self.quantile(0.25), self.quantile(0.75)
        if lower is None or upper is None:
            return None
        return (upper - lower) / (2 * _normal_quantile(0.75))

    @property
    def probabilistic(self) -> bool:
        return self.scale is not None or self.quantiles is not None

    def quantile(self, level: float) -> torch.Tensor | None:
        if self.scale is not None:
            return self.center + self.scale * _normal_quantile(level)
        if self.quantiles is not None and level in self.levels:
            return self.quantiles[..., self.levels.index(level)]
        return None

    def crps(self, truth: torch.Tensor) -> np.ndarray:
        """CRPS of every forecast value (scoringrules)."""
        import scoringrules

        obs = truth.double().numpy()
        if self.scale is not None:
            return scoringrules.crps_normal(
                obs, self.center.double().numpy(), self.scale.double().numpy()
            )
        if self.quantiles is not None:
            return scoringrules.crps_quantile(
                obs, self.quantiles.double().numpy(), np.array(self.levels)
            )
        return np.abs(self.center.double().numpy() - obs)  # a point forecast's CRPS


def _normal_quantile(level: float) -> float:
    return math.sqrt(2) * torch.erfinv(torch.tensor(2 * level - 1, dtype=torch.float64)).item()


@register_task
class ForecastingTask(Task):
    """Train `net` to forecast the next steps of series, as points or distributions."""

    name = "forecasting"
    Options = ForecastingOptions
    data_kinds = ("series",)
    headline = ("rmse", "lower")
    plot_file = "forecasts.png"

    def __init__(self, net: nn.Module, spec: ForecastingOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        if spec.distribution != "point":  # judged by the whole distribution
            self.headline = ("crps", "lower")
        takes = inspect.signature(net.forward).parameters
        self.takes_teacher = "teacher" in takes
        needs = {"next_steps": "every_position", "masked_spans": "hidden"}.get(spec.pretraining)
        if needs and needs not in takes:
            model = getattr(net, "esszoo_spec", {}).get("name", type(net).__name__)
            raise ModelError(
                f"pretraining '{spec.pretraining}' needs a model that forecasts from every "
                f"position{' of a masked series' if needs == 'hidden' else ''}; '{model}' "
                "does not",
                "use gpt for next_steps and bert for masked_spans",
            )
        self.target_columns: list[int] = []  # where the targets are among the inputs
        self.takes_mask = takes_mask(net)  # a model of irregular series: its past's mask

    @property
    def groups(self) -> int:
        """Output channels per target channel."""
        return output_groups(self.spec)

    # -- data ------------------------------------------------------------------------------

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        """Inputs and time features in; out, `future` steps of the forecast's channels."""
        groups = output_groups(options or ForecastingOptions())
        return {
            "in_channels": len(data.inputs),
            "out_channels": groups * len(data.targets),
            "horizon": data.window[1],
        }

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        """Statistics per channel over the training windows' observed values; normalized
        batch tensors (the gaps of an irregular past 0, with its mask)."""
        gappy = data.train.mask is not None
        if gappy and not self.takes_mask:
            model = getattr(self.net, "esszoo_spec", {}).get("name", type(self.net).__name__)
            raise ModelError(
                f"the past has gaps (data.missing: keep, or data.thin), and '{model}' reads "
                "complete windows only",
                "use a model of irregular series (latent_ode, ode_rnn), or data.missing: drop",
            )
        x, y = data.train.x.double(), data.train.y.double()
        self.stats = {
            "input_mean": x.nanmean((0, 1)).float(),
            "input_std": _std(x.flatten(0, 1)),
            "output_mean": y.mean((0, 1)).float(),
            "output_std": _std(y.flatten(0, 1)),
        }
        normalize = lambda t, k: (t - self.stats[f"{k}_mean"]) / self.stats[f"{k}_std"]  # noqa: E731
        tensors = {
            split: {"x": normalize(table.x, "input"), "y": normalize(table.y, "output")}
            for split, table in data.tables.items()
        }
        if gappy:
            for split, table in data.tables.items():
                tensors[split]["x"] = tensors[split]["x"].nan_to_num(0.0)
                tensors[split]["mask"] = table.mask
        if self.spec.pretraining != "none":  # the targets' whole window: past, then future
            self.target_columns = _target_columns(data)
            for split, table in data.tables.items():
                past = table.x[..., self.target_columns]
                tensors[split]["series"] = normalize(torch.cat([past, table.y], 1), "output")
        return tensors

    def _layout(self, stat: str) -> torch.Tensor:
        """A target statistic laid out over the output channels of the distribution."""
        value = self.stats[stat]
        if self.spec.distribution == "gaussian":  # a scale is scaled, never shifted
            second = torch.zeros_like(value) if stat == "output_mean" else value
            return torch.cat([value, second])
        return value.repeat(self.groups)

    def predictor(self) -> Predictor:
        """The network in physical units: series in, the forecast's channels out."""
        return Predictor(
            self.net,
            input_mean=self.stats["input_mean"],
            input_std=self.stats["input_std"],
            output_mean=self._layout("output_mean"),
            output_std=self._layout("output_std"),
            channels_last=True,
            distribution=self.spec.distribution if self.spec.distribution == "gaussian" else None,
        )  # gaps stay NaN: without a mask, a model of irregular series reads them as its gaps

    def target_range(self, data: SplitData) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = data.train.y.amin((0, 1)), data.train.y.amax((0, 1))
        if self.spec.distribution == "gaussian":  # a scale has no range to leave
            infinite = torch.full_like(low, math.inf)
            return torch.cat([low, -infinite]), torch.cat([high, infinite])
        return low.repeat(self.groups), high.repeat(self.groups)

    # -- training --------------------------------------------------------------------------

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.spec.pretraining == "next_steps":
            return self._next_steps_loss(batch)
        if self.spec.pretraining == "masked_spans":
            return self._masked_spans_loss(batch)
        x, y = batch["x"], batch["y"]
        forcing = (
            self.training
            and self.takes_teacher
            and self.spec.teacher_forcing
            and self.spec.distribution == "point"
        )
        if "mask" in batch:
            out = self.net(x, batch["mask"])
        else:
            out = self.net(x, teacher=y) if forcing else self.net(x)
        return self.head_loss(out, y)

    def _next_steps_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """GPT's objective: from every position t, the next `horizon` steps of the targets,
        (B, T, horizon, C) against the window's own values after t."""
        out = self.net(batch["x"], every_position=True)  # (B, T, H, channels)
        ahead = steps_after(batch["series"], batch["x"].shape[1], out.shape[2])
        return self.head_loss(out.flatten(0, 1), ahead.flatten(0, 1))

    def _masked_spans_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """BERT's objective for series: spans of the past hidden behind [MASK], and the
        future (always masked), filled in from what is left."""
        x, series = batch["x"], batch["series"]
        hidden = _spans(x.shape[:2], self.spec.mask_ratio, self.spec.span, x.device)
        out = self.net(x, hidden=hidden, every_position=True)  # (B, T + H, channels)
        chosen = torch.cat(
            [hidden, torch.ones_like(series[:, x.shape[1] :, 0], dtype=torch.bool)], 1
        )
        return self.head_loss(out[chosen].unsqueeze(1), series[chosen].unsqueeze(1))

    def head_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss that defines the head: out (N, H, channels) against y (N, H, C)."""
        if self.spec.distribution == "point":
            error = out - y
            return error.square().mean() if self.spec.loss == "mse" else error.abs().mean()
        if self.spec.distribution == "gaussian":
            location, raw = out.chunk(2, dim=-1)
            scale = nn.functional.softplus(raw) + 1e-6
            return -torch.distributions.Normal(location, scale).log_prob(y).mean()
        levels = torch.tensor(self.spec.quantiles, dtype=out.dtype, device=out.device)
        quantiles = out.unflatten(-1, (self.groups, -1))  # (B, H, levels, C)
        error = y.unsqueeze(-2) - quantiles
        pinball = torch.maximum(levels[:, None] * error, (levels[:, None] - 1) * error)
        return pinball.mean() * self.groups  # summed over the levels

    # -- evaluation ------------------------------------------------------------------------

    def forecast(self, prediction: torch.Tensor) -> Forecast:
        """A prediction in the task's layout, read as a forecast."""
        if self.spec.distribution == "gaussian":
            location, scale = prediction.chunk(2, dim=-1)
            return Forecast(location, scale=scale)
        if self.spec.distribution == "quantiles":
            quantiles = prediction.unflatten(-1, (self.groups, -1)).movedim(-2, -1)
            quantiles = quantiles.sort(dim=-1).values  # no crossing quantiles
            levels = list(self.spec.quantiles)
            center = quantiles[..., levels.index(0.5)] if 0.5 in levels else (quantiles.mean(-1))
            return Forecast(center, quantiles=quantiles, levels=levels)
        return Forecast(prediction)

    def _in_layout(self, location: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """A Gaussian forecast (a baseline's) in the layout of the run's model."""
        if self.spec.distribution == "gaussian":
            return torch.cat([location, scale], dim=-1)
        if self.spec.distribution == "quantiles":
            z = torch.tensor([_normal_quantile(q) for q in self.spec.quantiles])
            levels = location.unsqueeze(-2) + scale.unsqueeze(-2) * z[:, None].to(location)
            return levels.flatten(-2)  # (N, H, levels x C)
        return location

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        """Persistence, seasonal climatology and linear autoregression, fitted on the
        training split, each as a Gaussian forecast in the model's layout."""
        train = data.train
        found: dict[str, Callable[[Table], torch.Tensor]] = {}
        change = train.y.double() - torch.from_numpy(train.coords["last"]).double()[:, None]
        persistence_spread = change.std(0).float()  # (H, C): the random walk's spread
        found["persistence"] = lambda table: self._in_layout(
            torch.from_numpy(table.coords["last"]).float()[:, None].expand_as(table.y),
            persistence_spread.expand_as(table.y),
        )
        climatology = SeasonalClimatology(train)
        found[climatology.name] = lambda table: self._in_layout(*climatology(table))
        autoregression = LinearAutoregression(train)
        name = "linear autoregression"
        if train.mask is not None:  # on the past's gaps filled by linear interpolation
            name = "linear interpolation + autoregression"
        found[name] = lambda table: self._in_layout(*autoregression(table))
        return found

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        """Scores over all leads and target channels (physical units)."""
        return forecast_scores(self.forecast(prediction), truth)

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        """The test forecasts against the truth, skill by lead (with its table), and
        reliability for probabilistic forecasts."""
        from esszoo import plots
        from esszoo.run import write_csv

        forecasts = {name: self.forecast(p) for name, p in predictions.items()}
        by_lead = [
            {"predictor": name, "lead": lead + 1}
            | forecast_scores(forecast.at_lead(lead), truth[:, lead])
            for name, forecast in forecasts.items()
            for lead in range(truth.shape[1])
        ]
        write_csv(by_lead, path.parent / "scores_by_lead.csv")
        target = data.targets[0]
        label = f"{target.name} ({target.units})" if target.units else target.name
        times = data.test.coords.get("target_time")
        plots.forecast_panels(forecasts, truth, times, label, path)
        plots.skill_by_lead(by_lead, label, path.parent / "skill_by_lead.png")
        probabilistic = {n: f for n, f in forecasts.items() if f.probabilistic}
        if probabilistic:
            plots.reliability(
                {n: reliability(f, truth) for n, f in probabilistic.items()},
                path.parent / "reliability.png",
            )

    # -- new data ------------------------------------------------------------------------

    @classmethod
    def data_inputs(cls, description: dict[str, Any]) -> list[Variable]:
        """The variables the data must hold: the inputs less the time features, which
        are computed from the data's dates."""
        features = {f"{f}_{part}" for f in PERIODS for part in ("sin", "cos")}
        inputs = [Variable.from_dict(v) for v in description.get("inputs", [])]
        return [v for v in inputs if v.name not in features]

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """A forecast issued at every step with `past` steps before it: the targets at each
        lead time after it, along (time, lead_time, ...)."""
        recipe = description["recipe"]
        past, future = recipe["data"]["window"]["past"], recipe["data"]["window"]["future"]
        template = inputs[0]
        dim = sample_dim or time_dim(template) or template.dims[0]
        others = [d for d in template.dims if d != dim]
        values = np.stack([load_values(a.transpose(dim, *others)) for a in inputs], axis=-1)
        if len(values) < past:
            raise DataError(
                f"'{template.name}' has {len(values)} steps along '{dim}', fewer than the "
                f"{past} the model reads",
                f"give at least {past} consecutive steps",
            )
        times = template[dim].values
        features = [
            v["name"].rsplit("_", 1)[0]
            for v in description["inputs"]
            if v["name"].endswith("_sin") and v["name"].rsplit("_", 1)[0] in PERIODS
        ]
        phases = phase_features(times, features)
        series = values.reshape(len(values), -1, values.shape[-1])  # (T, S, C)
        windows = np.lib.stride_tricks.sliding_window_view(series, past, axis=0)
        windows = np.moveaxis(windows, -1, 2)  # (N, S, past, C)
        feature = np.lib.stride_tricks.sliding_window_view(phases, past, axis=0)
        feature = np.broadcast_to(
            np.moveaxis(feature, -1, 1)[:, None], (*windows.shape[:3], phases.shape[1])
        )
        x = np.concatenate([windows, feature], axis=-1).reshape(
            -1, past, windows.shape[-1] + phases.shape[1]
        )
        outputs = [Variable.from_dict(v) for v in description["outputs"]]
        out = np.full((len(x), future, len(predictor.output_mean)), np.nan, dtype=np.float32)
        seen = np.isfinite(x)
        if model_card(description["model"]["name"]).inputs == ("x", "mask"):
            valid = seen.any(axis=1).all(axis=1)  # an irregular past, each input seen once
            arguments = [torch.from_numpy(x[valid]).float(), torch.from_numpy(seen[valid]).float()]
        else:
            valid = seen.all(axis=(1, 2))
            arguments = [torch.from_numpy(x[valid]).float()]
        if valid.any():
            out[valid] = predict_in_batches(predictor, *arguments).numpy()
        out = out.reshape(windows.shape[0], windows.shape[1], future, -1)
        out = np.moveaxis(out, 1, -2)  # (N, H, S, channels)
        shape = [template.sizes[d] for d in others]
        leads, lead_attrs = lead_times(times, future)
        coords = {dim: times[past - 1 :], "lead_time": ("lead_time", leads, lead_attrs)}
        coords |= {name: c for name, c in template.coords.items() if dim not in c.dims}
        predicted = xr.Dataset(coords=coords)
        dims = (dim, "lead_time", *others)
        distribution = description["task"].get("distribution", "point")
        count = len(outputs)
        model = description["model"]["name"]
        for channel, variable in enumerate(outputs):
            comment = f"forecast by esszoo model '{model}' issued at {dim}, valid lead_time later"

            def field(index: int) -> np.ndarray:
                return out[..., index].reshape(out.shape[0], future, *shape)

            if distribution == "quantiles":
                levels = description["task"]["quantiles"]
                stacked = np.stack([field(q * count + channel) for q in range(len(levels))], -1)
                stacked = np.sort(stacked, axis=-1)
                predicted[variable.name] = xr.DataArray(
                    stacked[..., levels.index(0.5)] if 0.5 in levels else stacked.mean(-1),
                    dims=dims,
                    attrs=variable.attrs() | {"comment": comment + " (median)"},
                )
                predicted[f"{variable.name}_quantiles"] = xr.DataArray(
                    stacked,
                    dims=(*dims, "quantile"),
                    coords={"quantile": levels},
                    attrs=variable.attrs() | {"long_name": f"quantiles of {variable.name}"},
                )
            else:
                predicted[variable.name] = xr.DataArray(
                    field(channel), dims=dims, attrs=variable.attrs() | {"comment": comment}
                )
            if distribution == "gaussian":
                predicted[f"{variable.name}_std"] = xr.DataArray(
                    field(count + channel),
                    dims=dims,
                    attrs={
                        "units": variable.units,
                        "long_name": f"forecast spread of {variable.name} (standard deviation)",
                    },
                )
        return predicted


def output_groups(options: ForecastingOptions) -> int:
    """Output channels per target channel: 1 (a point), 2 (a Gaussian's location and
    scale) or one per quantile level."""
    return {"point": 1, "gaussian": 2}.get(options.distribution, len(options.quantiles))


def steps_after(series: torch.Tensor, past: int, horizon: int) -> torch.Tensor:
    """For each of the first `past` positions t of `series` (B, T + H, C), the `horizon`
    steps after it: (B, past, horizon, C), row t holding steps t+1 .. t+horizon."""
    return series[:, 1:].unfold(1, horizon, 1)[:, :past].movedim(-1, 2)


def _target_columns(data: SplitData) -> list[int]:
    """Where the target variables are among the inputs: pretraining learns a series from
    its own past, so the targets must be inputs too."""
    names = [v.name for v in data.inputs]
    missing = [v.name for v in data.targets if v.name not in names]
    if missing:
        raise DataError(
            f"pretraining learns the targets from their own past, and {missing} are not "
            "among the inputs",
            "add them to data.inputs",
        )
    return [names.index(v.name) for v in data.targets]


def _spans(shape: tuple[int, int], ratio: float, span: int, device: torch.device) -> torch.Tensor:
    """(B, T) True on random spans of `span` steps, about `ratio` of the steps in all."""
    starts = torch.rand(*shape, device=device) < ratio / span
    hidden = starts.clone()
    for shift in range(1, span):
        hidden[:, shift:] |= starts[:, :-shift]
    return hidden


def _std(values: torch.Tensor) -> torch.Tensor:
    """The standard deviation of each channel's finite values (1 where it is 0)."""
    values = values.double()
    mean = values.nanmean(dim=0)
    count = torch.isfinite(values).sum(0)
    std = ((values - mean).square().nansum(0) / (count - 1).clamp(min=1)).sqrt()
    return torch.where(std > 0, std, torch.ones_like(std)).float()


def forecast_scores(forecast: Forecast, truth: torch.Tensor) -> dict[str, float]:
    """RMSE, MAE and CRPS, and for forecasts with a spread the coverage of the central 50%
    and 90% intervals and the spread-skill ratio (mean spread over RMSE; 1 when the spread
    is as large as the errors)."""
    error = (forecast.center - truth).double()
    rmse = error.square().mean().sqrt().item()
    row = {
        "rmse": rmse,
        "mae": error.abs().mean().item(),
        "crps": float(forecast.crps(truth).mean()),
    }
    for name, (low, high) in INTERVALS.items():
        lower, upper = forecast.quantile(low), forecast.quantile(high)
        if lower is not None and upper is not None:
            row[name] = ((truth >= lower) & (truth <= upper)).double().mean().item()
    spread = forecast.spread()
    if spread is not None and rmse > 0:
        row["spread_skill"] = spread.double().square().mean().sqrt().item() / rmse
    return row


def reliability(forecast: Forecast, truth: torch.Tensor) -> list[tuple[float, float]]:
    """(nominal level, observed frequency of the truth below the forecast quantile)."""
    levels = forecast.levels or [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    return [(level, (truth <= forecast.quantile(level)).double().mean().item()) for level in levels]


class SeasonalClimatology:
    """The training targets' mean and spread by season: calendar month of the target
    time, and hour of day where steps are shorter than a day; the training mean and
    spread where the training split spans one month (or has no dates)."""

    def __init__(self, train: Table):
        self.keyed = _season_keys(train.coords.get("target_time"))
        y = train.y.double()  # (N, H, C)
        overall = (y.mean((0, 1)), y.std((0, 1)))
        self.fallback = overall
        self.table: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}
        if self.keyed is not None and len(np.unique(self.keyed[0])) > 1:
            keys = self.keyed[1]
            flat, values = keys.reshape(-1), y.reshape(-1, y.shape[-1])
            for key in np.unique(flat):
                chosen = values[torch.from_numpy(flat == key)]
                if len(chosen) > 1:
                    self.table[key] = (chosen.mean(0), chosen.std(0))
        hourly = self.keyed is not None and bool((self.keyed[1] != self.keyed[0]).any())
        season = "calendar month and hour" if hourly else "calendar month"
        self.name = f"climatology ({season})" if self.table else "climatology (training mean)"

    def __call__(self, table: Table) -> tuple[torch.Tensor, torch.Tensor]:
        shape = table.y.shape
        keyed = _season_keys(table.coords.get("target_time")) if self.table else None
        if keyed is None:
            mean, spread = self.fallback
            return mean.float().expand(shape), spread.float().expand(shape)
        keys = keyed[1].reshape(-1)
        pairs = [self.table.get(key, self.fallback) for key in keys]
        mean = torch.stack([p[0] for p in pairs]).reshape(shape).float()
        spread = torch.stack([p[1] for p in pairs]).reshape(shape).float()
        return mean, spread


def _season_keys(times: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(months, season keys) of target times (N, H): the month, and month x 100 + hour
    where steps are shorter than a day; None without dates."""
    if times is None:
        return None
    try:
        import pandas as pd

        index = pd.DatetimeIndex(np.asarray(times).reshape(-1))
    except (TypeError, ValueError):
        return None
    months = index.month.to_numpy().reshape(np.shape(times))
    steps = np.abs((index[1:] - index[:-1]).total_seconds())
    sub_daily = len(steps) > 0 and float(np.median(steps)) < 86400
    hours = index.hour.to_numpy().reshape(np.shape(times))
    return months, (months * 100 + hours if sub_daily else months)


def interpolate_gaps(x: torch.Tensor) -> torch.Tensor:
    """Windows (N, T, C) with their gaps (NaN) filled by linear interpolation in time
    between the observed steps, and by the nearest observed value before the first and
    after the last; a channel never observed stays NaN."""
    if not torch.isnan(x).any():
        return x
    filled = x.numpy().copy()
    steps = np.arange(x.shape[1])
    for n, c in zip(*np.nonzero(np.isnan(filled).any(axis=1)), strict=True):
        seen = np.isfinite(filled[n, :, c])
        if seen.any():
            filled[n, :, c] = np.interp(steps, steps[seen], filled[n, seen, c])
    return torch.from_numpy(filled)


class LinearAutoregression:
    """Each target step on the whole input window (and its time features) by least
    squares: the direct strategy, one set of coefficients per lead and channel; an
    irregular past is first filled by linear interpolation (`interpolate_gaps`)."""

    def __init__(self, train: Table):
        design = self._design(train.x)
        targets = train.y.double().flatten(1)  # (N, H x C)
        # SVD (gelsd): the minimum-norm solution, as the time features of the window's steps
        # are linear in those of its first one and the design is rank-deficient
        self.solution = torch.linalg.lstsq(design, targets, driver="gelsd").solution
        residual = targets - design @ self.solution
        self.spread = residual.std(0).float().view(train.y.shape[1:])

    @staticmethod
    def _design(x: torch.Tensor) -> torch.Tensor:
        flat = interpolate_gaps(x.double()).flatten(1)
        return torch.cat([flat, torch.ones(len(flat), 1, dtype=torch.float64)], dim=1)

    def __call__(self, table: Table) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (self._design(table.x) @ self.solution).float().view(table.y.shape)
        return mean, self.spread.expand_as(mean)
