"""Windows over series: the last `past` steps in, the next `future` steps out (forecasting).

A series is a variable along time, one or many (every point of the other dimensions, a
station say, is a series of its own; the variables at a point are its channels). The
time axis is split into contiguous train, validation and test blocks first, and windows
are cut inside each block, a new one every `stride` steps, so that no window straddles
two splits; a window with a missing value is dropped (and counted), unless ``data.missing``
is "keep": then a window whose targets are whole is kept with the gaps of its past (NaN)
and a mask (1 where observed), for the models that read irregular series. ``data.thin``
makes a regular series irregular by hiding a share of each window's past observations at
random (the same ones in every run), so that those models can be judged on real values.

Inputs are the input variables at the `past` steps, followed by time features where the
data have dates: the phase of the year (and, for steps shorter than a day, of the day)
as a sine and a cosine, which forecasters and Transformers for series take to know the
season; a cycle the training split does not hold whole is left out (one year's data
trained on January to September would meet November's phase first in the test).
Targets are the target variables (default: the inputs) at the `future` steps. x: (N,
past, inputs + features), y: (N, future, targets); each window's coordinates are the
time of its last input step, the times of its targets and its series.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.coords import is_time
from esszoo.data.dataset import SplitData, Table
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values, select_variables
from esszoo.data.windows import WINDOW_HELP, WindowOptions
from esszoo.errors import DataError
from esszoo.options import DataOptions

PERIODS = {"annual": "year", "daily": "day"}  # the time features and their cycles


class SeriesOptions(DataOptions):
    """Windows over one or many series: the next steps from the last ones."""

    targets: list[str] = Field(default=[], description="variables to forecast (default: inputs)")
    window: WindowOptions = Field(description=WINDOW_HELP)
    select: dict[str, list[str | int | float]] = Field(
        default_factory=dict,
        description="the series to keep, by their points along other dimensions, e.g. "
        "{station: ['723170']} or {y: [85], x: [104]} (default: all)",
    )
    time_features: list[Literal["annual", "daily"]] | Literal["auto"] = Field(
        default="auto",
        description="phases of the year and day as inputs (auto: each cycle the steps "
        "resolve and the training split holds whole)",
    )
    missing: Literal["drop", "keep"] = Field(
        default="drop",
        description="windows whose past has missing values: dropped, or kept with their "
        "gaps and a mask for models that read irregular series (latent_ode, ode_rnn)",
    )
    thin: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="the share of past observations hidden at random in every window, the "
        "same in every run, to make a regular series irregular (implies missing: keep)",
    )


@register_data_kind("series", SeriesOptions, "windows over series (data.window)")
def build_series(dataset: xr.Dataset, options: SeriesOptions, context: DataContext) -> SplitData:
    return series_data(
        select_series(dataset, options.select),
        inputs=options.inputs,
        targets=options.targets or options.inputs,
        time_features=options.time_features,
        missing="keep" if options.thin else options.missing,
        thin=options.thin,
        **options.window.arguments(),
        **options.split.arguments(),
    )


def select_series(dataset: xr.Dataset, points: dict[str, list]) -> xr.Dataset:
    """The series at the given points of the dimensions other than time."""
    for dim, values in points.items():
        if dim not in dataset.dims:
            raise DataError(
                f"data.select names '{dim}', which is not a dimension of the data "
                f"{tuple(dataset.dims)}",
                "select along a dimension the series are laid out on",
            )
        known = dataset[dim].values
        absent = [v for v in values if not (known == np.asarray(v, dtype=known.dtype)).any()]
        if absent or not values:
            raise DataError(
                f"data.select.{dim} asks for {absent or values}, and '{dim}' holds "
                f"{_listing(known)}",
                f"choose points '{dim}' has",
            )
        dataset = dataset.sel({dim: np.asarray(values, dtype=known.dtype)})
    return dataset


def _listing(values: np.ndarray, most: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:most].tolist())
    return f"[{shown}{', ...' if len(values) > most else ''}] ({len(values)} points)"


def chosen_features(
    times: np.ndarray, requested: list[str] | str, training: np.ndarray | None = None
) -> list[str]:
    """The time features of a run: those asked for, or by `auto` the cycles that the
    steps resolve and that the `training` times (default: all) hold whole, so that no
    phase is first met in validation or test (a year's phase from one year's data,
    trained on January to September, would be)."""
    dated = is_time(times)
    if requested != "auto":
        if requested and not dated:
            raise DataError(
                f"time features {requested} need dates, and the time axis holds "
                f"{np.asarray(times).dtype} values",
                "set data.time_features: [] or give the data a time coordinate",
            )
        return list(requested)
    if not dated:
        return []
    step = _median_step_days(times)
    index = _index(times if training is None else training)
    if step is None or index is None:
        return []
    span = (index.max() - index.min()).total_seconds() / 86400 + step
    cycles = {"annual": 365.0, "daily": 1.0}
    return [name for name, days in cycles.items() if step < days / 2 and span >= days]


def _median_step_days(times: np.ndarray) -> float | None:
    if len(times) < 2:
        return None
    index = _index(times)
    if index is None:
        return None
    return float(np.median((index[1:] - index[:-1]).total_seconds())) / 86400


def _index(times: np.ndarray) -> pd.DatetimeIndex | None:
    try:
        return pd.DatetimeIndex(np.asarray(times))
    except (TypeError, ValueError):
        try:  # cftime dates of another calendar: their phase is read from their fields
            return pd.DatetimeIndex([pd.Timestamp(str(t)) for t in times])
        except (TypeError, ValueError):
            return None


def phase_features(times: np.ndarray, features: list[str]) -> np.ndarray:
    """(T, 2 x len(features)): sine and cosine of the phase of each time in the year and
    in the day."""
    if not features:
        return np.zeros((len(times), 0), dtype=np.float32)
    index = _index(times)
    if index is None:
        raise DataError("cannot read the time axis as dates for the time features")
    columns = []
    for feature in features:
        if feature == "annual":
            phase = (index.dayofyear - 1 + index.hour / 24) / 365.25
        else:
            phase = (index.hour + index.minute / 60) / 24
        columns += [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)]
    return np.stack(columns, axis=-1).astype(np.float32)


def feature_variables(features: list[str]) -> list[Variable]:
    return [
        Variable(f"{feature}_{part}", "1", "", f"{part} of the phase of the {PERIODS[feature]}")
        for feature in features
        for part in ("sin", "cos")
    ]


def as_series(
    arrays: list[xr.DataArray], split_dim: str
) -> tuple[np.ndarray, tuple[str, ...], dict[str, np.ndarray]]:
    """Values (time, series, variables) of variables along `split_dim` and any other
    dimensions (each point of those a series), with the other dimensions and their points."""
    others = tuple(d for d in arrays[0].dims if d != split_dim)
    order = (split_dim, *others)
    values = np.stack([load_values(a.transpose(*order)) for a in arrays], axis=-1)
    values = values.reshape(values.shape[0], -1, len(arrays))
    points = {}
    if others:
        grid = np.meshgrid(*[np.arange(arrays[0].sizes[d]) for d in others], indexing="ij")
        points = {d: g.ravel() for d, g in zip(others, grid, strict=True)}
    return values, others, points


def series_data(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    targets: list[str],
    past: int,
    future: int,
    stride: int = 1,
    time_features: list[str] | str = "auto",
    missing: str = "drop",
    thin: float = 0.0,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
) -> SplitData:
    """Windows of `past` steps in and `future` steps out, split in time; with `missing`
    "keep", windows whose past has gaps too (each input seen at least once), with a mask
    (1 observed), and `thin` of the past's values hidden first."""
    names = list(dict.fromkeys([*inputs, *targets]))
    arrays = select_variables(dataset, names, "input or target")
    if split_dim not in arrays[0].dims:
        raise DataError(
            f"'{arrays[0].name}' has dimensions {tuple(arrays[0].dims)}, without the time "
            f"dimension '{split_dim}'",
            "set data.split.dim to the dimension the series run along",
        )
    values, others, points = as_series(arrays, split_dim)
    times = dataset[split_dim].values if split_dim in dataset.coords else np.arange(len(values))
    split = contiguous_split(times, split_dim, train, val, test)
    features = chosen_features(times, time_features, times[split.indices("train")])
    phases = phase_features(times, features)
    x_columns = [names.index(n) for n in inputs]
    y_columns = [names.index(n) for n in targets]
    tables, dropped = {}, {}
    for name in SPLITS:
        rows = np.arange(len(times))[split.indices(name)]
        starts = np.arange(rows[0], rows[-1] + 2 - past - future, stride)
        if not len(starts):
            raise DataError(
                f"the {name} split has {len(rows)} steps, fewer than a window of {past} + {future}",
                "use a shorter window or a longer split",
            )
        table, dropped_windows = _windows(
            values, phases, starts, past, future, x_columns, y_columns, missing, thin, name
        )
        table.coords |= {
            split_dim: times[table.coords.pop("start") + past - 1],
            "target_time": times[table.coords.pop("target_start")[:, None] + np.arange(future)],
        }
        if not len(table):
            raise DataError(
                f"every window of the {name} split has a missing value",
                "use a shorter window, or fill the gaps of the series first",
            )
        tables[name], dropped[name] = table, dropped_windows
    variables = [Variable.of(a) for a in arrays]
    notes = []
    if thin:
        notes.append(f"{thin:.0%} of the past's observations hidden in every window")
    if others:
        notes.append(f"{values.shape[1]} series, one per point of {', '.join(others)}")
    return SplitData(
        inputs=[variables[c] for c in x_columns] + feature_variables(features),
        targets=[variables[c] for c in y_columns],
        tables=tables,
        split=split,
        dims=(split_dim, *others),
        dropped=dropped,
        window=(past, future),
        notes=notes,
    )


def _windows(
    values: np.ndarray,
    phases: np.ndarray,
    starts: np.ndarray,
    past: int,
    future: int,
    x_columns: list[int],
    y_columns: list[int],
    missing: str = "drop",
    thin: float = 0.0,
    split: str = "train",
) -> tuple[Table, int]:
    """Every window starting at `starts` in every series: those with no missing value, or
    (`missing` "keep") those whose targets are whole and whose past sees every variable at
    least once, with the mask of what the past observed."""
    steps = np.arange(past + future)
    window = values[starts[:, None] + steps]  # (starts, past + future, series, variables)
    window = np.moveaxis(window, 2, 1).reshape(-1, past + future, values.shape[2])
    before = window[:, :past]
    if thin:  # the same values hidden in every run: a generator seeded by the split
        rng = np.random.default_rng(SPLITS.index(split))
        before = np.where(rng.random(before.shape) < thin, np.nan, before)
    x, y = before[..., x_columns], window[:, past:][..., y_columns]
    series = np.tile(np.arange(values.shape[1]), len(starts))
    start = np.repeat(starts, values.shape[1])
    whole = np.isfinite(y).all(axis=(1, 2))
    if missing == "keep":
        valid = whole & np.isfinite(before).any(axis=1).all(axis=1)
    else:
        valid = whole & np.isfinite(x).all(axis=(1, 2))
    feature = phases[start[valid, None] + np.arange(past)]  # (N, past, features)
    x = np.concatenate([x[valid], feature], axis=-1)
    table = Table(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(y[valid].astype(np.float32)),
        mask=torch.from_numpy(np.isfinite(x).astype(np.float32)) if missing == "keep" else None,
        coords={
            "start": start[valid],
            "target_start": start[valid] + past,
            "series": series[valid],
            # the targets' last observed values before the forecast, which persistence
            # forecasts
            "last": last_observed(before[valid][..., y_columns]),
        },
    )
    return table, int((~valid).sum())


def last_observed(past: np.ndarray) -> np.ndarray:
    """The last finite value of each channel of windows (N, T, C): (N, C), NaN where none."""
    seen = np.isfinite(past)
    last = past.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)  # (N, C)
    found = np.take_along_axis(past, last[:, None], axis=1)[:, 0]
    return np.where(seen.any(axis=1), found, np.nan)
