"""Nearest-neighbour regridding between any latitude-longitude grids, on the sphere.

Source points may lie on a regular or a curvilinear grid (NEMO's tripolar ORCA, a
stereographic satellite image): each target point takes the value of the source point
nearest to it in great-circle distance (a k-d tree over unit vectors), so longitudes wrap
around the dateline by construction. Points farther than `max_distance_deg` from any
source point get NaN (outside the source's coverage).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    lat, lon = (
        np.radians(np.asarray(lat, dtype=np.float64)),
        np.radians(np.asarray(lon, dtype=np.float64)),
    )
    return np.stack(
        [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1
    ).reshape(-1, 3)


class SphereTree:
    """A k-d tree of source points on the sphere, for nearest-neighbour look-ups."""

    def __init__(self, source_lat: np.ndarray, source_lon: np.ndarray):
        source_lat, source_lon = np.broadcast_arrays(source_lat, source_lon)
        self.shape = source_lat.shape
        source = _unit_vectors(source_lat, source_lon)
        self.finite = np.flatnonzero(np.isfinite(source).all(axis=1))
        self.tree = cKDTree(source[self.finite])

    def nearest(
        self, target_lat: np.ndarray, target_lon: np.ndarray, max_distance_deg: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flat source indices nearest to the targets, and where no source is close enough."""
        chord = 2 * np.sin(np.radians(max_distance_deg) / 2)
        # the bound lets the search give up early on targets far from every source point
        distance, nearest = self.tree.query(
            _unit_vectors(target_lat, target_lon), distance_upper_bound=chord
        )
        outside = ~np.isfinite(distance)
        return self.finite[np.minimum(nearest, len(self.finite) - 1)], outside


class NearestRegridder:
    """Maps fields on the source points to target points (both given by lat, lon arrays)."""

    def __init__(
        self,
        source_lat: np.ndarray,
        source_lon: np.ndarray,
        target_lat: np.ndarray,
        target_lon: np.ndarray,
        max_distance_deg: float = 2.0,
    ):
        tree = SphereTree(source_lat, source_lon)
        self.source_shape = tree.shape
        target_lat, target_lon = np.broadcast_arrays(target_lat, target_lon)
        self.target_shape = target_lat.shape
        self.index, self.outside = tree.nearest(target_lat, target_lon, max_distance_deg)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Regrid `values` (..., *source grid) to (..., *target grid)."""
        values = np.asarray(values)
        leading = values.shape[: values.ndim - len(self.source_shape)]
        out = values.reshape(*leading, -1)[..., self.index].astype(np.float64)
        out[..., self.outside] = np.nan
        return out.reshape(*leading, *self.target_shape)
