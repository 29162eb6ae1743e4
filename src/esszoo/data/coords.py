"""Coordinates found as the CF conventions find them, through cf_xarray.

Time, latitude and longitude are looked up by their CF attributes first (`standard_name`,
`units` such as ``degrees_north`` or ``days since ...``, `axis`, `_CoordinateAxisType`),
then by the names common producers give them (cf_xarray's `guess_coord_axis`: ``lat``,
``latitude``, ``nav_lat``, ``TIME``, ``t``, ...), and a time axis also by its values'
type (dates). The user's names are kept: nothing is renamed, so outputs carry the names
the input had.
"""

from __future__ import annotations

import warnings

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import xarray as xr

from esszoo.errors import DataError

LOOKED_FOR = {
    "time": "CF standard_name time, axis T, dates, or a name such as time or TIME",
    "latitude": "CF standard_name latitude, units degrees_north, axis Y, or a name such as lat",
    "longitude": "CF standard_name longitude, units degrees_east, axis X, or a name such as lon",
}


_FOUND: dict[tuple, dict[str, list[str]]] = {}  # the names found, by coordinates' signature


def _signature(obj: xr.Dataset | xr.DataArray) -> tuple:
    """What a CF lookup reads of the coordinates: names, dimensions, types, attributes."""
    return tuple(
        (
            name,
            coord.dims,
            str(coord.dtype),
            _first_type(coord) if coord.dtype == object and coord.size else "",
            repr(sorted(coord.attrs.items())),
        )
        for name, coord in obj.coords.items()
    )


def _first_type(coord: xr.DataArray) -> str:
    """The type of a coordinate's first value (objects: cftime dates, or anything else)."""
    return type(coord.isel({dim: 0 for dim in coord.dims}).values.item()).__name__


def _found(obj: xr.Dataset | xr.DataArray) -> dict[str, list[str]]:
    """The coordinates of `obj` that are time, latitude and longitude, by CF attributes or,
    for those without, by the names common producers give them.

    Only the coordinates are looked at: with the data variables, cf_xarray formats the
    whole of an array whose `grid_mapping` names a variable that is not there (OSTIA's,
    once selected) into an error it then drops, several times a lookup: a second per
    call on a stack of global fields. And a lookup is made once per set of coordinates
    (cf_xarray's takes tens of milliseconds; a prediction asks several times)."""
    signature = _signature(obj)
    if signature not in _FOUND:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            guessed = obj.coords.to_dataset().cf.guess_coord_axis()
        coordinates, axes = guessed.cf.coordinates, guessed.cf.axes
        if len(_FOUND) > 64:
            _FOUND.clear()
        _FOUND[signature] = {
            key: [*coordinates.get(key, []), *axes.get(axis, [])]
            for key, axis in (("time", "T"), ("latitude", "Y"), ("longitude", "X"))
        }
    return _FOUND[signature]


def _candidates(obj: xr.Dataset | xr.DataArray, key: str) -> list[str]:
    return [name for name in dict.fromkeys(_found(obj)[key]) if name in obj.coords]


def is_time(values: np.ndarray) -> bool:
    """Whether values are dates (numpy datetimes or cftime dates of any calendar)."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.datetime64):
        return True
    return values.dtype == object and values.size > 0 and hasattr(values.flat[0], "calendar")


def time_dim(obj: xr.Dataset | xr.DataArray) -> str | None:
    """The dimension along which time runs, or None."""
    for name in _candidates(obj, "time"):
        coord = obj[name]
        if coord.ndim == 1 and coord.dims[0] in obj.dims:
            return str(coord.dims[0])
    for dim in obj.dims:
        if dim in obj.coords and obj[dim].ndim == 1 and is_time(obj[dim].values):
            return str(dim)
    return None


def require_time_dim(dataset: xr.Dataset) -> str:
    dim = time_dim(dataset)
    if dim is None:
        raise DataError(
            f"no time axis in the data (looked for {LOOKED_FOR['time']}); dimensions "
            f"{dict(dataset.sizes)}",
            "name the dimension to split along in data.split.dim",
        )
    return dim


def horizontal(array: xr.DataArray, key: str) -> xr.DataArray | None:
    """The latitude or longitude of a field's points (`key`: latitude or longitude): a
    coordinate along the field's grid dimensions, 1-D or 2-D (curvilinear), or None."""
    for name in _candidates(array, key):
        coord = array[name]
        if 1 <= coord.ndim <= 2 and set(coord.dims) <= set(array.dims):
            return coord
    return None
