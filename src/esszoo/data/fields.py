"""Fields for convolutional models: samples of 2-D grids, (N, C, H, W), with their labels,
or with target fields of the same time steps (`paired_fields`).

Each input variable is a channel; its dimensions are the sample dimension (time, or a
sample index) and two grid dimensions (lat, lon or y, x). Labels are an integer variable
along the sample dimension (CF `flag_values`/`flag_meanings` name the classes), or come
from a documented rule applied to a real field (`labels.py`). Values are read in blocks
of samples so that memory stays bounded; NaN marks missing points and is kept (the task
decides how to fill it). Coarsening (block means) happens after the labels are made.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.dataset import SplitData, Table
from esszoo.data.grid import Grid
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.labels import label_rule
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values, require_values, select_variables
from esszoo.errors import DataError
from esszoo.options import GridOptions, ShuffledSplitOptions, StreamableOptions

BLOCK = 256  # samples read at a time


class LabelledFieldOptions(GridOptions):
    """Fields with one class each: a class variable, or a rule applied to a field."""

    targets: list[str] = Field(
        default=[], description="an integer class variable along the sample dimension"
    )
    label_rule: str | None = Field(
        default=None, description="class labels from the inputs by this esszoo.data.labels rule"
    )
    split: ShuffledSplitOptions = ShuffledSplitOptions()


class PairedFieldOptions(StreamableOptions):
    """Input fields and target fields of the same time steps."""

    targets: list[str] = Field(
        default=[], description="target fields by name; none: every field from itself"
    )
    stream: Literal[False] = Field(
        default=False, description="true: leave the data on disk (data larger than memory)"
    )
    window: None = Field(default=None, description="give a window for windows of frames")


@register_data_kind("labelled_fields", LabelledFieldOptions, "fields with a class each")
def build_labelled_fields(
    dataset: xr.Dataset, options: LabelledFieldOptions, context: DataContext
) -> SplitData:
    return field_data(
        dataset,
        inputs=options.inputs,
        targets=options.targets or None,
        label_rule_name=options.label_rule,
        coarsen=options.coarsen,
        seed=context.seed,
        **options.split.arguments(),
    )


@register_data_kind("paired_fields", PairedFieldOptions, "fields of the same time steps")
def build_paired_fields(
    dataset: xr.Dataset, options: PairedFieldOptions, context: DataContext
) -> SplitData:
    return paired_fields(
        dataset,
        inputs=options.inputs,
        targets=options.targets or None,
        volume=context.volume,
        coarsen=options.coarsen,
        **options.split.arguments(),
    )


def field_data(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    targets: list[str] | None = None,
    label_rule_name: str | None = None,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
    shuffle: bool = False,
    seed: int = 0,
    coarsen: dict[str, int] | None = None,
) -> SplitData:
    """Build the train/val/test tables of fields and class labels."""
    if bool(targets) == bool(label_rule_name):
        raise DataError("give the class labels either as a target variable or as a label rule")
    arrays = select_variables(dataset, inputs, "input")
    dims = tuple(arrays[0].dims)
    if split_dim not in dims or len(dims) != 3:
        raise DataError(
            f"fields need dimensions (sample, lat, lon); input '{arrays[0].name}' has {dims}",
            f"select a 2-D grid per '{split_dim}' value (e.g. one level) first",
        )
    grid_dims = tuple(d for d in dims if d != split_dim)
    arrays = [a.transpose(split_dim, *grid_dims) for a in arrays]
    if targets:
        labels, classes = _label_variable(dataset, targets, split_dim)
        label_variable = Variable.of(dataset[targets[0]])
    else:
        rule = label_rule(label_rule_name)
        labels = _apply_rule(rule, arrays, split_dim)
        classes = rule.classes
        label_variable = Variable("label", "1", "", f"class by esszoo rule {rule.name}")
    if coarsen:
        unknown = [d for d in coarsen if d not in grid_dims]
        if unknown:
            raise DataError(f"data.coarsen names {unknown}, not grid dimensions {grid_dims}")
        arrays = [a.coarsen(coarsen, boundary="trim").mean() for a in arrays]
    x_values = np.stack([load_blocks(a, split_dim) for a in arrays], axis=1)  # (N, C, H, W)

    coordinate = (
        dataset[split_dim].values if split_dim in dataset.coords else np.arange(len(labels))
    )
    split = contiguous_split(coordinate, split_dim, train, val, test, shuffle=shuffle, seed=seed)
    tables, dropped = {}, {}
    for name in SPLITS:
        rows = split.indices(name)
        x, y = x_values[rows], labels[rows]
        empty = ~np.isfinite(x).any(axis=(1, 2, 3))
        dropped[name] = int(empty.sum())
        tables[name] = Table(torch.from_numpy(x[~empty]), torch.from_numpy(y[~empty]))
    return SplitData(
        inputs=[Variable.of(a) for a in arrays],
        targets=[label_variable],
        tables=tables,
        split=split,
        dims=(split_dim, *grid_dims),
        dropped=dropped,
        classes=tuple(classes),
        grid=Grid.of(arrays[0], grid_dims),
    )


def load_blocks(array: xr.DataArray, dim: str) -> np.ndarray:
    size = array.sizes[dim]
    if size == 0:
        return load_values(array)  # says that the variable is empty
    blocks = [
        load_values(array.isel({dim: slice(start, start + BLOCK)}), part=True, dtype=np.float32)
        for start in range(0, size, BLOCK)
    ]
    return require_values(array, np.concatenate(blocks))


def _label_variable(
    dataset: xr.Dataset, targets: list[str], dim: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    (array,) = select_variables(dataset, targets[:1], "target")
    if array.dims != (dim,):
        raise DataError(
            f"label variable '{array.name}' has dimensions {array.dims}, not ('{dim}',)",
            "give one class per sample",
        )
    values = load_values(array)
    whole = np.isfinite(values).all() and (values == np.round(values)).all()
    if not whole or values.min() < 0:
        raise DataError(
            f"label variable '{array.name}' must hold non-negative whole numbers (class indices)"
        )
    labels = values.astype(np.int64)
    meanings = str(array.attrs.get("flag_meanings", "")).split()
    count = int(labels.max()) + 1
    classes = tuple(meanings) if len(meanings) == count else tuple(str(i) for i in range(count))
    return labels, classes


def _apply_rule(rule, arrays: list[xr.DataArray], dim: str) -> np.ndarray:
    matches = [a for a in arrays if a.attrs.get("standard_name") == rule.variable]
    if not matches:
        raise DataError(
            f"label rule '{rule.name}' reads a '{rule.variable}' field, and no input has that "
            "standard_name",
            f"add the {rule.variable} variable to data.inputs",
        )
    field = matches[0]
    if str(field.attrs.get("units", "")) != rule.units:
        raise DataError(
            f"label rule '{rule.name}' needs '{field.name}' in '{rule.units}', "
            f"got '{field.attrs.get('units', '')}'"
        )
    size = field.sizes[dim]
    return np.concatenate(
        [
            rule.function(load_values(field.isel({dim: slice(start, start + BLOCK)}), part=True))
            for start in range(0, size, BLOCK)
        ]
    )


def paired_fields(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    targets: list[str] | None = None,
    volume: bool = False,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
    coarsen: dict[str, int] | None = None,
) -> SplitData:
    """Input fields and target fields of the same time steps, split in time.

    One variable from others (e.g. a clean field from a noisy or coarse one), or, without
    `targets`, every field from itself (an autoencoder's compression). Fields are (N, C, H,
    W), or volumes (N, C, levels, H, W) for volume networks when the variables have a
    level dimension. Samples whose inputs are all missing are dropped; missing points of
    the targets stay NaN (not scored).
    """
    targets = targets or inputs
    arrays, grid_dims = grid_fields(
        dataset, [*inputs, *targets], split_dim, levels=volume, coarsen=coarsen
    )
    values = {name: load_blocks(a, split_dim) for name, a in arrays.items()}
    x_values = np.stack([values[name] for name in inputs], axis=1)
    y_values = np.stack([values[name] for name in targets], axis=1)
    times = dataset[split_dim].values if split_dim in dataset.coords else np.arange(len(x_values))
    split = contiguous_split(times, split_dim, train, val, test)
    tables, dropped = {}, {}
    for name in SPLITS:
        rows = np.arange(len(times))[split.indices(name)]
        empty = ~np.isfinite(x_values[rows]).reshape(len(rows), -1).any(axis=1)
        dropped[name] = int(empty.sum())
        rows = rows[~empty]
        tables[name] = Table(
            x=torch.from_numpy(x_values[rows]),
            y=torch.from_numpy(y_values[rows]),
            coords={split_dim: times[rows]},
        )
    grid, notes = field_grid(arrays[inputs[0]], grid_dims)
    return SplitData(
        inputs=[Variable.of(arrays[name]) for name in inputs],
        targets=[Variable.of(arrays[name]) for name in targets],
        tables=tables,
        split=split,
        dims=(split_dim, *grid_dims),
        dropped=dropped,
        grid=grid,
        notes=notes,
    )


def grid_fields(
    dataset: xr.Dataset,
    names: list[str],
    split_dim: str,
    *,
    levels: bool = False,
    coarsen: dict[str, int] | None = None,
) -> tuple[dict[str, xr.DataArray], tuple[str, ...]]:
    """The variables `names` as lazy (split_dim, [level,] lat, lon) arrays, coarsened by
    block means where asked, and their grid dimensions."""
    arrays = select_variables(dataset, list(dict.fromkeys(names)), "input")
    dims = tuple(arrays[0].dims)
    if split_dim not in dims or len(dims) != (4 if levels else 3):
        wanted = f"({split_dim}, level, lat, lon)" if levels else f"({split_dim}, lat, lon)"
        raise DataError(
            f"the model takes fields {wanted}; '{arrays[0].name}' has {dims}",
            "select one level per variable for 2-D models, or keep levels for volume models",
        )
    grid = tuple(d for d in dims if d != split_dim)
    arrays = {a.name: a.transpose(split_dim, *grid) for a in arrays}
    if coarsen:
        unknown = [d for d in coarsen if d not in grid]
        if unknown:
            raise DataError(f"data.coarsen names {unknown}, not grid dimensions {grid}")
        arrays = {n: a.coarsen(coarsen, boundary="trim").mean() for n, a in arrays.items()}
    return arrays, grid


def field_grid(array: xr.DataArray, dims: tuple[str, ...]) -> tuple[Grid, list[str]]:
    """The grid of a field along `dims`, and the note to make if it has no latitude."""
    grid = Grid.of(array, dims)
    note = grid.missing_latitude(str(array.name))
    return grid, [note] if note else []
