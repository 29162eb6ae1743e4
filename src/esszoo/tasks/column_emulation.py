"""Column emulation: a column scheme (radiation, convection) learned from its inputs and
outputs, profiles and fluxes scored in their own units, level by level.

Batch contract: as regression, ``{"x": (B, features), "y": (B, outputs)}`` normalized per
feature with the training split's statistics; a sample's vector holds the profiles a
level after another, then the scalars (`esszoo.data.columns`). Models that read the
vertical structure get ``levels``, ``profile_inputs`` and ``profile_outputs`` from the
data; others (the MLP) read the vector flat.

Loss: MSE in normalized units, so that every level and every flux counts alike.

Scores, on held-out runs in physical units: RMSE and bias of each target variable over
all its levels (``tntrl_rmse`` in K day-1, ``rlut_rmse`` in W m-2, ...); ``profile_rmse``
over every profile target (the headline: a model that loses to a baseline on it is
marked); ``flux_rmse`` over every scalar target; and the energy check of radiation:
where the targets hold a heating rate and the fluxes of its column budget (found by CF
standard name, `esszoo.physics.radiation.energy_budgets`) and the data carry the
interface pressures (`data.keep`), the column integral of the predicted heating,
sum_k c_p / g dT/dt_k dp_k, against the predicted net flux into the atmosphere:
``energy_rmse`` and ``energy_bias`` in W m-2 (RRTMG itself closes it to 1e-4 W m-2).
By level (`scores_by_level.csv` and the figure): each predictor's RMSE and bias of
each profile beside the truth's own spread at that level, the yardstick of "small".

A hybrid (``residual_of``, as in regression) learns the targets minus a cheap column
physics (`grey_longwave` under RRTMG's longwave), which must give the targets in their
order and units; the physics sits inside the predictor, and so inside its export.

Baselines that need no learning: least-squares linear regression on the inputs, fitted on
the training split (inherited from regression); for a hybrid also its physics alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.columns import column_layout, features, slices
from esszoo.data.dataset import SplitData, Table
from esszoo.data.tabular import physics_columns
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError
from esszoo.physics import physics_function
from esszoo.physics.radiation import column_energy_residual, energy_budgets
from esszoo.predictor import physics_base, predict_in_batches
from esszoo.tasks import register_task
from esszoo.tasks.regression import RegressionOptions, RegressionTask
from esszoo.units import converter


class ColumnEmulationOptions(RegressionOptions):
    name: str = "column_emulation"
    interfaces: str = Field(
        default="phalf",
        description="variable of interface pressures (Pa) carried with each sample "
        "(data.keep) for the energy check",
    )


@register_task
class ColumnEmulationTask(RegressionTask):
    """Regression of whole columns: profiles and fluxes, scored by variable and level."""

    name = "column_emulation"
    Options = ColumnEmulationOptions
    data_kinds = ("columns",)
    headline = ("profile_rmse", "lower")
    plot_file = "errors_by_level.png"
    optional_shape = ("levels", "profile_inputs", "profile_outputs")
    printed_scores = (
        "profile_rmse",
        "profile_bias",
        "flux_rmse",
        "flux_bias",
        "energy_rmse",
        "energy_bias",
    )

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int | None]:
        profile_inputs, levels = column_layout(data.inputs)
        profile_outputs, output_levels = column_layout(data.targets)
        return {
            "in_channels": features(data.inputs),
            "out_channels": features(data.targets),
            "levels": levels if output_levels in (None, levels) else None,
            "profile_inputs": profile_inputs,
            "profile_outputs": profile_outputs,
        }

    def baselines(self, data: SplitData) -> dict[str, Any]:
        """Linear regression; for a hybrid also its cheap physics alone."""
        found = super().baselines(data)
        if self.spec.residual_of:
            function = physics_function(self.spec.residual_of)
            columns = physics_columns(function, data.inputs)

            def physics(table: Table) -> torch.Tensor:
                with torch.no_grad():
                    return physics_base(function.function, columns, table.x.double()).float()

            found[f"physics alone: {function.short}"] = physics
        return found

    # -- evaluation ------------------------------------------------------------------------

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        """RMSE and bias per variable, over profiles and over fluxes; the energy check."""
        error = (prediction.double() - truth.double()).numpy()
        where = slices(data.targets)
        row: dict[str, float] = {}
        profiles = [v for v in data.targets if v.levels]
        scalars = [v for v in data.targets if not v.levels]
        for group, variables in (("profile", profiles), ("flux", scalars)):
            if variables:
                part = np.concatenate([error[:, where[v.name]] for v in variables], axis=1)
                row[f"{group}_rmse"] = float(np.sqrt((part**2).mean()))
                row[f"{group}_bias"] = float(part.mean())
        for v in data.targets:
            part = error[:, where[v.name]]
            row[f"{v.name}_rmse"] = float(np.sqrt((part**2).mean()))
            row[f"{v.name}_bias"] = float(part.mean())
        residual = self.energy_residual(prediction, data, table)
        if residual is not None:
            row["energy_rmse"] = float(np.sqrt((residual**2).mean()))
            row["energy_bias"] = float(residual.mean())
        return row

    def energy_residual(
        self, outputs: torch.Tensor, data: SplitData, table: Table | None
    ) -> np.ndarray | None:
        """Column heating minus net flux in (W m-2) of `outputs`, where the check applies."""
        if table is None or self.spec.interfaces not in table.coords:
            return None
        by_standard_name = {v.standard_name: v for v in data.targets if v.standard_name}
        where = slices(data.targets)
        values = outputs.double().numpy()
        for heating_name, budget in energy_budgets().items():
            heating = by_standard_name.get(heating_name)
            if heating is None or not all(name in by_standard_name for name in budget):
                continue
            to_k_day = converter(heating.units, "K day-1", heating.name)
            rates = values[:, where[heating.name]]
            rates = to_k_day(rates) if to_k_day else rates
            net = sum(
                sign * values[:, where[by_standard_name[name].name]][:, 0]
                for name, sign in budget.items()
            )
            return column_energy_residual(rates, table.coords[self.spec.interfaces], net)
        return None

    def plot(
        self,
        predictions: dict[str, torch.Tensor],
        truth: torch.Tensor,
        data: SplitData,
        path: Path,
    ) -> None:
        """RMSE and bias by level of every profile target, beside the truth's spread;
        the same figures in scores_by_level.csv."""
        from esszoo.plots import errors_by_level
        from esszoo.run import write_csv

        where = slices(data.targets)
        pressure = self._level_pressure(data)
        profiles = [v for v in data.targets if v.levels]
        rows, panels = [], {}
        for variable in profiles:
            true = truth[:, where[variable.name]].double().numpy()
            spread = true.std(axis=0)
            curves = {}
            for name, prediction in predictions.items():
                error = prediction[:, where[variable.name]].double().numpy() - true
                curves[name] = (np.sqrt((error**2).mean(axis=0)), error.mean(axis=0))
                for level in range(variable.levels or 0):
                    rows.append(
                        {
                            "variable": variable.name,
                            "units": variable.units,
                            "level": level,
                            "pressure_hPa": None if pressure is None else pressure[level],
                            "predictor": name,
                            "rmse": curves[name][0][level],
                            "bias": curves[name][1][level],
                            "truth_std": spread[level],
                        }
                    )
            panels[variable] = (curves, spread)
        if not profiles:
            return super().plot(predictions, truth, data, path)
        write_csv(rows, path.parent / "scores_by_level.csv")
        errors_by_level(panels, pressure, path)

    @staticmethod
    def _level_pressure(data: SplitData) -> np.ndarray | None:
        """Mean pressure of each level (hPa) over the test columns, where it is an input."""
        where = slices(data.inputs)
        for v in data.inputs:
            if v.standard_name == "air_pressure" and v.vertical == "level":
                to_pa = converter(v.units, "Pa", v.name)
                values = data.test.x[:, where[v.name]].double().numpy()
                return (to_pa(values) if to_pa else values).mean(axis=0) / 100.0
        return None

    # -- prediction ------------------------------------------------------------------------

    @staticmethod
    def _check_orientation(predictor: Any, trained: list[Variable], x: np.ndarray) -> None:
        """Refuse profiles that run the other way up from the training columns (found by
        a pressure profile: its training mean against the data's)."""
        where = slices(trained)
        mean = getattr(predictor, "input_mean", None)
        for v in trained:
            if v.standard_name == "air_pressure" and v.levels and mean is not None:
                trained_profile = mean[where[v.name]].double().numpy()
                given = np.nanmean(x[:, where[v.name]], axis=0)
                if np.sign(trained_profile[0] - trained_profile[-1]) != np.sign(
                    given[0] - given[-1]
                ):
                    raise DataError(
                        f"the profiles are upside down: '{v.name}' runs the other way along "
                        f"'{v.vertical}' from the columns the model was trained on",
                        f"reverse the data along '{v.vertical}' (isel({v.vertical}=slice(None, "
                        "None, -1)))",
                    )

    @classmethod
    def predictions(
        cls,
        predictor: torch.nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """Every point of the inputs' sample dimensions is a column; the outputs on them,
        profiles along their vertical dimension, NaN where an input is missing."""
        trained = [Variable.from_dict(v) for v in description["inputs"]]
        outputs = [Variable.from_dict(v) for v in description["outputs"]]
        first = inputs[0]
        sample_dims = [d for d in first.dims if d != trained[0].vertical]
        shape = tuple(first.sizes[d] for d in sample_dims)
        blocks = []
        for variable, array in zip(trained, inputs, strict=True):
            values = load_values(
                array.transpose(*sample_dims, *([variable.vertical] if variable.vertical else []))
            )
            blocks.append(values.reshape(-1, variable.levels or 1))
        x = np.concatenate(blocks, axis=1)
        cls._check_orientation(predictor, trained, x)
        valid = np.isfinite(x).all(axis=1)
        result = np.full((x.shape[0], features(outputs)), np.nan, dtype=np.float32)
        if valid.any():
            columns = torch.from_numpy(x[valid]).float()
            result[valid] = predict_in_batches(predictor, columns).numpy()
        verticals = {v.vertical for v in outputs if v.vertical}
        coords = {
            k: c
            for array in inputs
            for k, c in array.coords.items()
            if set(c.dims) <= set(sample_dims) | verticals
        }
        predicted = xr.Dataset(coords=coords)
        names = ", ".join(str(a.name) for a in inputs)
        for variable, where in zip(outputs, slices(outputs).values(), strict=True):
            values = result[:, where].reshape(*shape, variable.levels or 1)
            dims = [*sample_dims, variable.vertical] if variable.levels else sample_dims
            values = values if variable.levels else values[..., 0]
            predicted[variable.name] = xr.DataArray(
                values,
                dims=dims,
                attrs=variable.attrs()
                | {
                    "comment": f"predicted by esszoo model '{description['model']['name']}' "
                    f"from {names}; NaN where an input is missing"
                },
            )
        return predicted
