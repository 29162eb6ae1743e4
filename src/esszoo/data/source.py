"""The one door for data: a built-in data set's name, a NetCDF, Zarr or CSV file, or many
NetCDF files given by a glob pattern (``"sst/*.nc"``: combined by their coordinates).

Everything is read through xarray (NetCDF 3 and 4, Zarr; lazily, with dask where the data
is large) or, for tables, pandas turned into xarray, so that the rest of esszoo speaks
only of variables, dimensions, coordinates and units. `_FillValue` and `missing_value`
are decoded to NaN by xarray; NaN is what marks a missing value from here on.
"""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import pandas as pd
import xarray as xr

from esszoo.data import catalog
from esszoo.errors import DataError, did_you_mean

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5"}
CSV_SUFFIXES = {".csv", ".gz", ".bz2", ".zip", ".xz"}


def open_source(source: str | Path) -> xr.Dataset:
    """Open a built-in data set by name, or a file by path, as an xarray.Dataset."""
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
    return _open_netcdf(path)


def _open_netcdf(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path)
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as error:
        raise DataError(
            f"cannot read '{path}' as NetCDF ({_reason(error)})",
            "the file may be truncated or of another format; check it with `ncdump -h`",
        ) from None


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
