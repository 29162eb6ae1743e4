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
