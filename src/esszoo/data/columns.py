"""Columns of the atmosphere for column emulators: profiles and scalars in, profiles and
scalars out, one sample per column.

A column parameterization (radiation, convection) reads whole profiles (temperature on
every level) and surface or top values (surface temperature, the Sun's angle) and writes
profiles (heating rates) and fluxes. Here every point of the variables' shared *sample*
dimensions (for example run x time) is one column; a variable with one more dimension
is a profile along it (its *vertical* dimension, `level` or `interface`, counted as the
data count it). Each sample's vector holds the profiles first, a level after another and
in the order the recipe names them, then the scalars: the layout that `model_shape`
passes to vertically aware models (`column_rnn`), which an MLP simply reads flat.

The split is by whole runs (`data.split.dim: run`): the columns of one run are
neighbours in time and never sit on both sides. `data.keep` names variables carried
beside each sample for the task's scores (for example `phalf`, the interface pressures
that the energy check integrates over), that are not inputs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.dataset import SplitData, Table
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError, did_you_mean
from esszoo.options import DataOptions, ShuffledSplitOptions


class ColumnOptions(DataOptions):
    """Columns: profiles and scalars that share their sample dimensions."""

    targets: list[str] = Field(description="target profiles and scalars by name")
    keep: list[str] = Field(
        default=[], description="variables carried beside each sample for scores, not inputs"
    )
    train_extra: list[str] = Field(
        default=[],
        description="files of more columns with the same variables that join the training "
        "split only, for example the states a coupled emulator visited, labelled by the "
        "scheme (esszoo.coupling.online_states)",
    )
    split: ShuffledSplitOptions = ShuffledSplitOptions(dim="run")


@register_data_kind("columns", ColumnOptions, "columns of profiles and scalars")
def build_columns(dataset: xr.Dataset, options: ColumnOptions, context: DataContext) -> SplitData:
    data = column_data(
        dataset,
        inputs=options.inputs,
        targets=options.targets,
        keep=options.keep,
        seed=context.seed,
        **options.split.arguments(),
    )
    for source in options.train_extra:
        data = with_training_columns(data, source, options)
    return data


def with_training_columns(data: SplitData, source: str, options: ColumnOptions) -> SplitData:
    """`data` with every column of the file `source` added to its training split; the
    variables must be the same, on the same levels and in the same units."""
    from esszoo.data.source import open_source

    dataset = open_source(source)
    arrays = {
        "input": _profiles_first(_variables(dataset, options.inputs, "input")),
        "target": _profiles_first(_variables(dataset, options.targets, "target")),
    }
    kept = _variables(dataset, options.keep, "kept") if options.keep else []
    everything = arrays["input"] + arrays["target"] + kept
    sample_dims = [d for d in everything[0].dims if all(d in a.dims for a in everything)]
    for given, trained in zip(
        [_variable(a, sample_dims) for a in arrays["input"] + arrays["target"]],
        data.inputs + data.targets,
        strict=True,
    ):
        if (given.units, given.levels) != (trained.units, trained.levels):
            raise DataError(
                f"data.train_extra '{source}': '{given.name}' is in '{given.units}' on "
                f"{given.levels or 0} levels, the data's in '{trained.units}' on "
                f"{trained.levels or 0}",
                "give extra columns in the layout of data.source",
            )
    order = tuple(sample_dims)
    x = _matrix(arrays["input"], order).reshape(-1, features(data.inputs))
    y = _matrix(arrays["target"], order).reshape(-1, features(data.targets))
    carried = {str(a.name): _matrix([a], order).reshape(x.shape[0], -1) for a in kept}
    valid = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    more = Table(
        torch.from_numpy(x[valid]).float(),
        torch.from_numpy(y[valid]).float(),
        coords={k: v[valid] for k, v in carried.items()},
    )
    train = data.tables["train"]
    tables = dict(data.tables)
    tables["train"] = Table(
        torch.cat([train.x, more.x]),
        torch.cat([train.y, more.y]),
        coords={k: np.concatenate([v, more.coords[k]]) for k, v in train.coords.items()},
    )
    return replace(data, tables=tables)


def column_data(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    targets: list[str],
    keep: list[str] | None = None,
    split_dim: str | None = "run",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
    shuffle: bool = False,
    seed: int = 0,
) -> SplitData:
    """Train, validation and test tables of columns: x (N, features), y (N, outputs)."""
    split_dim = split_dim or "run"
    input_arrays = _variables(dataset, inputs, "input")
    target_arrays = _variables(dataset, targets, "target")
    kept_arrays = _variables(dataset, keep, "kept") if keep else []
    everything = input_arrays + target_arrays + kept_arrays
    sample_dims = [d for d in everything[0].dims if all(d in a.dims for a in everything)]
    for array in everything:
        extra = [d for d in array.dims if d not in sample_dims]
        if len(extra) > 1:
            raise DataError(
                f"variable '{array.name}' has dimensions {tuple(array.dims)}: more than one "
                f"beyond the samples' {tuple(sample_dims)}",
                "a column variable is a scalar or a profile along one vertical dimension",
            )
    if split_dim not in sample_dims:
        raise DataError(
            f"the columns' sample dimensions are {tuple(sample_dims)}, without the split "
            f"dimension '{split_dim}'",
            f"set data.split.dim to one of {tuple(sample_dims)}",
        )
    order = (split_dim, *[d for d in sample_dims if d != split_dim])
    input_arrays, target_arrays = _profiles_first(input_arrays), _profiles_first(target_arrays)
    x_values = _matrix(input_arrays, order)
    y_values = _matrix(target_arrays, order)
    kept = {str(a.name): _matrix([a], order) for a in kept_arrays}
    coordinate = (
        dataset[split_dim].values if split_dim in dataset.coords else np.arange(x_values.shape[0])
    )
    split = contiguous_split(coordinate, split_dim, train, val, test, shuffle=shuffle, seed=seed)
    tables, dropped = {}, {}
    for name in SPLITS:
        rows = split.indices(name)
        x = x_values[rows].reshape(-1, x_values.shape[-1])
        y = y_values[rows].reshape(-1, y_values.shape[-1])
        carried = {k: v[rows].reshape(-1, v.shape[-1]) for k, v in kept.items()}
        valid = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
        if not valid.any():
            raise DataError(f"the {name} split has no column without missing values")
        dropped[name] = int((~valid).sum())
        tables[name] = Table(
            torch.from_numpy(x[valid]).float(),
            torch.from_numpy(y[valid]).float(),
            coords={k: v[valid] for k, v in carried.items()},
        )
    return SplitData(
        inputs=[_variable(a, sample_dims) for a in input_arrays],
        targets=[_variable(a, sample_dims) for a in target_arrays],
        tables=tables,
        split=split,
        dims=order,
        dropped=dropped,
    )


def _variables(dataset: xr.Dataset, names: list[str], where: str) -> list[xr.DataArray]:
    if not names:
        raise DataError(f"no variables given as {where}s")
    missing = [n for n in names if n not in dataset.data_vars]
    if missing:
        hint = did_you_mean(missing[0], map(str, dataset.data_vars))
        available = ", ".join(sorted(map(str, dataset.data_vars)))
        raise DataError(
            f"variable '{missing[0]}' ({where}) is not in the data",
            hint or f"the data hold: {available}",
        )
    return [dataset[n] for n in names]


def _profiles_first(arrays: list[xr.DataArray]) -> list[xr.DataArray]:
    dims = min(a.ndim for a in arrays)
    return [a for a in arrays if a.ndim > dims] + [a for a in arrays if a.ndim == dims]


def _matrix(arrays: list[xr.DataArray], order: tuple[str, ...]) -> np.ndarray:
    """(split dim, other sample dims..., features): profiles a level after another."""
    blocks = []
    for array in arrays:
        vertical = [d for d in array.dims if d not in order]
        values = load_values(array.transpose(*order, *vertical))
        blocks.append(values if vertical else values[..., None])
    return np.concatenate(blocks, axis=-1)


def _variable(array: xr.DataArray, sample_dims: list[str]) -> Variable:
    vertical = [d for d in array.dims if d not in sample_dims]
    base = Variable.of(array)
    if not vertical:
        return base
    levels = array.sizes[vertical[0]]
    return Variable(**(base.to_dict() | {"vertical": vertical[0], "levels": levels}))


def column_layout(variables: list[Variable]) -> tuple[int, int | None]:
    """(number of profiles, their common number of levels or None) of a column vector."""
    profiles = [v for v in variables if v.levels]
    sizes = {v.levels for v in profiles}
    return len(profiles), (sizes.pop() if len(sizes) == 1 else None)


def features(variables: list[Variable]) -> int:
    """The length of the vector the variables make."""
    return sum(v.levels or 1 for v in variables)


def slices(variables: list[Variable]) -> dict[str, slice]:
    """Where each variable lies in the vector."""
    out, start = {}, 0
    for v in variables:
        out[v.name] = slice(start, start + (v.levels or 1))
        start += v.levels or 1
    return out
