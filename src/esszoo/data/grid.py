"""The grid of fields, kept with the model so that new data are read on the same points.

A network learns a field point by point in the order it saw the points: the same file
with its latitudes flipped, its longitudes rolled or given in -180..180 instead of
0..360 would feed it other neighbours and give a silently wrong answer. `Grid` records
the training grid (its dimensions, their coordinates in training order, the latitude and
longitude of every point); `Grid.align` finds the same points in new data, in whatever
order and longitude range they come, reorders the data to the training order and says
how to put the results back in the data's own order. A grid that is not a reordering of
the training grid is refused in one line that names the difference, or interpolated to
it when asked (`regrid=True`).

The coordinates travel as tensors in the checkpoint's safetensors file (`tensors`), the
description of the grid (names, roles, sizes) in its JSON (`describe`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from esszoo.data.coords import LOOKED_FOR, horizontal
from esszoo.errors import DataError

EARTH_RADIUS_KM = 6371.0  # the mean radius of the Earth
ROLES = ("latitude", "longitude")
# Two coordinates name the same point within a tenth of the grid spacing: files written in
# float32 differ by 1e-5 degrees after a change of longitude range, and packed
# coordinates by their packing (RADOLAN's latitudes are kept to 0.01 degrees); a grid
# shifted by a fraction of a cell is another grid. Latitudes and longitudes of grids
# without 1-D coordinates are the same points while each is nearer its counterpart than
# any neighbour (within 0.4 of the spacing of neighbouring points).
SAME_POINT = 0.1
SAME_NEIGHBOUR = 0.4


@dataclass
class Grid:
    """Grid dimensions (the order the model sees them), the 1-D coordinate of each that
    has one, and the latitude and longitude of every point (H, W) where they are known."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # dim -> latitude / longitude
    latitude: np.ndarray | None = None
    longitude: np.ndarray | None = None
    names: dict[str, str] = field(default_factory=dict)  # role -> the coordinate's name

    # -- reading a field's grid --------------------------------------------------------------

    @classmethod
    def of(cls, array: xr.DataArray, dims: tuple[str, ...]) -> Grid:
        """The grid of `array` along its grid dimensions `dims`."""
        coords = {
            d: np.asarray(array[d].values)
            for d in dims
            if d in array.coords and array[d].ndim == 1 and _numeric(array[d].values)
        }
        grid = cls(dims=tuple(dims), shape=tuple(array.sizes[d] for d in dims), coords=coords)
        for role in ROLES:
            points = grid._points(array, list(dims), role)
            if points is None:
                continue
            coord = horizontal(array, role)
            grid.names[role] = str(coord.name)
            if coord.ndim == 1 and coord.dims[0] in coords:
                grid.roles[str(coord.dims[0])] = role
            setattr(grid, role, points)
        return grid

    @property
    def lat_axis(self) -> np.ndarray | None:
        """Latitudes along the grid's second-last dimension, for a regular grid."""
        lat = self.latitude
        if lat is None or not np.allclose(lat, lat[:, :1]):
            return None
        return lat[:, 0]

    @property
    def lon_axis(self) -> np.ndarray | None:
        lon = self.longitude
        if lon is None or not np.allclose(lon, lon[:1, :]):
            return None
        return lon[0]

    @property
    def wraps(self) -> bool:
        """Whether the columns go once round the globe, so that the last neighbours the
        first: a regular longitude axis of n points spaced 360 / n degrees."""
        lon = self.lon_axis
        if lon is None or len(lon) < 2:
            return False
        steps = np.diff(lon) % 360.0  # a rolled axis (..., 359, 0, 1, ...) steps alike
        spacing = float(np.median(steps))
        regular = np.allclose(steps, spacing, rtol=1e-3)
        return bool(regular and abs(spacing * len(lon) - 360.0) < 0.5 * spacing)

    def area_weights(self) -> np.ndarray | None:
        """cos(latitude) of every point (H, W), or None where no latitude is known."""
        return None if self.latitude is None else np.cos(np.radians(self.latitude))

    def spacing_km(self) -> float | None:
        """The mean distance between neighbouring points, in km (great circles between
        their latitudes and longitudes, along both grid directions), or None where unknown."""
        if self.latitude is None or self.longitude is None or min(self.latitude.shape) < 2:
            return None
        lat, lon = np.radians(self.latitude), np.radians(self.longitude)
        along_x = _great_circle(lat[:, :-1], lon[:, :-1], lat[:, 1:], lon[:, 1:])
        along_y = _great_circle(lat[:-1], lon[:-1], lat[1:], lon[1:])
        return float((np.nanmean(along_x) + np.nanmean(along_y)) / 2)

    def missing_latitude(self, variable: str) -> str | None:
        """The note a run writes when its points cannot be weighted by area."""
        if self.latitude is not None:
            return None
        return (
            f"no latitude found for '{variable}' (looked for {LOOKED_FOR['latitude']}): every "
            "point counts alike in the loss and the scores, not by its area"
        )

    # -- the checkpoint ----------------------------------------------------------------------

    def describe(self) -> dict:
        """What model.json says of the grid (the values are tensors, see `tensors`)."""
        return {
            "dims": list(self.dims),
            "shape": list(self.shape),
            "coords": sorted(self.coords),
            "roles": dict(self.roles),
            "names": dict(self.names),
            "area_weights": "cos(latitude)" if self.latitude is not None else "none: no latitude",
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The grid's values for the safetensors file (float64)."""
        found = {
            f"grid.{d}": torch.from_numpy(np.asarray(v, np.float64)) for d, v in self.coords.items()
        }
        for role in ROLES:
            values = getattr(self, role)
            if values is not None and role not in self.roles.values():  # curvilinear
                found[f"grid.{role}"] = torch.from_numpy(values)
        return found

    @classmethod
    def from_checkpoint(cls, described: dict, tensors: dict[str, torch.Tensor]) -> Grid:
        coords = {d: tensors[f"grid.{d}"].numpy() for d in described.get("coords", [])}
        grid = cls(
            dims=tuple(described["dims"]),
            shape=tuple(described["shape"]),
            coords=coords,
            roles=dict(described.get("roles", {})),
            names=dict(described.get("names", {})),
        )
        height, width = grid.shape[-2:]
        for role in ROLES:
            if f"grid.{role}" in tensors:
                setattr(grid, role, tensors[f"grid.{role}"].numpy())
            elif role in grid.roles.values():
                dim = next(d for d, r in grid.roles.items() if r == role)
                axis = grid.dims.index(dim) - len(grid.dims)
                values = coords[dim].reshape((-1, 1) if axis == -2 else (1, -1))
                setattr(grid, role, np.broadcast_to(values, (height, width)).astype(np.float64))
        return grid

    # -- new data on this grid ---------------------------------------------------------------

    def align(
        self, array: xr.DataArray, *, regrid: bool = False
    ) -> tuple[xr.DataArray, Callable[[xr.Dataset], xr.Dataset]]:
        """`array` with its grid in the training order (other dimensions first, as they
        were), and a function that puts a Dataset on that grid back in the data's order."""
        dims, given = self._dims_in(array), array.dims
        array = array.transpose(*[d for d in array.dims if d not in dims], *dims)
        orders: dict[str, np.ndarray] = {}
        for own, theirs in zip(self.dims, dims, strict=True):
            if own in self.coords and theirs in array.coords:
                periodic = self.roles.get(own) == "longitude"
                order = _matching(self.coords[own], np.asarray(array[theirs].values), periodic)
            else:
                size = self.shape[self.dims.index(own)]
                order = np.arange(size) if array.sizes[theirs] == size else None
            if order is None:
                if regrid:
                    return self._regridded(array, dims), lambda dataset: dataset
                raise self._differs(array, own, theirs)
            orders[theirs] = order
        array = array.isel(orders)
        for dim, flip in self._flips(array, dims).items():
            array = array.isel({dim: flip})
            orders[dim] = orders[dim][flip]
        back = {
            dim: np.argsort(order)
            for dim, order in orders.items()
            if not np.array_equal(order, np.arange(len(order)))
        }

        order = [d for d in given if d in dims]  # the data's own order of its grid

        def restore(dataset: xr.Dataset) -> xr.Dataset:
            dataset = dataset.isel({d: i for d, i in back.items() if d in dataset.dims})
            for name, variable in dataset.data_vars.items():
                places = [i for i, d in enumerate(variable.dims) if d in order]
                mine = [d for d in order if d in variable.dims]
                arranged = list(variable.dims)
                for place, dim in zip(places, mine, strict=True):
                    arranged[place] = dim
                dataset[name] = variable.transpose(*arranged)
            return dataset

        return array, restore

    def _dims_in(self, array: xr.DataArray) -> list[str]:
        """The data's dimensions that play the part of each training grid dimension: the
        same role (the dimension of its latitude or longitude), else the same name."""
        found = []
        for own in self.dims:
            role = self.roles.get(own)
            coord = horizontal(array, role) if role else None
            if coord is not None and coord.ndim == 1:
                found.append(str(coord.dims[0]))
            elif own in array.dims:
                found.append(own)
            else:
                raise DataError(
                    f"the model was trained on fields with dimensions {self.dims}, and "
                    f"'{array.name}' has {tuple(array.dims)}",
                    f"give fields with a '{own}' dimension"
                    + (f" (or one with the CF attributes of {role})" if role else ""),
                )
        return found

    def _points(self, array: xr.DataArray, dims: list[str], role: str) -> np.ndarray | None:
        """The data's latitudes or longitudes of every point (H, W), in its grid's order."""
        coord = horizontal(array, role)
        if coord is None:
            return None
        plane = array.isel({d: 0 for d in array.dims if d not in dims[-2:]})
        values = coord.broadcast_like(plane).transpose(*dims[-2:])
        return np.asarray(values.values, dtype=np.float64)

    def _flips(self, array: xr.DataArray, dims: list[str]) -> dict[str, np.ndarray]:
        """Where the last two grid dimensions have no coordinates to reorder by, the
        points must still be the training points: compare latitudes and longitudes, and
        find the flip of those dimensions (if any) that makes them so."""
        pairs = [(getattr(self, r), self._points(array, dims, r), r) for r in ROLES]
        pairs = [
            (own, theirs, r) for own, theirs, r in pairs if own is not None and theirs is not None
        ]
        if not pairs:
            return {}
        free = [
            (axis, theirs)
            for axis, (own, theirs) in enumerate(zip(self.dims[-2:], dims[-2:], strict=True))
            if own not in self.coords or theirs not in array.coords
        ]
        for count in range(len(free) + 1):
            for flipped in itertools.combinations(free, count):
                axes = tuple(axis for axis, _ in flipped)
                if all(
                    _close(own, np.flip(theirs, axes) if axes else theirs, role == "longitude")
                    for own, theirs, role in pairs
                ):
                    return {dim: np.arange(array.sizes[dim])[::-1] for _, dim in flipped}
        raise DataError(
            f"the latitudes and longitudes of '{array.name}' are not those of the points the "
            "model was trained on",
            "give data on the model's grid (in any order of its points)",
        )

    def _differs(self, array: xr.DataArray, own: str, theirs: str) -> DataError:
        values = array[theirs].values if theirs in array.coords else None
        return DataError(
            f"the data's grid differs from the model's: '{theirs}' of '{array.name}' has "
            f"{_span(values, array.sizes[theirs])}, the model was trained on '{own}' with "
            f"{_span(self.coords.get(own), self.shape[self.dims.index(own)])}",
            "give data on the model's grid (in any order or longitude range), or pass --regrid "
            "to interpolate to it",
        )

    def _regridded(self, array: xr.DataArray, dims: list[str]) -> xr.DataArray:
        """`array` interpolated (linearly) to the training coordinates; longitudes are
        matched modulo 360 and wrapped so that the interpolation crosses the dateline."""
        if not all(
            own in self.coords and theirs in array.coords
            for own, theirs in zip(self.dims, dims, strict=True)
        ):
            raise DataError(
                f"cannot regrid '{array.name}': its grid or the model's has no 1-D coordinates",
                "regrid the data to the model's grid first (e.g. with xESMF)",
            )
        targets = {}
        for own, theirs in zip(self.dims, dims, strict=True):
            values = self.coords[own]
            if self.roles.get(own) == "longitude":
                array = _wrapped(array, theirs, values)
            targets[theirs] = values
        return array.sortby(list(targets)).interp(targets)


def _numeric(values: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(values).dtype, np.number)


def _canonical(values: np.ndarray, periodic: bool) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.round(values % 360.0, 6) % 360.0 if periodic else values


def _close(a: np.ndarray, b: np.ndarray, periodic: bool) -> bool:
    """Whether two (H, W) fields of latitudes (or longitudes) name the same points."""
    difference = np.abs(_canonical(a, periodic) - _canonical(b, periodic))
    if periodic:
        difference = np.minimum(difference, 360.0 - difference)
    # the step between neighbours along the direction the coordinate changes most
    steps = [np.abs(np.diff(a, axis=axis)) for axis in (0, 1) if a.shape[axis] > 1]
    spacing = max((float(np.nanmedian(step)) for step in steps), default=1.0) or 1.0
    return bool(np.nanmax(difference, initial=0.0) <= SAME_NEIGHBOUR * spacing)


def _matching(own: np.ndarray, theirs: np.ndarray, periodic: bool) -> np.ndarray | None:
    """Indices into `theirs` that give `own` (the same values within a thousandth of the
    spacing, longitudes modulo 360), or None if `theirs` is not a reordering of `own`."""
    if len(own) != len(theirs) or not _numeric(theirs):
        return None
    a, b = _canonical(own, periodic), _canonical(theirs, periodic)
    steps = np.diff(np.unique(a))
    tolerance = SAME_POINT * steps.min() if len(steps) else 1e-6 * (1 + abs(a[0]))
    order = np.argsort(b, kind="stable")
    position = np.clip(np.searchsorted(b[order], a), 0, len(b) - 1)
    candidates = [order[position], order[np.clip(position - 1, 0, len(b) - 1)], order[0], order[-1]]
    best = candidates[0]
    for candidate in candidates[1:]:
        worse = np.abs(_distance(b[best], a, periodic)) > np.abs(
            _distance(b[candidate], a, periodic)
        )
        best = np.where(worse, candidate, best)
    if np.abs(_distance(b[best], a, periodic)).max() > tolerance or len(set(best)) != len(best):
        return None
    return best


def _distance(a: np.ndarray, b: np.ndarray, periodic: bool) -> np.ndarray:
    difference = a - b
    return (difference + 180.0) % 360.0 - 180.0 if periodic else difference


def _wrapped(array: xr.DataArray, dim: str, target: np.ndarray) -> xr.DataArray:
    """Longitudes moved into the target's range, with one column repeated on each side."""
    start = float(np.min(target))
    lon = (np.asarray(array[dim].values, dtype=np.float64) - start) % 360.0 + start
    array = array.assign_coords({dim: lon}).sortby(dim)
    first, last = array.isel({dim: [0]}), array.isel({dim: [-1]})
    first = first.assign_coords({dim: first[dim].values + 360.0})
    last = last.assign_coords({dim: last[dim].values - 360.0})
    return xr.concat([last, array, first], dim=dim)


def _span(values: np.ndarray | None, size: int) -> str:
    if values is None or not len(values) or not _numeric(values):
        return f"{size} points"
    return f"{size} points from {float(values[0]):g} to {float(values[-1]):g}"


def _great_circle(lat1, lon1, lat2, lon2) -> np.ndarray:  # noqa: ANN001 (arrays, radians)
    """Great-circle distances in km between points given in radians (haversine)."""
    half = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(half))
