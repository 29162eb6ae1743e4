"""The one door for data: a built-in data set's name, a NetCDF, Zarr, GRIB or CSV file,
or many NetCDF files given by a glob pattern (``"sst/*.nc"``: combined by coordinates).

Everything is read through xarray (NetCDF 3 and 4, Zarr; GRIB 1 and 2 through cfgrib
and ecCodes; lazily, with dask where the data is large) or, for tables, pandas turned
into xarray, so that the rest of esszoo speaks only of variables, dimensions,
coordinates and units. `_FillValue` and `missing_value` are decoded to NaN by xarray;
NaN is what marks a missing value from here on.

Times are decoded as CF asks, in any calendar (``noleap``, ``360_day``, ... as cftime
dates); a time axis whose reference year is 0, as climatologies often have, is decoded
with a year 0; a time axis that cannot be decoded is refused with its units and
calendar. GRIB forecasts become a time series along their valid time.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from esszoo.data import catalog
from esszoo.data.variables import honour_valid_range
from esszoo.errors import DataError, did_you_mean

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5"}
GRIB_SUFFIXES = {".grib", ".grib1", ".grib2", ".grb", ".grb1", ".grb2"}
CSV_SUFFIXES = {".csv", ".gz", ".bz2", ".zip", ".xz"}


def open_source(source: str | Path) -> xr.Dataset:
    """Open a built-in data set by name, or a file by path, as an xarray.Dataset; values
    outside a variable's CF valid range are missing."""
    return honour_valid_range(_open(source))


def _open(source: str | Path) -> xr.Dataset:
    if str(source) in catalog.CATALOG:
        return catalog.open_builtin(str(source))
    path = Path(source).expanduser()
    if any(c in str(source) for c in "*?[") and not path.exists():
        return _open_many(str(path))
    if not path.exists():
        near = did_you_mean(str(source), catalog.CATALOG)
        raise DataError(
            f"no such file or built-in data set: '{source}'",
            near or "check the path (or see `esszoo data list` for the built-in data sets)",
        )
    if path.suffix == ".zarr" or (path / ".zmetadata").exists() or (path / "zarr.json").exists():
        return _open_zarr(path)
    if path.is_dir():
        raise DataError(f"'{path}' is a folder, not a data file", "give a NetCDF, Zarr or CSV path")
    if path.suffix.lower() in CSV_SUFFIXES and ".csv" in path.name.lower():
        return _open_csv(path)
    if path.suffix.lower() in GRIB_SUFFIXES or _starts_with(path, b"GRIB"):
        return _open_grib(path)
    return _open_netcdf(path)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False


def _open_netcdf(path: Path) -> xr.Dataset:
    unreadable = (OSError, ValueError, RuntimeError, KeyError, IndexError)
    try:
        return xr.open_dataset(path)
    except ValueError as error:
        if "decode time" not in str(error):
            raise _unreadable(path, error) from None
    except unreadable as error:
        raise _unreadable(path, error) from None
    try:  # a time axis xarray would not decode: decode it here, or say what is wrong
        opened = xr.open_dataset(path, decode_times=False)
    except unreadable as error:
        raise _unreadable(path, error) from None
    return decode_times(opened, str(path))


def _unreadable(path: Path, error: Exception) -> DataError:
    return DataError(
        f"cannot read '{path}' as NetCDF ({_reason(error)})",
        "the file may be truncated or of another format; check it with `ncdump -h`",
    )


def decode_times(dataset: xr.Dataset, where: str) -> xr.Dataset:
    """The CF time coordinates of a dataset opened with decode_times=False, as cftime
    dates of their calendar; a reference year of 0 (climatologies) is allowed."""
    import cftime

    for name, variable in dataset.variables.items():
        units = str(variable.attrs.get("units", ""))
        if " since " not in units:
            continue
        calendar = str(variable.attrs.get("calendar", "standard"))
        try:
            with warnings.catch_warnings():  # CF allows year 0 only in some calendars
                warnings.simplefilter("ignore")
                dates = cftime.num2date(
                    np.asarray(variable.values),
                    units,
                    calendar,
                    has_year_zero=True,
                    only_use_cftime_datetimes=True,
                )
        except (ValueError, TypeError, OverflowError) as error:
            raise DataError(
                f"the time axis '{name}' of '{where}' cannot be decoded: units '{units}', "
                f"calendar '{calendar}' ({_reason(error)})",
                "fix its units attribute (e.g. 'days since 2000-01-01 00:00') or calendar",
            ) from None
        attrs = {k: v for k, v in variable.attrs.items() if k not in ("units", "calendar")}
        decoded = xr.Variable(variable.dims, dates, attrs)
        decoded.encoding = {"units": units, "calendar": calendar}
        dataset = (
            dataset.assign_coords({name: decoded})
            if name in dataset.coords
            else (dataset.assign({name: decoded}))
        )
    return dataset


def for_writing(dataset: xr.Dataset) -> xr.Dataset:
    """`dataset` with time coordinates that xarray cannot encode (dates of a year 0, as
    `decode_times` reads them) written back as the numbers and units they were read from."""
    import cftime

    for name, variable in dataset.variables.items():
        values = np.asarray(variable.values)
        first = values.flat[0] if values.dtype == object and values.size else None
        if not getattr(first, "has_year_zero", False):
            continue
        units = variable.encoding.get("units", "days since 0000-01-01 00:00:00")
        calendar = variable.encoding.get("calendar", first.calendar)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            numbers = cftime.date2num(values, units, calendar, has_year_zero=True)
        encoded = xr.Variable(
            variable.dims, numbers, variable.attrs | {"units": units, "calendar": calendar}
        )
        dataset = (
            dataset.assign_coords({name: encoded})
            if name in dataset.coords
            else (dataset.assign({name: encoded}))
        )
    return dataset


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """A library's log records below CRITICAL kept out of the user's terminal."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _open_grib(path: Path) -> xr.Dataset:
    """A GRIB file through cfgrib (no index file is written beside it). A forecast's
    steps, or an analysis' reference times, become the time axis along `valid_time`."""
    import importlib.util

    if importlib.util.find_spec("cfgrib") is None:
        raise DataError(
            f"cannot read GRIB file '{path}': cfgrib is not installed",
            "pip install cfgrib eccodes",
        )
    try:
        with _quiet("cfgrib"):  # it logs a traceback per corrupt message; one line says it
            dataset = xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})
    except (RuntimeError, ImportError) as error:
        if "eccodes" in str(error).lower():
            raise DataError(
                f"cannot read GRIB file '{path}': the ecCodes library is missing "
                f"({_reason(error)})",
                "pip install eccodes (it brings the library), or install libeccodes",
            ) from None
        raise DataError(f"cannot read '{path}' as GRIB ({_reason(error)})") from None
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise DataError(
            f"cannot read '{path}' as GRIB ({_reason(error)})",
            "the file may be truncated; check it with `grib_ls`",
        ) from None
    return _forecast_as_time(dataset, path)


def _forecast_as_time(dataset: xr.Dataset, path: Path) -> xr.Dataset:
    steps = dataset.sizes.get("step", 1)
    times = dataset.sizes.get("time", 1)
    if steps > 1 and times > 1:
        raise DataError(
            f"'{path}' holds {times} forecasts of {steps} steps each",
            "select one step or one forecast first (ds.isel(step=0)), e.g. with cfgrib",
        )
    for dim in ("step", "time"):
        if dataset.sizes.get(dim, 1) > 1 and "valid_time" in dataset.coords:
            return dataset.swap_dims({dim: "valid_time"})
    if "valid_time" in dataset.coords and dataset["valid_time"].ndim == 0:
        return dataset.expand_dims("valid_time") if "time" not in dataset.dims else dataset
    return dataset


def _open_many(pattern: str) -> xr.Dataset:
    """NetCDF files matching `pattern`, opened lazily (dask) and combined by coordinates."""
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DataError(f"no file matches '{pattern}'", "check the folder and the pattern")
    try:
        return xr.open_mfdataset(paths, combine="by_coords")
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as error:
        raise DataError(
            f"cannot combine the {len(paths)} files matching '{pattern}' ({_reason(error)})",
            "the files must share variables and continue one another along a coordinate",
        ) from None


def _reason(error: Exception) -> str:
    """The first line of a reader's error, for a one-line message."""
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def _open_zarr(path: Path) -> xr.Dataset:
    try:
        with warnings.catch_warnings():  # a store without consolidated metadata is fine
            warnings.simplefilter("ignore", RuntimeWarning)
            return xr.open_zarr(path)
    except (OSError, ValueError, KeyError) as error:
        raise DataError(
            f"cannot read '{path}' as a Zarr store ({_reason(error)})",
            "check that the store is complete (it holds zarr.json or .zmetadata)",
        ) from None


def _open_csv(path: Path) -> xr.Dataset:
    """A table: one row a sample, one column a variable; a `time` column becomes the dimension."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read '{path}' as CSV ({str(error)[:160]})") from None
    if "time" in table.columns:
        try:
            table["time"] = pd.to_datetime(table["time"])
        except (ValueError, TypeError) as error:
            raise DataError(
                f"the time column of '{path}' cannot be read as dates ({str(error)[:120]})",
                "write times as ISO 8601, e.g. 2020-01-31T12:00",
            ) from None
        return xr.Dataset.from_dataframe(table.set_index("time"))
    return xr.Dataset.from_dataframe(table.rename_axis("row"))
