"""Regression: vectors of physical inputs -> vectors of physical outputs.

Batch contract: ``{"x": (B, C_in), "y": (B, C_out)}``, both normalized with the statistics
of the training split (inputs per column; targets per column). For a hybrid model
(``residual_of``), the target is the residual of a cheap physics function, and the
network learns only what the physics misses (the advice of the ESS deep-learning tour:
combine, don't replace).

Loss: MSE (or MAE, Huber) in normalized units, so every output counts alike.
Metrics, on held-out data in physical units: RMSE, MAE, bias, relative L2 error, R^2, and
for quantities that cannot be negative (precipitation, humidity, ...) the fraction of
negative predictions.
Baseline that needs no learning: ordinary least-squares linear regression on the inputs,
fitted on the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field
from torch import nn

from esszoo import metrics
from esszoo.data.dataset import SplitData, Table
from esszoo.data.tabular import physics_columns
from esszoo.data.variables import Variable, load_values
from esszoo.errors import RecipeError
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.physics import PhysicsFunction, physics_function
from esszoo.predictor import Predictor, physics_base, predict_in_batches
from esszoo.tasks import register_task
from esszoo.tasks.base import Task

NON_NEGATIVE = {
    "precipitation_amount",
    "precipitation_flux",
    "lwe_thickness_of_precipitation_amount",
    "specific_humidity",
    "relative_humidity",
    "wind_speed",
    "cloud_area_fraction",
    "surface_downwelling_shortwave_flux_in_air",
}

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "mae": nn.L1Loss,
    "huber": nn.HuberLoss,
}


def _std(values: torch.Tensor) -> torch.Tensor:
    std = values.double().std(dim=0)
    return torch.where(std > 0, std, torch.ones_like(std)).float()


class RegressionOptions(TaskOptions):
    name: str = "regression"
    loss: Literal["mse", "mae", "huber"] = Field(
        default="mse", description="in normalized units, so that every output counts alike"
    )
    residual_of: str | None = Field(
        default=None, description="learn the residual of this esszoo.physics function (hybrid)"
    )


@register_task
class RegressionTask(Task):
    """Train `net` to map normalized inputs to normalized targets (or residuals)."""

    name = "regression"
    Options = RegressionOptions
    data_kinds = ("table",)
    headline = ("rmse", "lower")
    plot_file = "prediction_vs_truth.png"

    def __init__(self, net: nn.Module, spec: RegressionOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        self.loss = LOSSES[spec.loss]()
        self.base_columns: list[int] = []

    def label(self, model_name: str) -> str:
        """A hybrid is named by its network and its physics."""
        if self.spec.residual_of:
            return f"hybrid: {model_name} + {self.spec.residual_of}"
        return model_name

    # -- data ------------------------------------------------------------------------------

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        """The zoo constructor arguments that the data fix."""
        return {"in_channels": len(data.inputs), "out_channels": len(data.targets)}

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        """Fix the normalization from the training split; return each split's batch tensors."""
        if self.spec.residual_of:
            function = physics_function(self.spec.residual_of)
            self.base_columns = physics_columns(function, data.inputs)
            check_base_outputs(function, data.targets)
        train_x = data.train.x
        self.stats = {"input_mean": train_x.mean(0), "input_std": _std(train_x)}
        residual = self._fit_target(data.train.x, data.train.y)
        self.stats |= {"output_mean": residual.mean(0), "output_std": _std(residual)}
        predictor = self.predictor()
        tensors = {}
        for split, table in data.tables.items():
            target = self._fit_target(table.x, table.y)
            tensors[split] = {
                "x": predictor.normalize(table.x),
                "y": (target - self.stats["output_mean"]) / self.stats["output_std"],
            }
        return tensors

    def _fit_target(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the network is fitted to, in physical units: y, or y minus the physics base."""
        if not self.spec.residual_of:
            return y
        function = physics_function(self.spec.residual_of).function
        with torch.no_grad():
            return y - physics_base(function, self.base_columns, x)

    def predictor(self) -> Predictor:
        """The network in physical units, with its normalization and physics base."""
        return Predictor(
            self.net,
            **self.stats,
            base=self.spec.residual_of,
            base_columns=self.base_columns,
        )

    # -- training --------------------------------------------------------------------------

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(self.net(batch["x"]), batch["y"])

    # -- evaluation ------------------------------------------------------------------------

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        """Predictors that need no learning, fitted on the training split; each takes a table."""
        fit = linear_regression(data.train.x, data.train.y)
        return {"linear regression": lambda table: fit(table.x)}

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        """Scores over all target variables (physical units)."""
        row = {
            "rmse": metrics.rmse(prediction, truth),
            "mae": metrics.mae(prediction, truth),
            "bias": metrics.bias(prediction, truth),
            "rel_err": metrics.relative_error(prediction, truth),
            "r2": metrics.r2(prediction, truth),
        }
        positive = [i for i, v in enumerate(data.targets) if v.standard_name in NON_NEGATIVE]
        if positive:
            row["neg_frac"] = metrics.negative_fraction(prediction[:, positive])
        return row

    def plot(
        self,
        predictions: dict[str, torch.Tensor],
        truth: torch.Tensor,
        data: SplitData,
        path: Path,
    ) -> None:
        """Prediction against truth on the test split, for the model and its baselines."""
        from esszoo.plots import scatter_panels

        target = data.targets[0]
        scatter_panels(
            {name: p[:, 0] for name, p in predictions.items()},
            truth[:, 0],
            label=f"{target.name} ({target.units})",
            path=path,
        )

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """Every point of the inputs' grid is a sample; the outputs on that grid, NaN where
        an input is missing."""
        outputs = [Variable.from_dict(v) for v in description["outputs"]]
        template = inputs[0]
        values = np.empty((template.size, len(inputs)), dtype=np.float32)  # what the net takes
        for column, array in enumerate(inputs):
            values[:, column] = load_values(array, dtype=np.float32).reshape(-1)
        valid = np.isfinite(values).all(axis=1)
        if valid.all():  # no copy of a global field's worth of columns
            result = predict_in_batches(predictor, torch.from_numpy(values)).numpy()
        else:
            result = np.full((values.shape[0], len(outputs)), np.nan, dtype=np.float32)
            if valid.any():
                x = torch.from_numpy(values[valid])
                result[valid] = predict_in_batches(predictor, x).numpy()
        predicted = xr.Dataset(coords=dict(template.coords.items()))
        names = ", ".join(str(a.name) for a in inputs)
        for column, variable in enumerate(outputs):
            attrs = variable.attrs() | {
                "comment": f"predicted by esszoo model '{description['model']['name']}' from "
                f"{names}; NaN where an input is missing",
            }
            predicted[variable.name] = xr.DataArray(
                result[:, column].reshape(template.shape), dims=template.dims, attrs=attrs
            )
        return predicted


def check_base_outputs(function: PhysicsFunction, targets: list[Variable]) -> None:
    """A hybrid's physics must give the targets, in their order and units: the network
    learns target minus base, output by output."""
    gives = [(standard_name, units) for _, standard_name, units in function.outputs]
    wanted = [(v.standard_name, v.units) for v in targets]
    if gives != wanted:
        names = ", ".join(name for name, _, _ in function.outputs)
        raise RecipeError(
            f"task.residual_of '{function.name}' gives [{names}] (by standard name and "
            f"units), and the targets are {[v.name for v in targets]}",
            f"set data.targets to the variables of [{names}], in that order",
        )


def linear_regression(x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Least-squares fit y ~ x @ W + b; returns the fitted predictor."""
    design = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, y.double()).solution

    def predict(inputs: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(len(inputs), 1, dtype=torch.float64)
        return (torch.cat([inputs.double(), ones], dim=1) @ solution).float()

    return predict
