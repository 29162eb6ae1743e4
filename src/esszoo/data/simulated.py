"""Data made by running a real model here: the states of climt's radiative-convective
columns with their RRTMG radiation, for the emulators of `recipes/emulate_rrtmg_*.yaml`.

An emulator of a parameterization learns from the states of its host model (see
`esszoo.physics.column_model`). `simulate_rrtmg_columns` runs independent columns of
that model (each its own climate: SST, CO2, ozone, albedo, surface pressure, wind, place),
keeps their state every 3 hours after the first day, and adds to each kept state one
perturbed copy (temperature shifted by a smooth random profile of 2 K spread, humidity
scaled by a smooth random factor of 30% spread, kept below saturation, the surface 1 K),
as emulator studies widen their training states beyond one model's trajectory
(Krasnopolsky et al. 2010; Ukkonen et al. 2020). RRTMG is then called on every kept
state, so that each target is the scheme's answer for exactly its inputs, not an
hour-old radiation step.

The file holds dims (run, time, perturbation[, level or interface]): `perturbation` 0 is
the model's own state, 1 its perturbed copy. Runs are independent draws, so that a split
into contiguous blocks of runs (`data.split.dim: run`) keeps every run, with all its
times and copies, on one side.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from esszoo.errors import RunError
from esszoo.fileio import atomic_path
from esszoo.physics.column_model import (
    TIMESTEP,
    ColumnBlowUp,
    ColumnModel,
    columns_dataset,
    draw_columns,
    saturation_humidity,
)
from esszoo.physics.radiation import rrtmg_longwave, rrtmg_shortwave

RUNS, DAYS, EVERY, SPIN_UP = 144, 12, timedelta(hours=3), timedelta(days=1)
DAY = timedelta(days=1)


def simulate_rrtmg_columns(
    path: Path,
    *,
    runs: int = RUNS,
    days: float = DAYS,
    every: timedelta = EVERY,
    spin_up: timedelta = SPIN_UP,
    seed: int = 0,
    longwave: Any = None,
    shortwave: Any = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run `runs` columns for `days`, keep states every `every`, write them with their
    RRTMG longwave and shortwave to `path` (CF-NetCDF).

    With `longwave` or `shortwave` (sympl components, for example an emulator from
    `esszoo.coupling.emulated_radiation`) in RRTMG's place, the states are those the
    model visits when driven by them, still labelled by RRTMG: the data of training on
    an emulator's own online states (`esszoo.coupling.online_states`). A run that leaves
    the possible states ends the simulation there; the states kept until then are
    written."""
    say = log or (lambda message: None)
    settings = draw_columns(runs, seed)
    model = ColumnModel(settings, longwave=longwave, shortwave=shortwave)
    keep_every = round(every / TIMESTEP)
    start = round(spin_up / TIMESTEP)
    total = round(days * DAY / TIMESTEP)
    kept, times, ended = [], [], ""
    for step in range(1, total + 1):
        try:
            model.step()
        except ColumnBlowUp as blow_up:
            ended = f"; stopped after {blow_up.days:.1f} days: {blow_up.what}"
            say(f"  {blow_up.what}")
            break
        if step >= start and (step - start) % keep_every == 0:
            kept.append(model.columns())
            times.append(np.datetime64(model.state["time"], "ns"))
        if step % round(timedelta(days=5) / TIMESTEP) == 0:
            say(f"  climt radiative-convective columns: day {step * TIMESTEP / DAY:.0f}/{days:g}")
    if not kept:
        raise RunError(
            f"no state was kept: the runs end{ended or f' after {days:g} days'}, before the "
            f"spin-up of {spin_up} is over",
            "simulate more days or a shorter spin-up",
        )
    states = xr.concat(kept, dim="time")  # (time, column[, vertical])
    rng = np.random.default_rng(seed + 1)
    columns = xr.concat([states, perturbed(states, rng)], dim="perturbation")
    # every kept state is one column for RRTMG: (perturbation, time, run) flattened
    leading = ("perturbation", "time", "column")
    flat = xr.Dataset({name: _flatten(array, leading) for name, array in columns.data_vars.items()})
    say(f"  RRTMG on {flat.sizes['column']} columns")
    radiation = xr.merge([rrtmg_longwave(flat), rrtmg_shortwave(flat)])
    shape = tuple(columns.sizes[d] for d in leading)
    variables = {}
    for name, array in {**flat.data_vars, **radiation.data_vars}.items():
        values = array.values.reshape(*shape, *array.shape[1:]).swapaxes(0, 2)
        dims = ("run", "time", "perturbation", *array.dims[1:])
        variables[name] = xr.DataArray(values, dims=dims, attrs=array.attrs)
    dataset = xr.Dataset(variables, coords={"time": ("time", np.array(times))})
    dataset = dataset.assign_coords(
        run=np.arange(runs),
        perturbation=(
            "perturbation",
            [0, 1],
            {"long_name": "0: the model's state, 1: its perturbed copy"},
        ),
        level=(
            "level",
            np.arange(dataset.sizes["level"]),
            {"long_name": "layer, counted from the surface up"},
        ),
        interface=(
            "interface",
            np.arange(dataset.sizes["interface"]),
            {"long_name": "layer interface, counted from the surface up"},
        ),
        **settings.as_coords("run"),
    )
    dataset.attrs.update(
        title="States of climt's radiative-convective columns with clear-sky RRTMG radiation",
        history=f"simulated by esszoo.data.simulated: {runs} runs, {days:g} days, kept every "
        f"{every}, after {spin_up} of spin-up, seed {seed}; radiation driving the runs: "
        f"{_driver(longwave, 'RRTMG longwave')}, {_driver(shortwave, 'RRTMG shortwave')}"
        f"{ended}",
        Conventions="CF-1.8",
    )
    encoding = {name: {"dtype": "float32"} for name in dataset.data_vars}
    with atomic_path(path) as temporary:
        dataset.to_netcdf(temporary, encoding=encoding)
    return path


def _driver(component: Any, default: str) -> str:
    return default if component is None else getattr(component, "name", type(component).__name__)


def perturbed(states: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    """A copy of `states` with smooth random perturbations of temperature and humidity."""
    shape = states["ta"].shape  # (time, column, level)
    height = np.linspace(0.0, 1.0, shape[-1])

    def smooth(spread: float) -> np.ndarray:  # random profiles of 3 sine modes
        amplitudes = rng.normal(0.0, spread / np.sqrt(1.5), (*shape[:-1], 3))
        modes = np.stack([np.sin((k + 1) * np.pi * (height + 0.5) / 1.5) for k in range(3)])
        return amplitudes @ modes

    temperature = states["ta"].values + smooth(2.0)
    saturation = saturation_humidity(temperature, states["pfull"].values)
    humidity = np.minimum(states["hus"].values * np.exp(smooth(0.3)), saturation)
    values = {name: states[name].values for name in states.data_vars}
    values |= {
        "ta": temperature,
        "hus": np.maximum(humidity, 1e-7),
        "ts": states["ts"].values + rng.normal(0.0, 1.0, shape[:-1]),
    }
    return columns_dataset(values, leading=("time", "column"))


def _flatten(array: xr.DataArray, leading: tuple[str, ...]) -> xr.DataArray:
    """(leading..., [vertical]) -> (column, [vertical])."""
    rest = [d for d in array.dims if d not in leading]
    values = array.transpose(*leading, *rest).values
    return xr.DataArray(
        values.reshape(-1, *values.shape[len(leading) :]), dims=("column", *rest), attrs=array.attrs
    )
