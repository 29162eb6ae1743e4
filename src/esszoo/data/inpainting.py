"""Fields with real gap patterns laid over them, for learning and scoring reconstructions.

Every field of the chosen variable keeps its own missing points (e.g. land: NaN) and is
paired with gap patterns cut from real fields (`masks.py`): the gaps hide values whose
truth is known, so a reconstruction can be scored where it was hidden. Training fields
are each paired with `train_gaps` patterns (a fresh draw per pairing); validation and
test fields with `eval_gaps` fixed patterns, so every model and baseline sees the same
holes. Optionally the training fields come from another source (`train_on`): model
output regridded to the observation grid, as Kadow et al. (2020) trained on simulations
and repaired observations. Each record is kept as anomalies from its own mean, as Kadow
et al. reconstruct anomalies of every record against its own climatology: the model's
fields enter as their anomalies added to the observations' training-period mean, on the
observations' ocean.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.coords import LOOKED_FOR
from esszoo.data.dataset import SplitData, Table
from esszoo.data.fields import grid_fields
from esszoo.data.grid import Grid
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.masks import SOURCES, gap_patterns
from esszoo.data.regrid import NearestRegridder
from esszoo.data.source import open_source
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError
from esszoo.options import DataOptions, Options


class GapOptions(Options):
    """Gap patterns laid over complete fields: real shapes from `sources`."""

    sources: list[Literal["coast", "cloud"]] = ["coast", "cloud"]
    train: int = Field(default=16, ge=1, description="patterns per training field")
    eval: int = Field(default=4, ge=1, description="patterns per validation or test field")


class TrainOnOptions(Options):
    """Train on another source (e.g. model output), regridded to the data's grid."""

    source: str
    variable: str


class GappedFieldOptions(DataOptions):
    """Fields of one variable under real gap patterns, whose truth is known."""

    inputs: list[str] = Field(
        min_length=1, max_length=1, description="the one variable to reconstruct"
    )
    gaps: GapOptions = GapOptions()
    train_on: TrainOnOptions | None = Field(
        default=None, description="train on another source, e.g. {source: nemo, variable: tos}"
    )


@register_data_kind("gapped_fields", GappedFieldOptions, "fields under gap patterns")
def build_gapped_fields(
    dataset: xr.Dataset, options: GappedFieldOptions, context: DataContext
) -> SplitData:
    train_on = options.train_on
    return inpainting_data(
        dataset,
        variable=options.inputs[0],
        gap_sources=tuple(options.gaps.sources),
        train_gaps=options.gaps.train,
        eval_gaps=options.gaps.eval,
        seed=context.seed,
        train_on=open_source(train_on.source) if train_on else None,
        train_variable=train_on.variable if train_on else None,
        **options.split.arguments(),
    )


def _fields(dataset: xr.Dataset, variable: str, dim: str) -> tuple[np.ndarray, xr.DataArray, Grid]:
    """The fields of `variable` (time, *grid) and their grid, which must know the latitude
    and longitude of every point: gap patterns are laid by them."""
    arrays, grid_dims = grid_fields(dataset, [variable], dim)
    array = arrays[variable]
    grid = Grid.of(array, grid_dims)
    for role in ("latitude", "longitude"):
        if getattr(grid, role) is None:
            raise DataError(
                f"'{variable}' has no {role} (looked for {LOOKED_FOR[role]})",
                "gap patterns are laid by latitude and longitude: give the coordinate CF "
                "attributes (e.g. units: degrees_north)",
            )
    return load_values(array).astype(np.float32), array, grid


def inpainting_data(
    dataset: xr.Dataset,
    *,
    variable: str,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
    gap_sources: tuple[str, ...] = SOURCES,
    train_gaps: int = 16,
    eval_gaps: int = 4,
    seed: int = 0,
    train_on: xr.Dataset | None = None,
    train_variable: str | None = None,
) -> SplitData:
    """Fields of `variable` paired with real gap patterns, split in time."""
    values, array, grid = _fields(dataset, variable, split_dim)
    lat, lon = grid.latitude, grid.longitude  # of every point (H, W)
    times = array[split_dim].values
    split = contiguous_split(times, split_dim, train, val, test)
    sources = {name: (values[split.indices(name)], times[split.indices(name)]) for name in SPLITS}
    if train_on is not None:
        observed_mean = _mean(sources["train"][0])
        sources["train"] = _model_fields(
            train_on, train_variable or variable, split_dim, lat, lon, observed_mean
        )

    count = {"train": train_gaps, "val": eval_gaps, "test": eval_gaps}
    tables, dropped = {}, {}
    for offset, name in enumerate(SPLITS):
        fields, field_times = sources[name]
        empty = ~np.isfinite(fields).any(axis=(1, 2))
        fields, field_times = fields[~empty], field_times[~empty]
        dropped[name] = int(empty.sum())
        if not len(fields):
            raise DataError(f"the {name} split holds no field with a value")
        patterns = gap_patterns(
            lat, lon, len(fields) * count[name], sources=gap_sources, seed=seed * 7 + offset
        )
        truth = np.repeat(fields, count[name], axis=0)[:, None]  # (N*k, 1, H, W)
        observed = np.isfinite(truth) & ~patterns[:, None]
        tables[name] = Table(
            x=torch.from_numpy(np.where(observed, truth, np.nan).astype(np.float32)),
            y=torch.from_numpy(truth),
            mask=torch.from_numpy(observed.astype(np.float32)),
            coords={split_dim: np.repeat(field_times, count[name])},
        )
    variable_info = Variable.of(array)
    return SplitData(
        inputs=[variable_info],
        targets=[variable_info],
        tables=tables,
        split=split,
        dims=tuple(array.dims),
        dropped=dropped,
        grid=grid,
    )


def _mean(fields: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # points never observed (land) have no mean: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(fields, axis=0)


def _model_fields(
    dataset: xr.Dataset,
    variable: str,
    dim: str,
    lat: np.ndarray,
    lon: np.ndarray,
    observed_mean: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Another source's fields (e.g. model output) on the target grid, nearest neighbour.

    Every target point takes the nearest point where the model has a value (so that the
    model's coarser coastline leaves no hole in the observations' ocean); the fields are
    then the model's anomalies from its own mean added to `observed_mean`, NaN wherever
    the observations never have a value.
    """
    values, array, source = _fields(dataset, variable, dim)
    has_value = np.isfinite(values).any(axis=0)
    # points without a value in any field are left out of the search
    source_lat = np.where(has_value, source.latitude, np.nan)
    regrid = NearestRegridder(source_lat, source.longitude, lat, lon, max_distance_deg=5)
    fields = regrid(values)
    if not np.isfinite(fields).any():
        raise DataError(
            f"'{variable}' of the training source has no value within 5 degrees of the grid",
            "train on a source that covers the region of the data",
        )
    return (fields - _mean(fields) + observed_mean).astype(np.float32), array[dim].values
