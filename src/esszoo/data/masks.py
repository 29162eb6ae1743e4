"""Gap patterns cut from real fields, to hide parts of complete fields whose truth is known.

To score a reconstruction, its truth must be known under the holes; so holes are placed on
fields that are complete, with the shapes real missing data take (Kadow et al. 2020 laid
the missing-data masks of HadCRUT4 observations over complete model fields). Two real
sources are built in, each moved to random latitudes and longitudes so that every draw is
a different real shape:

- ``coast``: land as NEMO's global ocean grid sees it, taken from another latitude band:
  what in-situ and satellite SST records lack along coasts and islands.
- ``cloud``: cold cloud tops (10.8 um brightness temperature below 265 K) in the MSG SEVIRI
  image: what infrared SST retrievals lack under clouds. The satellite sees about 150
  degrees of longitude, so these gaps fall in one sector of a global band, as a
  geostationary satellite's would.

`gap_patterns` returns boolean masks, True where a value is hidden.
"""

from __future__ import annotations

import functools

import numpy as np

from esszoo.data.regrid import SphereTree
from esszoo.errors import RecipeError, choices_hint

COLD_CLOUD = 265.0  # K, brightness temperature below which a cloud top hides the surface
SOURCES = ("coast", "cloud")


RASTER = 0.5  # degrees: sources are looked up on a regular raster made once, for speed


class Raster:
    """A boolean field resampled once (nearest neighbour) to a global regular grid, so that
    each gap pattern is a look-up by index rather than a search."""

    def __init__(self, values: np.ndarray, lat: np.ndarray, lon: np.ndarray):
        self.lat = np.arange(-90 + RASTER / 2, 90, RASTER)
        self.lon = np.arange(RASTER / 2, 360, RASTER)
        grid_lat, grid_lon = np.meshgrid(self.lat, self.lon, indexing="ij")
        index, outside = SphereTree(lat, lon).nearest(grid_lat, grid_lon, max_distance_deg=1.5)
        self.values = (values.reshape(-1)[index] & ~outside).reshape(grid_lat.shape)

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        row = np.clip(((lat + 90) / RASTER).astype(int), 0, len(self.lat) - 1)
        column = ((lon % 360) / RASTER).astype(int) % len(self.lon)
        return self.values[row, column]


@functools.cache
def _coast_source() -> Raster:
    from esszoo.data.catalog import open_builtin

    nemo = open_builtin("nemo")
    land = np.isnan(nemo["tos"].isel(time=0).values)
    return Raster(land, nemo["nav_lat"].values, nemo["nav_lon"].values)


@functools.cache
def _cloud_source() -> Raster:
    from esszoo.data.catalog import open_builtin

    image = open_builtin("seviri")
    brightness = image["data"].values
    cloud = np.nan_to_num(brightness, nan=np.inf) < COLD_CLOUD
    return Raster(cloud, image["lat"].values, image["lon"].values)


def gap_patterns(
    lat: np.ndarray,
    lon: np.ndarray,
    count: int,
    *,
    sources: tuple[str, ...] = SOURCES,
    seed: int = 0,
) -> np.ndarray:
    """`count` gap masks, True where hidden, from real fields: of the grid whose points
    have latitudes `lat` and longitudes `lon` (H, W), or of the regular grid of 1-D
    `lat` and `lon` (count, len(lat), len(lon))."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise RecipeError(f"unknown gap source '{unknown[0]}'", choices_hint(unknown[0], SOURCES))
    rng = np.random.default_rng(seed)
    target_lat, target_lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if target_lat.ndim == 1:
        target_lat, target_lon = np.meshgrid(target_lat, target_lon, indexing="ij")
    centre = float(np.mean(lat))
    gaps = np.zeros((count, *target_lat.shape), dtype=bool)
    builders = {"coast": (_coast_source, (-60.0, 60.0)), "cloud": (_cloud_source, (30.0, 65.0))}
    for source in sources:
        load, (lowest, highest) = builders[source]
        raster = load()
        for k in range(count):
            band = rng.uniform(lowest, highest)
            shift = rng.uniform(0.0, 360.0)
            gaps[k] |= raster(target_lat - centre + band, target_lon + shift)
    return gaps
