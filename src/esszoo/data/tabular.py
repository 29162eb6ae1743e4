"""Tables of samples for vector models: inputs (N, C_in) and targets (N, C_out).

Every point of a set of variables that share dimensions (e.g. time x station) is a
sample. The split is made along the time dimension first (contiguous blocks, see
`splits.py`); then each block's points are flattened into rows, and rows with a missing
value in any variable are dropped (NaN and `_FillValue` are the mask). Targets are either
variables of the data or the output of a hand-written physics function applied to the
inputs, the case of an emulator.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.columns import slices
from esszoo.data.dataset import SplitData, Table
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values, select_variables
from esszoo.errors import DataError, RecipeError
from esszoo.options import DataOptions, ShuffledSplitOptions
from esszoo.physics import PhysicsFunction, physics_function


class TableOptions(DataOptions):
    """Points of variables that share their dimensions, each point a sample."""

    targets: list[str] = Field(default=[], description="target variables by name")
    physics: str | None = Field(
        default=None, description="targets computed by this esszoo.physics function"
    )
    split: ShuffledSplitOptions = ShuffledSplitOptions()


@register_data_kind("table", TableOptions, "table of points")
def build_table(dataset: xr.Dataset, options: TableOptions, context: DataContext) -> SplitData:
    return tabular_data(
        dataset,
        inputs=options.inputs,
        targets=options.targets or None,
        physics=options.physics,
        seed=context.seed,
        **options.split.arguments(),
    )


def tabular_data(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    targets: list[str] | None = None,
    physics: str | None = None,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
    shuffle: bool = False,
    seed: int = 0,
) -> SplitData:
    """Build the tables for `inputs` -> `targets` (or -> `physics`(inputs))."""
    if bool(targets) == bool(physics):
        raise DataError("give the targets either as variables or as a physics function, not both")
    input_arrays = select_variables(dataset, inputs, "input")
    target_arrays = select_variables(dataset, targets, "target") if targets else []
    if target_arrays and set(target_arrays[0].dims) != set(input_arrays[0].dims):
        raise DataError(
            f"target '{target_arrays[0].name}' has dimensions {tuple(target_arrays[0].dims)} "
            f"but input '{input_arrays[0].name}' has {tuple(input_arrays[0].dims)}",
            "inputs and targets must share their grid",
        )
    dims = tuple(input_arrays[0].dims)
    if split_dim not in dims:
        raise DataError(
            f"the inputs have dimensions {dims}, without the split dimension '{split_dim}'",
            f"set data.split.dim to one of {dims}",
        )
    order = (split_dim, *[d for d in dims if d != split_dim])
    x_values = np.stack([load_values(a.transpose(*order)) for a in input_arrays], axis=-1)
    input_variables = [Variable.of(a) for a in input_arrays]
    if physics:
        function = physics_function(physics)
        if len(function.outputs) != 1:
            raise RecipeError(
                f"data.physics computes the one target of a table, and physics "
                f"'{physics}' gives {len(function.outputs)} outputs",
                "use it as task.residual_of of a column emulator instead",
            )
        y_values = apply_physics(function, x_values, input_variables)[..., None]
        ((name, standard_name, units),) = function.outputs
        target_variables = [
            Variable(name, units, standard_name, f"computed by esszoo.physics.{physics}")
        ]
    else:
        y_values = np.stack([load_values(a.transpose(*order)) for a in target_arrays], axis=-1)
        target_variables = [Variable.of(a) for a in target_arrays]

    coordinate = (
        dataset[split_dim].values if split_dim in dataset.coords else np.arange(x_values.shape[0])
    )
    _check_monotonic(coordinate, split_dim)
    split = contiguous_split(coordinate, split_dim, train, val, test, shuffle=shuffle, seed=seed)
    tables, dropped = {}, {}
    for name in SPLITS:
        rows = split.indices(name)
        x = x_values[rows].reshape(-1, x_values.shape[-1])
        y = y_values[rows].reshape(-1, y_values.shape[-1])
        valid = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
        if not valid.any():
            raise DataError(f"the {name} split has no sample without missing values")
        dropped[name] = int((~valid).sum())
        tables[name] = Table(torch.from_numpy(x[valid]).float(), torch.from_numpy(y[valid]).float())
    return SplitData(
        inputs=input_variables,
        targets=target_variables,
        tables=tables,
        split=split,
        dims=order,
        dropped=dropped,
        physics=physics,
    )


def physics_columns(function: PhysicsFunction, variables: list[Variable]) -> list[int | list[int]]:
    """Where each input of `function` lies in the samples' vector of `variables`: a
    scalar's feature, a profile's features (one per level). Found by CF standard name and,
    for a profile, its vertical dimension; units must match."""
    where = slices(variables)
    columns: list[int | list[int]] = []
    for standard_name, units, *vertical in function.inputs:
        along = vertical[0] if vertical else None
        matches = [v for v in variables if v.standard_name == standard_name and v.vertical == along]
        what = f"a profile along '{along}'" if along else "a scalar input"
        others = [v for v in variables if v.standard_name == standard_name]
        if not matches and others:
            shape = f"a profile along '{others[0].vertical}'" if others[0].vertical else "a scalar"
            raise DataError(
                f"physics '{function.name}' needs {what} with standard_name "
                f"'{standard_name}', and '{others[0].name}' is {shape}",
                f"give '{standard_name}' as {what}, or choose another physics function",
            )
        if not matches:
            raise DataError(
                f"physics '{function.name}' needs {what} with standard_name "
                f"'{standard_name}', and none of {[v.name for v in variables]} is one",
                "add the variable to data.inputs, or set its standard_name attribute",
            )
        variable = matches[0]
        if variable.units != units:
            raise DataError(
                f"physics '{function.name}' needs '{standard_name}' in '{units}', but "
                f"'{variable.name}' is in '{variable.units}'",
                f"convert '{variable.name}' to {units}",
            )
        span = where[variable.name]
        columns.append(list(range(span.start, span.stop)) if along else span.start)
    return columns


def apply_physics(
    function: PhysicsFunction, x_values: np.ndarray, variables: list[Variable]
) -> np.ndarray:
    """Run a physics function on the input columns (float64, NaN kept where missing)."""
    columns = physics_columns(function, variables)
    arguments = [torch.from_numpy(np.ascontiguousarray(x_values[..., c])) for c in columns]
    with torch.no_grad():
        return function.function(*arguments).numpy()


def _check_monotonic(coordinate: np.ndarray, dim: str) -> None:
    values = np.asarray(coordinate)
    if values.size > 1 and (
        np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.datetime64)
    ):
        steps = np.diff(values)
        if not (steps > steps.dtype.type(0)).all():
            raise DataError(
                f"the '{dim}' coordinate is not strictly increasing",
                f"sort the data by '{dim}' and remove duplicates first (ds.sortby('{dim}'))",
            )
