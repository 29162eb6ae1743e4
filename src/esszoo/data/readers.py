"""Readers of the built-in data sets' files into xarray, with units and CF attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from esszoo.errors import DataError

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def read_netcdf(paths: list[Path]) -> xr.Dataset:
    """A NetCDF file as it is, floating-point variables in float32 to halve the memory."""
    from esszoo.data.source import open_source

    dataset = open_source(paths[0])
    for name, variable in dataset.data_vars.items():
        if np.issubdtype(variable.dtype, np.floating):
            dataset[name] = variable.astype(np.float32)
    return dataset


def read_mnist_csv(paths: list[Path]) -> xr.Dataset:
    """MNIST rows (784 grey levels then the label) as 32x32 images, padded as in LeNet-5.

    LeCun et al. (1998) centred the 28x28 digits in a 32x32 field so that the strokes'
    end points could reach the centre of the top feature detectors; the padding is
    background (0).
    """
    try:
        table = pd.read_csv(paths[0], header=None).to_numpy()
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read {paths[0]} as MNIST CSV ({error})") from None
    if table.shape[1] != 785:
        raise DataError(f"{paths[0]} has {table.shape[1]} columns, not 784 pixels and a label")
    digits = table[:, :784].reshape(-1, 28, 28).astype(np.float32)
    images = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    labels = table[:, 784].astype(np.int64)
    return xr.Dataset(
        {
            "image": (("sample", "y", "x"), images, {"units": "1", "long_name": "grey level"}),
            "label": (
                "sample",
                labels,
                {
                    "long_name": "digit",
                    "flag_values": np.arange(10),
                    "flag_meanings": " ".join(DIGITS),
                },
            ),
        },
        coords={"sample": np.arange(len(labels))},
    )


def read_ostia(paths: list[Path]) -> xr.Dataset:
    """OSTIA monthly SST with `lat`/`lon` dimension names and only the SST variable."""
    dataset = read_netcdf(paths)
    dataset = dataset.rename({"latitude": "lat", "longitude": "lon"})
    return dataset[["surface_temperature"]].drop_vars(
        ["forecast_reference_time", "forecast_period"], errors="ignore"
    )


def read_nemo(paths: list[Path]) -> xr.Dataset:
    """NEMO monthly files as one (time, y, x) SST in K on the curvilinear grid."""
    months = []
    for path in paths:
        dataset = read_netcdf([path])
        tos = dataset["tos"].isel(time_counter=0, drop=True)
        months.append(tos)
    sst = xr.concat(months, dim="time") + np.float32(273.15)
    sst.attrs = {
        "standard_name": "sea_surface_temperature",
        "units": "K",
        "long_name": "sea surface temperature (NEMO tos, converted from degree_C)",
    }
    times = pd.to_datetime(["2015-01-16", "2015-02-15", "2015-03-16"][: len(paths)])
    coords = {"time": times, "nav_lat": months[0]["nav_lat"], "nav_lon": months[0]["nav_lon"]}
    return xr.Dataset({"tos": sst.drop_vars(["nav_lat", "nav_lon"])}, coords=coords)


def _csv(path: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DataError(f"cannot read {path} as CSV ({error})") from None


def _series(times: pd.DatetimeIndex, variables: dict[str, tuple[np.ndarray, dict]]) -> xr.Dataset:
    return xr.Dataset(
        {
            name: ("time", values.astype(np.float32), attrs)
            for name, (values, attrs) in variables.items()
        },
        coords={"time": ("time", times, {"standard_name": "time", "axis": "T"})},
    )


def read_nino12(paths: list[Path]) -> xr.Dataset:
    """Nino 1+2 SST, a year per row (YEAR, JAN..DEC), as one monthly series."""
    table = _csv(paths[0])
    months = table.columns[1:]
    values = table[months].to_numpy(dtype=float).ravel()
    times = pd.date_range(f"{int(table['YEAR'].iloc[0])}-01-01", periods=len(values), freq="MS")
    attrs = {
        "units": "degC",
        "standard_name": "sea_surface_temperature",
        "long_name": "monthly mean SST of the Nino 1+2 region (0-10S, 90-80W)",
    }
    return _series(times, {"sst": (values, attrs)})


def read_co2(paths: list[Path]) -> xr.Dataset:
    """Weekly Mauna Loa CO2 (date YYYYMMDD, ppm; blank weeks missing)."""
    table = _csv(paths[0])
    times = pd.to_datetime(table["date"].astype(str), format="%Y%m%d")
    attrs = {
        "units": "ppm",
        "standard_name": "mole_fraction_of_carbon_dioxide_in_air",
        "long_name": "weekly mean CO2 at Mauna Loa Observatory",
    }
    return _series(pd.DatetimeIndex(times), {"co2": (table["co2"].to_numpy(float), attrs)})


def read_oni(paths: list[Path]) -> xr.Dataset:
    """Monthly Nino 3.4 SST, its anomaly, and the ONI (its 3-month running mean)."""
    table = _csv(paths[0])
    times = pd.to_datetime({"year": table["YEAR"], "month": table["MON/MMM"], "day": 1})
    degrees = {"units": "degC"}
    return _series(
        pd.DatetimeIndex(times),
        {
            "nino34": (
                table["NINO34_MEAN"].to_numpy(float),
                degrees
                | {
                    "standard_name": "sea_surface_temperature",
                    "long_name": "monthly mean SST of the Nino 3.4 region (5N-5S, 170-120W)",
                },
            ),
            "nino34_anomaly": (
                table["NINO34_ANOM"].to_numpy(float),
                degrees | {"long_name": "Nino 3.4 SST anomaly from its 30-year climatology"},
            ),
            "oni": (
                table["ONI"].to_numpy(float),
                degrees | {"long_name": "Oceanic Nino Index (3-month mean Nino 3.4 anomaly)"},
            ),
        },
    )


def read_soi(paths: list[Path]) -> xr.Dataset:
    """The monthly SOI (Date YYYYMM, a title line above the header)."""
    table = _csv(paths[0], header=1)
    times = pd.to_datetime(table["Date"].astype(str), format="%Y%m")
    attrs = {"units": "1", "long_name": "Southern Oscillation Index (standardized)"}
    return _series(pd.DatetimeIndex(times), {"soi": (table["Value"].to_numpy(float), attrs)})


def read_hadcrut5(paths: list[Path]) -> xr.Dataset:
    """HadCRUT5 global annual anomaly and its 95% confidence limits (time: mid-year)."""
    table = _csv(paths[0])
    times = pd.to_datetime({"year": table["Time"], "month": 7, "day": 1})
    degrees = {"units": "degC"}
    columns = table.columns
    return _series(
        pd.DatetimeIndex(times),
        {
            "tas_anomaly": (
                table[columns[1]].to_numpy(float),
                degrees
                | {
                    "long_name": "global mean near-surface temperature anomaly from 1961-1990",
                },
            ),
            "tas_anomaly_lower": (
                table[columns[2]].to_numpy(float),
                degrees | {"long_name": "lower limit of the 95% confidence interval"},
            ),
            "tas_anomaly_upper": (
                table[columns[3]].to_numpy(float),
                degrees | {"long_name": "upper limit of the 95% confidence interval"},
            ),
        },
    )


RADAR_BOX_KM = 19  # 190 x 228 km in 10 x 12 boxes of 19 x 19 km
RADAR_COVERAGE = 0.9  # the share of a box's pixels with data for its mean to count


def read_radolan_series(paths: list[Path]) -> xr.Dataset:
    """RADOLAN 5-minute rainfall as 120 rain-rate series: box means over 19 x 19 km.

    A catchment-sized box is the scale a hydrologist forecasts rain for, and its mean is
    a smoother, more forecastable series than one pixel's. The mean is over the box's
    pixels with data in that frame, and missing (NaN) where fewer than 90% have data
    (boxes at the edge of the radar coverage are missing throughout). Each 5-minute sum
    (kg m-2, i.e. mm) becomes a rate in mm per hour. Dimensions (time, y, x): y and x
    are the box centres in km from the subset's first row and column (the file's own
    latitudes and longitudes, 57-58.5N 1-4E, are not where the radar is, and are left out).
    """
    radar = read_netcdf(paths)
    amount = radar["rainfall_amount"]
    box = {"y": RADAR_BOX_KM, "x": RADAR_BOX_KM}
    valid = amount.notnull().coarsen(box, boundary="trim").mean()
    total = amount.fillna(0).coarsen(box, boundary="trim").sum()
    rate = (total / (valid * RADAR_BOX_KM**2)).where(valid >= RADAR_COVERAGE) * 12.0
    centres = {d: RADAR_BOX_KM * np.arange(rate.sizes[d]) + RADAR_BOX_KM // 2 for d in box}
    km = {"units": "km", "long_name": "box centre from the subset's corner"}
    rate = rate.assign_coords({d: (d, centres[d], km | {"axis": d.upper()}) for d in box})
    rate = rate.drop_vars(["latitudes", "longitudes"], errors="ignore")
    rate.attrs = {
        "units": "mm h-1",
        "standard_name": "rainfall_rate",
        "long_name": f"rain rate, mean over {RADAR_BOX_KM} x {RADAR_BOX_KM} km",
    }
    dataset = rate.astype(np.float32).to_dataset(name="rain_rate")
    dataset.attrs["title"] = "DWD RADOLAN YW rain rate, 19 km box means, 5-minute"
    return dataset
