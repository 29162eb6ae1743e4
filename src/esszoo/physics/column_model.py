"""The host model: climt's radiative-convective column, many independent columns at once.

Emulators of radiation learn from the states of the model they will run in (Krasnopolsky
et al. 2005 from NCAR CAM; Pal et al. 2019 from E3SM; Ukkonen et al. 2020 from CAMS and
RFMIP profiles). esszoo's host is the radiative-convective column of climt's own example
(Monteiro et al. 2018, GMD, section 4.1: `examples/gmd_radiative_convective.py`): RRTMG
longwave and shortwave, Emanuel (1991) convection, and climt's SimplePhysics (Reed &
Jablonowski 2012: surface fluxes, boundary-layer mixing and large-scale condensation),
stepped by sympl's Adams-Bashforth scheme every 10 minutes, with radiation called every
hour as GCMs call it. Here the surface is a fixed sea surface temperature (the RCEMIP
protocol, Wing et al. 2018) rather than a slab, so that each column has a chosen climate,
and the Sun follows its diurnal cycle over each column's latitude and longitude
(climt's `Instellation`).

Each column is one independent run (the columns of a column model never exchange
anything), with its own sea surface temperature, CO2, ozone amount, surface albedo,
surface pressure, wind and place on Earth, drawn by `draw_columns`. Runs start from a
moist-adiabat-like profile with a random offset and adjust towards their equilibria; the
states along the way are states the model really visits.

`ColumnModel` takes its radiation components as arguments, so that the same model runs
with RRTMG or with an emulator in its place (`esszoo.coupling`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import numpy as np
import torch
import xarray as xr

from esszoo.errors import RunError
from esszoo.physics.radiation import COLUMN_VARIABLES
from esszoo.physics.thermo import saturation_specific_humidity

TIMESTEP = timedelta(minutes=10)
RADIATION_STEP = timedelta(hours=1)
START = datetime(2000, 3, 20)  # the March equinox: every latitude has a day and a night
LEVELS = 30


@dataclass(frozen=True)
class ColumnSettings:
    """What makes each column's climate: one value per column."""

    sst: np.ndarray  # K
    co2: np.ndarray  # mol mol-1
    ozone_scale: np.ndarray  # 1, times climt's default ozone profile
    albedo: np.ndarray  # 1
    surface_pressure: np.ndarray  # Pa
    wind: np.ndarray  # m s-1, the eastward wind that drives the surface fluxes
    lat: np.ndarray  # degrees_north
    lon: np.ndarray  # degrees_east
    offset: np.ndarray  # K, of the starting profile from the moist adiabat
    stratosphere: np.ndarray  # K, the starting profile's floor (its stratosphere)

    def __len__(self) -> int:
        return len(self.sst)

    def subset(self, index: np.ndarray | slice) -> ColumnSettings:
        return ColumnSettings(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def as_coords(self, dim: str) -> dict[str, tuple]:
        units = {
            "sst": "K",
            "co2": "mol mol-1",
            "ozone_scale": "1",
            "albedo": "1",
            "surface_pressure": "Pa",
            "wind": "m s-1",
            "lat": "degrees_north",
            "lon": "degrees_east",
            "offset": "K",
            "stratosphere": "K",
        }
        return {
            f"run_{f.name}": (dim, getattr(self, f.name), {"units": units[f.name]})
            for f in fields(self)
        }


def draw_columns(count: int, seed: int = 0) -> ColumnSettings:
    """`count` column climates drawn at random over the range of today's and past and
    future climates: SST 270-310 K, CO2 150-1500 ppmv (log-uniform), ozone 0.5-1.5 times
    climt's profile, albedo 0.05-0.4, surface pressure 950-1030 hPa, wind 1-10 m/s,
    latitude 60S-60N, any longitude, and a start 4 K below to 8 K above the adiabat
    (colder starts over warm seas blow up in the first hour: surface fluxes too large for
    the explicit 10-minute step) under a stratosphere of 185-225 K (the range of the
    equilibria, which the slow stratosphere takes months to reach)."""
    rng = np.random.default_rng(seed)
    return ColumnSettings(
        sst=rng.uniform(270.0, 310.0, count),
        co2=np.exp(rng.uniform(np.log(150e-6), np.log(1500e-6), count)),
        ozone_scale=rng.uniform(0.5, 1.5, count),
        albedo=rng.uniform(0.05, 0.4, count),
        surface_pressure=rng.uniform(95000.0, 103000.0, count),
        wind=rng.uniform(1.0, 10.0, count),
        lat=rng.uniform(-60.0, 60.0, count),
        lon=rng.uniform(0.0, 360.0, count),
        offset=rng.uniform(-4.0, 8.0, count),
        stratosphere=rng.uniform(185.0, 225.0, count),
    )


class ColumnBlowUp(RunError):
    """A column of the model left the physically possible states."""

    def __init__(self, columns: np.ndarray, days: float):
        self.columns, self.days = columns, days
        super().__init__(
            f"column(s) {columns.tolist()[:8]} of the radiative-convective model blew up "
            f"after {days:.2f} days (temperature outside 160-355 K or not finite)",
            "the model stops here; with an emulator coupled in, this is its online failure",
        )


class ColumnModel:
    """climt's radiative-convective column for each of `settings`' columns.

    `longwave` and `shortwave` are sympl tendency components (default: climt's RRTMG);
    `step()` advances every column by one time step.
    """

    def __init__(
        self,
        settings: ColumnSettings,
        *,
        longwave=None,  # noqa: ANN001 (a sympl TendencyComponent)
        shortwave=None,  # noqa: ANN001
        levels: int = LEVELS,
    ):
        import climt
        from sympl import AdamsBashforth, UpdateFrequencyWrapper

        warnings.filterwarnings("ignore", module="sympl")
        self.settings = settings
        self.convection = climt.EmanuelConvection()
        self.surface = climt.SimplePhysics()
        self.instellation = climt.Instellation()
        self.longwave = longwave or climt.RRTMGLongwave()
        self.shortwave = shortwave or climt.RRTMGShortwave(ignore_day_of_year=True)
        grid = climt.get_grid(nx=len(settings), ny=1, nz=levels)
        components = [self.surface, self.convection, self.longwave, self.shortwave]
        self.state = climt.get_default_state(
            [*components, self.instellation, climt.RRTMGShortwave()], grid_state=grid
        )
        self._set_climates()
        self.stepper = AdamsBashforth(
            [
                self.convection,
                UpdateFrequencyWrapper(self.longwave, RADIATION_STEP),
                UpdateFrequencyWrapper(self.shortwave, RADIATION_STEP),
            ]
        )
        self.steps = 0

    def _set_climates(self) -> None:
        s, state = self.settings, self.state
        sigma_a = state["atmosphere_hybrid_sigma_pressure_a_coordinate_on_interface_levels"]
        sigma_b = state["atmosphere_hybrid_sigma_pressure_b_coordinate_on_interface_levels"]
        phalf = sigma_a.values[:, None] + sigma_b.values[:, None] * s.surface_pressure[None, :]
        # mid-level pressures as climt puts them between its interfaces
        default_ratio = (
            state["air_pressure"].values[:, 0, 0]
            / (state["air_pressure_on_interface_levels"].values[:-1, 0, 0])
        )
        pfull = phalf[:-1] * default_ratio[:, None]
        state["time"] = START
        state["surface_air_pressure"].values[0, :] = s.surface_pressure
        state["air_pressure_on_interface_levels"].values[:, 0, :] = phalf
        state["air_pressure"].values[:, 0, :] = pfull
        state["surface_temperature"].values[0, :] = s.sst
        temperature = np.maximum(
            s.sst[None] * (pfull / s.surface_pressure[None]) ** 0.19 + s.offset[None],
            s.stratosphere[None],
        )
        state["air_temperature"].values[:, 0, :] = temperature
        state["specific_humidity"].values[:, 0, :] = 0.6 * saturation_humidity(
            temperature, pfull
        ) * (pfull > 10000.0) + 2e-6 * (pfull <= 10000.0)
        state["mole_fraction_of_ozone_in_air"].values[:, 0, :] *= s.ozone_scale[None]
        state["mole_fraction_of_carbon_dioxide_in_air"].values[:, 0, :] = s.co2[None]
        for name in (
            "surface_albedo_for_direct_shortwave",
            "surface_albedo_for_direct_near_infrared",
            "surface_albedo_for_diffuse_shortwave",
            "surface_albedo_for_diffuse_near_infrared",
        ):
            state[name].values[0, :] = s.albedo
        state["latitude"].values[0, :] = s.lat
        state["longitude"].values[0, :] = s.lon
        state["eastward_wind"].values[:, 0, :] = s.wind[None]

    def step(self) -> None:
        """One time step of every column: sun, then convection and radiation, then the
        surface and boundary layer (the order of climt's example)."""
        state = self.state
        state.update(self.instellation(state))
        self.convection.current_time_step = TIMESTEP
        diagnostics, new_state = self.stepper(state, TIMESTEP)
        state.update(diagnostics)
        diagnostics, surface_state = self.surface(new_state, TIMESTEP)
        new_state.update(diagnostics)
        new_state.update(surface_state)
        state.update(new_state)
        state["time"] = state["time"] + TIMESTEP
        state["eastward_wind"].values[:, 0, :] = self.settings.wind[None]
        self.steps += 1
        if self.steps % round(RADIATION_STEP / TIMESTEP) == 0:
            self.check()

    def check(self) -> None:
        """Stop with a clear error when a column leaves the states the schemes can take
        (RRTMG's absorption tables span 160-355 K and read any state they are given; a
        blown-up column would crash its Fortran rather than say so)."""
        temperature = self.state["air_temperature"].values[:, 0, :]
        humidity = self.state["specific_humidity"].values[:, 0, :]
        bad = ~np.isfinite(temperature).all(0) | (temperature.min(0) < 160.0)
        bad |= (temperature.max(0) > 355.0) | ~np.isfinite(humidity).all(0)
        if bad.any():
            days = self.steps * TIMESTEP / timedelta(days=1)
            raise ColumnBlowUp(np.flatnonzero(bad), days)

    def run_days(self, days: float) -> None:
        for _ in range(round(days * timedelta(days=1) / TIMESTEP)):
            self.step()

    def columns(self) -> xr.Dataset:
        """The present state of every column as RRTMG's inputs (esszoo.physics.radiation)."""
        state = self.state
        zenith = self.instellation(state)["zenith_angle"].values[0, :]
        profile = lambda name: state[name].values[:, 0, :].T  # noqa: E731 (column, vertical)
        values = {
            "ta": profile("air_temperature"),
            "hus": profile("specific_humidity"),
            "o3": profile("mole_fraction_of_ozone_in_air"),
            "pfull": profile("air_pressure"),
            "phalf": profile("air_pressure_on_interface_levels"),
            "ts": state["surface_temperature"].values[0, :],
            "ps": state["surface_air_pressure"].values[0, :],
            "co2": self.settings.co2,
            "albedo": self.settings.albedo,
            "coszen": np.cos(zenith),
        }
        return columns_dataset(values)


def columns_dataset(
    values: dict[str, np.ndarray], leading: tuple[str, ...] = ("column",)
) -> xr.Dataset:
    """A Dataset of RRTMG inputs from arrays shaped leading[ + (vertical,)], with units."""
    dataset = xr.Dataset()
    for name, data in values.items():
        standard_name, units, vertical, long_name = COLUMN_VARIABLES[name]
        dims = (*leading, vertical) if vertical else leading
        dataset[name] = xr.DataArray(
            np.asarray(data, dtype=np.float64),
            dims=dims,
            attrs={"standard_name": standard_name, "units": units, "long_name": long_name},
        )
    return dataset


def saturation_humidity(temperature: np.ndarray, pressure: np.ndarray) -> np.ndarray:
    """Specific humidity at saturation over water (Bolton 1980, `thermo.py`), kg kg-1."""
    return saturation_specific_humidity(
        torch.from_numpy(temperature), torch.from_numpy(np.maximum(pressure, 2000.0))
    ).numpy()
