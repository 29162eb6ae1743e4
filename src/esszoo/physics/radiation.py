"""RRTMG radiation through climt: the expensive column physics that emulators replace.

The scheme
----------
RRTMG (Mlawer et al. 1997, J. Geophys. Res. 102, 16663-16682, doi:10.1029/97JD00237;
Iacono et al. 2008, J. Geophys. Res. 113, D13103, doi:10.1029/2008JD009944) is the
correlated-k radiative transfer of WRF, CESM and the ECMWF model before ecRad: 16
longwave bands with 140 g-points and 14 shortwave bands with 112, two-stream fluxes
through every layer. climt (Monteiro et al. 2018, Geosci. Model Dev. 11, 3781-3794,
doi:10.5194/gmd-11-3781-2018) ships the original Fortran compiled in its wheel; esszoo
calls it through climt's `RRTMGLongwave` and `RRTMGShortwave` components and rewrites
none of it.

Columns
-------
A set of columns is an `xarray.Dataset` with a `column` dimension and the vertical
dimensions `level` (layer mid-points) and `interface` (layer edges, one more), both
counted from the surface up, as climt counts them:

    ta     air_temperature                       K          (column, level)
    hus    specific_humidity                     kg kg-1    (column, level)
    o3     mole_fraction_of_ozone_in_air         mol mol-1  (column, level)
    pfull  air_pressure                          Pa         (column, level)
    phalf  air_pressure at layer interfaces      Pa         (column, interface)
    ts     surface_temperature                   K          (column)
    co2    mole_fraction_of_carbon_dioxide_in_air  mol mol-1  (column)
    albedo surface_albedo (shortwave only)       1          (column)
    coszen cosine_of_solar_zenith_angle (shortwave only)  1  (column)

Units that convert (hPa, degC, ppmv, g kg-1) are converted; anything else, a missing
variable, profiles given top-down or a surface below the top of the column is refused
with one line that says how to fix it. Skies are clear and aerosol-free (climt's
defaults: no cloud scheme runs in the column models whose states esszoo learns from);
the surface emits as a black body; the other gases (CH4, N2O, O2, CFCs) keep climt's
present-day defaults; the top-of-atmosphere irradiance is climt's 1367 W m-2 times the
cosine of the zenith angle, with no Earth-Sun distance correction.

Outputs, per column: heating rates on levels (K day-1) and the fluxes that close the
column's energy budget, at the surface and at the top of the atmosphere (W m-2), named
as CMIP names them (tntrl, rlds, rlus, rlut; tntrs, rsdt, rsut, rsds, rsus), plus the
upward and downward flux profiles on interfaces (rlu, rld; rsu, rsd).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from esszoo.errors import DataError
from esszoo.units import converter

# name -> (CF standard name, units, vertical dimension or None, long name)
COLUMN_VARIABLES = {
    "ta": ("air_temperature", "K", "level", "air temperature"),
    "hus": ("specific_humidity", "kg kg-1", "level", "specific humidity"),
    "o3": ("mole_fraction_of_ozone_in_air", "mol mol-1", "level", "ozone mole fraction"),
    "pfull": ("air_pressure", "Pa", "level", "pressure at layer mid-points"),
    "phalf": ("air_pressure", "Pa", "interface", "pressure at layer interfaces"),
    "ts": ("surface_temperature", "K", None, "surface (skin) temperature"),
    "ps": ("surface_air_pressure", "Pa", None, "surface air pressure"),
    "co2": (
        "mole_fraction_of_carbon_dioxide_in_air",
        "mol mol-1",
        None,
        "carbon dioxide mole fraction",
    ),
    "albedo": ("surface_albedo", "1", None, "surface albedo (direct and diffuse, all bands)"),
    "coszen": ("cosine_of_solar_zenith_angle", "1", None, "cosine of the solar zenith angle"),
}

# name -> (CF standard name, units, vertical dimension or None, long name)
OUTPUT_VARIABLES = {
    "tntrl": (
        "tendency_of_air_temperature_due_to_longwave_heating",
        "K day-1",
        "level",
        "longwave heating rate",
    ),
    "rlds": ("surface_downwelling_longwave_flux_in_air", "W m-2", None, "surface downwelling LW"),
    "rlus": ("surface_upwelling_longwave_flux_in_air", "W m-2", None, "surface upwelling LW"),
    "rlut": ("toa_outgoing_longwave_flux", "W m-2", None, "outgoing longwave at the top"),
    "rlu": ("upwelling_longwave_flux_in_air", "W m-2", "interface", "upwelling LW"),
    "rld": ("downwelling_longwave_flux_in_air", "W m-2", "interface", "downwelling LW"),
    "tntrs": (
        "tendency_of_air_temperature_due_to_shortwave_heating",
        "K day-1",
        "level",
        "shortwave heating rate",
    ),
    "rsdt": ("toa_incoming_shortwave_flux", "W m-2", None, "incoming shortwave at the top"),
    "rsut": ("toa_outgoing_shortwave_flux", "W m-2", None, "outgoing shortwave at the top"),
    "rsds": ("surface_downwelling_shortwave_flux_in_air", "W m-2", None, "surface down SW"),
    "rsus": ("surface_upwelling_shortwave_flux_in_air", "W m-2", None, "surface up SW"),
    "rsu": ("upwelling_shortwave_flux_in_air", "W m-2", "interface", "upwelling SW"),
    "rsd": ("downwelling_shortwave_flux_in_air", "W m-2", "interface", "downwelling SW"),
}

# The flux budget of the column: net energy into the atmosphere, as signed sums of fluxes.
NET_FLUX_INTO_ATMOSPHERE = {
    "longwave": {"rlut": -1.0, "rlds": -1.0, "rlus": 1.0},
    "shortwave": {"rsdt": 1.0, "rsut": -1.0, "rsds": -1.0, "rsus": 1.0},
}
# The heating rate each budget closes.
HEATING = {"longwave": "tntrl", "shortwave": "tntrs"}

CHUNK = 1024  # columns per call of the Fortran (climt allocates its state per call)


@dataclass(frozen=True)
class Band:
    """One half of RRTMG: the inputs it reads and the outputs it writes."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    climt_outputs: dict[str, tuple[str, str]]  # esszoo name -> (climt name, where)


LONGWAVE = Band(
    "longwave",
    ("ta", "hus", "o3", "pfull", "phalf", "ts", "co2"),
    ("tntrl", "rlds", "rlus", "rlut", "rlu", "rld"),
    {
        "tntrl": ("air_temperature_tendency_from_longwave", "levels"),
        "rlu": ("upwelling_longwave_flux_in_air", "interfaces"),
        "rld": ("downwelling_longwave_flux_in_air", "interfaces"),
    },
)
SHORTWAVE = Band(
    "shortwave",
    ("ta", "hus", "o3", "pfull", "phalf", "ts", "co2", "albedo", "coszen"),
    ("tntrs", "rsdt", "rsut", "rsds", "rsus", "rsu", "rsd"),
    {
        "tntrs": ("air_temperature_tendency_from_shortwave", "levels"),
        "rsu": ("upwelling_shortwave_flux_in_air", "interfaces"),
        "rsd": ("downwelling_shortwave_flux_in_air", "interfaces"),
    },
)


def rrtmg_longwave(columns: xr.Dataset) -> xr.Dataset:
    """Clear-sky RRTMG longwave heating rates and fluxes of `columns` (see the module)."""
    return _run(LONGWAVE, columns)


def rrtmg_shortwave(columns: xr.Dataset) -> xr.Dataset:
    """Clear-sky RRTMG shortwave heating rates and fluxes of `columns` (see the module)."""
    return _run(SHORTWAVE, columns)


def check_columns(columns: xr.Dataset, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The variables `names` of `columns` as float64 arrays (column[, level]) in the units
    of COLUMN_VARIABLES, after the checks that make RRTMG's answer mean something."""
    values = {}
    for name in names:
        standard_name, units, vertical, long_name = COLUMN_VARIABLES[name]
        if name not in columns:
            present = ", ".join(map(str, columns.data_vars)) or "none"
            raise DataError(
                f"the columns have no '{name}' ({long_name}, {units}); they hold: {present}",
                f"add '{name}' with dims ('column'{', ' + repr(vertical) if vertical else ''})",
            )
        array = columns[name]
        expected = ("column", vertical) if vertical else ("column",)
        if set(array.dims) != set(expected):
            raise DataError(
                f"'{name}' has dims {tuple(array.dims)}, not {expected}",
                "give every profile as (column, level) or (column, interface), scalars as "
                "(column,)",
            )
        found = str(array.attrs.get("units", ""))
        try:
            convert = converter(found, units, name)
        except DataError:
            raise DataError(
                f"'{name}' is in '{found or 'no units'}', which cannot be converted to {units}",
                f"give '{name}' ({long_name}) in {units}, or units that convert to it",
            ) from None
        data = array.transpose(*expected).values.astype(np.float64)
        values[name] = convert(data) if convert else data
        if not np.isfinite(values[name]).all():
            raise DataError(
                f"'{name}' holds NaN or infinite values",
                "RRTMG needs complete columns: drop or fill them first",
            )
    _check_vertical(values)
    _check_ranges(values)
    return values


def _check_vertical(values: dict[str, np.ndarray]) -> None:
    pfull, phalf = values["pfull"], values["phalf"]
    if phalf.shape[1] != pfull.shape[1] + 1:
        raise DataError(
            f"'phalf' has {phalf.shape[1]} interfaces for {pfull.shape[1]} levels",
            "a column of N layers has N + 1 interfaces",
        )
    if (pfull[:, 0] < pfull[:, -1]).any():
        raise DataError(
            "the profiles are upside down: pressure increases with the level index",
            "give level 0 at the surface (reverse with columns.isel(level=slice(None, None, "
            "-1), interface=slice(None, None, -1)))",
        )
    if (phalf[:, 0] < pfull[:, 0]).any():
        column = int(np.argmax(phalf[:, 0] < pfull[:, 0]))
        raise DataError(
            f"in column {column} the surface pressure (phalf at interface 0, "
            f"{phalf[column, 0]:.0f} Pa) is below the lowest level's {pfull[column, 0]:.0f} Pa",
            "give phalf[0] = the surface pressure, above every level's pressure",
        )
    inside = (phalf[:, :-1] >= pfull) & (pfull >= phalf[:, 1:])
    if not inside.all():
        column = int(np.argwhere(~inside)[0, 0])
        raise DataError(
            f"in column {column} a mid-level pressure lies outside its layer's interfaces",
            "give phalf[0] = surface pressure >= pfull[0] >= phalf[1] >= ... >= phalf[top]",
        )


_RANGES = {  # physically possible values, in the units of COLUMN_VARIABLES
    "ta": (100.0, 400.0),
    "ts": (150.0, 400.0),
    "hus": (0.0, 0.1),
    "o3": (0.0, 1e-4),
    "co2": (0.0, 0.05),
    "albedo": (0.0, 1.0),
    "coszen": (-1.0, 1.0),
    "pfull": (0.0, 1.2e5),
    "phalf": (0.0, 1.2e5),
}


def _check_ranges(values: dict[str, np.ndarray]) -> None:
    for name, data in values.items():
        low, high = _RANGES[name]
        if data.min() < low or data.max() > high:
            units = COLUMN_VARIABLES[name][1]
            raise DataError(
                f"'{name}' spans {data.min():.4g} to {data.max():.4g} {units}, outside the "
                f"possible {low:g} to {high:g}",
                f"check its units (esszoo reads the 'units' attribute; '{name}' is expected "
                f"in {units})",
            )


@functools.cache
def _component(band: str):  # noqa: ANN202 (a climt component)
    import climt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if band == "longwave":
            return climt.RRTMGLongwave()
        return climt.RRTMGShortwave(ignore_day_of_year=True)


def _climt_state(component, values: dict[str, np.ndarray]) -> dict:  # noqa: ANN001
    """A climt state for these columns: climt's defaults, then the columns' values."""
    import climt

    count, levels = values["pfull"].shape
    grid = climt.get_grid(nx=count, ny=1, nz=levels)
    state = climt.get_default_state([component], grid_state=grid)

    def put(name: str, data: np.ndarray) -> None:  # (column[, vertical]) -> climt's dims
        if data.ndim == 2:
            state[name].values[:, 0, :] = data.T  # (vertical, lat=1, lon=column)
        else:
            state[name].values[0, :] = data  # (lat=1, lon=column)

    put("air_temperature", values["ta"])
    put("specific_humidity", values["hus"])
    put("mole_fraction_of_ozone_in_air", values["o3"])
    put("air_pressure", values["pfull"])
    put("air_pressure_on_interface_levels", values["phalf"])
    put("surface_air_pressure", values["phalf"][:, 0])
    put("surface_temperature", values["ts"])
    put("mole_fraction_of_carbon_dioxide_in_air", np.repeat(values["co2"][:, None], levels, 1))
    if "coszen" in values:
        state["zenith_angle"].values[0, :] = np.arccos(np.clip(values["coszen"], -1.0, 1.0))
        for name in (
            "surface_albedo_for_direct_shortwave",
            "surface_albedo_for_direct_near_infrared",
            "surface_albedo_for_diffuse_shortwave",
            "surface_albedo_for_diffuse_near_infrared",
        ):
            state[name].values[0, :] = values["albedo"]
    return state


def _run(band: Band, columns: xr.Dataset) -> xr.Dataset:
    values = check_columns(columns, band.inputs)
    count = values["pfull"].shape[0]
    pieces = [
        _run_chunk(band, {k: v[start : start + CHUNK] for k, v in values.items()})
        for start in range(0, count, CHUNK)
    ]
    outputs = {name: np.concatenate([p[name] for p in pieces]) for name in band.outputs}
    return _as_dataset(outputs, columns)


def _run_chunk(band: Band, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    component = _component(band.name)
    state = _climt_state(component, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, diagnostics = component(state)
    out = {}
    for name, (climt_name, _) in band.climt_outputs.items():
        out[name] = np.ascontiguousarray(diagnostics[climt_name].values[:, 0, :].T)
    if band.name == "longwave":
        out |= {"rlds": out["rld"][:, 0], "rlus": out["rlu"][:, 0], "rlut": out["rlu"][:, -1]}
    else:
        out |= {
            "rsdt": out["rsd"][:, -1],
            "rsut": out["rsu"][:, -1],
            "rsds": out["rsd"][:, 0],
            "rsus": out["rsu"][:, 0],
        }
    return out


def _as_dataset(outputs: dict[str, np.ndarray], columns: xr.Dataset) -> xr.Dataset:
    result = xr.Dataset(
        coords={
            k: v
            for k, v in columns.coords.items()
            if set(v.dims) <= {"column", "level", "interface"}
        }
    )
    for name, data in outputs.items():
        standard_name, units, vertical, long_name = OUTPUT_VARIABLES[name]
        dims = ("column", vertical) if vertical else ("column",)
        result[name] = xr.DataArray(
            data.astype(np.float32),
            dims=dims,
            attrs={
                "standard_name": standard_name,
                "units": units,
                "long_name": long_name,
                "comment": "clear-sky RRTMG (climt)",
            },
        )
    return result


def column_energy_residual(
    heating: np.ndarray, phalf: np.ndarray, net_flux_in: np.ndarray
) -> np.ndarray:
    """Column-integrated heating minus the net flux into the atmosphere (W m-2), per column:
    sum_k c_p / g * dT/dt_k * (p_k - p_k+1) against the fluxes' budget. `heating` in
    K day-1 (column, level), `phalf` in Pa (column, interface), `net_flux_in` in W m-2."""
    from esszoo.physics.thermo import CP_DRY, GRAVITY

    layer_mass = (phalf[:, :-1] - phalf[:, 1:]) / GRAVITY  # kg m-2
    absorbed = (CP_DRY * layer_mass * heating / 86400.0).sum(axis=1)
    return absorbed - net_flux_in


def net_flux_into_atmosphere(band: str, fluxes: Callable[[str], np.ndarray]) -> np.ndarray:
    """The budget of NET_FLUX_INTO_ATMOSPHERE[band] from `fluxes(name)` (W m-2)."""
    return sum(sign * fluxes(name) for name, sign in NET_FLUX_INTO_ATMOSPHERE[band].items())


def energy_budgets() -> dict[str, dict[str, float]]:
    """The budgets by CF standard names, to find them in any data: the heating rate's
    standard name -> {flux standard name: its sign in the net flux into the atmosphere}."""
    standard = {name: spec[0] for name, spec in OUTPUT_VARIABLES.items()}
    return {
        standard[HEATING[band]]: {standard[name]: sign for name, sign in budget.items()}
        for band, budget in NET_FLUX_INTO_ATMOSPHERE.items()
    }
