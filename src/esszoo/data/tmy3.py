"""Reader of NREL's TMY3 hourly weather files into one xarray.Dataset (time x station).

A TMY3 file is a typical meteorological year: twelve real months, each taken from the
year that was most typical for it, stitched into 8760 hours. Its first line describes the
station (id, name, state, UTC offset, latitude, longitude, elevation); the second names
the columns. Hours are stamped 01:00 to 24:00 local standard time, at the end of the hour.

The `time` coordinate is the position of the hour in the typical year, written in the
nominal year 2001 (not a leap year); `source_year` gives the real year each hour was
observed in. Values marked missing (-9900) become NaN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from esszoo.errors import DataError
from esszoo.physics.thermo import T_ZERO, dewpoint_to_specific_humidity

NOMINAL_YEAR = 2001
MISSING = -9900

# TMY3 column -> (variable, CF standard name, units, conversion to those units)
_COLUMNS = {
    "Dry-bulb (C)": ("tas", "air_temperature", "K", lambda v: v + T_ZERO),
    "Dew-point (C)": ("tdps", "dew_point_temperature", "K", lambda v: v + T_ZERO),
    "Pressure (mbar)": ("ps", "surface_air_pressure", "Pa", lambda v: v * 100.0),
    "RHum (%)": ("hurs", "relative_humidity", "%", lambda v: v),
    "GHI (W/m^2)": ("rsds", "surface_downwelling_shortwave_flux_in_air", "W m-2", lambda v: v),
    "Wspd (m/s)": ("sfcWind", "wind_speed", "m s-1", lambda v: v),
    "TotCld (tenths)": ("clt", "cloud_area_fraction", "%", lambda v: v * 10.0),
    "Lprecip depth (mm)": ("prl", "lwe_thickness_of_precipitation_amount", "mm", lambda v: v),
}


def read_tmy3(paths: list[Path]) -> xr.Dataset:
    """Read TMY3 CSV files (one station each) into a Dataset with dims (time, station)."""
    stations = [_read_station(Path(path)) for path in paths]
    dataset = xr.concat(
        stations, dim="station", join="exact", coords="different", compat="equals"
    ).transpose("time", "station")
    dataset["huss"] = _specific_humidity(dataset)
    dataset.attrs["title"] = "TMY3 typical meteorological year, hourly"
    return dataset


def _read_station(path: Path) -> xr.Dataset:
    try:
        header = pd.read_csv(path, nrows=1, header=None).iloc[0]
        table = pd.read_csv(path, skiprows=1)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read {path} as a TMY3 file ({error})") from None
    missing = [column for column in _COLUMNS if column not in table.columns]
    if missing or len(header) < 7:
        raise DataError(f"{path} is not a TMY3 file: no column(s) {missing or 'header'}")
    dates = pd.to_datetime(table["Date (MM/DD/YYYY)"], format="%m/%d/%Y")
    hours = table["Time (HH:MM)"].str.slice(0, 2).astype(int)
    nominal = pd.to_datetime(
        {"year": NOMINAL_YEAR, "month": dates.dt.month, "day": dates.dt.day}
    ) + pd.to_timedelta(hours, unit="h")
    variables = {}
    for column, (name, standard_name, units, convert) in _COLUMNS.items():
        values = table[column].to_numpy(dtype=np.float64)
        values = np.where(values <= MISSING, np.nan, convert(values))
        attrs = {"standard_name": standard_name, "units": units, "tmy3_column": column}
        variables[name] = ("time", values, attrs)
    station_id, name, state, utc_offset, lat, lon, elevation = list(header)[:7]
    coords = {
        "time": ("time", nominal.to_numpy(), {"long_name": "hour of the typical year"}),
        "source_year": ("time", dates.dt.year.to_numpy()),
        "station": str(station_id),
        "station_name": f"{name}, {state}",
        "lat": ((), float(lat), {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ((), float(lon), {"units": "degrees_east", "standard_name": "longitude"}),
        "elevation": ((), float(elevation), {"units": "m"}),
        "utc_offset": ((), float(utc_offset), {"units": "h"}),
    }
    return xr.Dataset(variables, coords=coords)


def _specific_humidity(dataset: xr.Dataset) -> xr.DataArray:
    """Specific humidity from dew point and pressure (Bolton 1980, via esszoo.physics)."""
    dewpoint = torch.from_numpy(dataset["tdps"].values)
    pressure = torch.from_numpy(dataset["ps"].values)
    humidity = dewpoint_to_specific_humidity(dewpoint, pressure).numpy()
    attrs = {
        "standard_name": "specific_humidity",
        "units": "kg kg-1",
        "comment": "derived from dew point and pressure with Bolton (1980) eq. 10",
    }
    return xr.DataArray(humidity, dims=dataset["tdps"].dims, attrs=attrs)
