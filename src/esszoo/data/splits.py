"""Train, validation and test splits that are contiguous in time.

Earth data are autocorrelated: neighbouring hours or days are nearly copies of each other.
A shuffle of samples across splits would put near-copies of test samples into training
and flatter every score. esszoo therefore cuts the time axis into three contiguous blocks,
in order: training first, then validation, then test (the most recent data), either by
fractions of the length or by date ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from esszoo.data.coords import is_time
from esszoo.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Index ranges of the three splits along the split dimension.

    ``order`` is None for blocks contiguous in time; for samples that are not a series
    (e.g. images of digits) it is the seeded permutation the blocks are cut from.
    """

    dim: str
    ranges: dict[str, tuple[int, int]]  # name -> [start, stop) in `order`
    labels: dict[str, tuple[str, str]]  # name -> first and last coordinate value, as text
    order: np.ndarray | None = None

    def indices(self, name: str) -> slice | np.ndarray:
        """Positions along `dim` of split `name`: a slice, or sorted indices if shuffled."""
        start, stop = self.ranges[name]
        if self.order is None:
            return slice(start, stop)
        return np.sort(self.order[start:stop])

    def to_dict(self) -> dict:
        return {
            "dim": self.dim,
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "labels": {k: list(v) for k, v in self.labels.items()},
            "shuffled": self.order is not None,
        }


def contiguous_split(
    coordinate: np.ndarray,
    dim: str,
    train: float | Sequence[str],
    val: float | Sequence[str],
    test: float | Sequence[str],
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> Split:
    """Cut `coordinate` (the values along `dim`) into contiguous train/val/test blocks.

    Each of `train`, `val`, `test` is a fraction of the length or a [first, last] pair of
    dates (inclusive). Blocks must be in time order and must not overlap. ``shuffle``
    permutes the samples first (seeded), for samples that are not a series; it is refused
    along a time coordinate.
    """
    length = len(coordinate)
    if length == 0:
        raise DataError(f"dimension '{dim}' has length 0", "the data hold no samples to split")
    specs = {"train": train, "val": val, "test": test}
    if shuffle:
        return _shuffled(coordinate, dim, specs, seed)
    if all(isinstance(v, int | float) for v in specs.values()):
        ranges = _by_fraction(specs, length, dim)
    elif all(isinstance(v, list | tuple) for v in specs.values()):
        ranges = _by_dates(specs, coordinate, dim)
    else:
        raise DataError(
            "split: give train, val and test all as fractions or all as [first, last] dates"
        )
    labels = {
        name: (_label(coordinate[start]), _label(coordinate[stop - 1]))
        for name, (start, stop) in ranges.items()
    }
    return Split(dim=dim, ranges=ranges, labels=labels)


def _shuffled(coordinate: np.ndarray, dim: str, specs: dict, seed: int) -> Split:
    if is_time(coordinate):
        raise DataError(
            f"split.shuffle along the time coordinate '{dim}' would put near-copies of test "
            "samples into training",
            "keep splits contiguous in time (shuffle: false)",
        )
    if not all(isinstance(v, int | float) for v in specs.values()):
        raise DataError("a shuffled split takes fractions, not dates")
    ranges = _by_fraction(specs, len(coordinate), dim)
    order = np.random.default_rng(seed).permutation(len(coordinate))
    labels = {name: (f"{b - a} samples", "shuffled") for name, (a, b) in ranges.items()}
    return Split(dim=dim, ranges=ranges, labels=labels, order=order)


def _by_fraction(specs: dict, length: int, dim: str) -> dict[str, tuple[int, int]]:
    fractions = [float(specs[name]) for name in SPLITS]
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(
            f"split fractions {fractions} must be positive and sum to 1",
            "e.g. split: {train: 0.7, val: 0.15, test: 0.15}",
        )
    stops = np.round(np.cumsum(fractions) * length).astype(int)
    starts = np.concatenate([[0], stops[:-1]])
    ranges = {name: (int(a), int(b)) for name, a, b in zip(SPLITS, starts, stops, strict=True)}
    for name, (start, stop) in ranges.items():
        if stop <= start:
            raise DataError(
                f"the {name} split is empty: '{dim}' has only {length} values",
                "use more data or larger fractions",
            )
    return ranges


def _by_dates(specs: dict, coordinate: np.ndarray, dim: str) -> dict[str, tuple[int, int]]:
    if not is_time(coordinate):
        raise DataError(
            f"split by dates needs a time coordinate, but '{dim}' holds {coordinate.dtype}",
            "give the split as fractions instead",
        )
    # dates of any calendar: numpy datetimes, or cftime dates (noleap, 360_day, ...)
    times = (
        xr.CFTimeIndex(coordinate) if coordinate.dtype == object else pd.DatetimeIndex(coordinate)
    )
    ranges = {}
    previous_stop = 0
    for name in SPLITS:
        first, last = (str(t) for t in specs[name])
        try:
            span = times.slice_indexer(first, last)
        except (KeyError, ValueError, TypeError) as error:
            raise DataError(
                f"split.{name} [{first}, {last}] cannot be read as dates of '{dim}' ({error})",
                "write dates as ISO 8601, e.g. 2018-05-10 or 2018-05-10T23:55",
            ) from None
        start, stop = int(span.start or 0), int(len(times) if span.stop is None else span.stop)
        if stop <= start:
            raise DataError(f"the {name} split {first} to {last} holds no '{dim}' values")
        if start < previous_stop:
            raise DataError(
                f"the {name} split starts before the previous split ends",
                "splits must be in time order (train, val, test) and must not overlap",
            )
        ranges[name] = (start, stop)
        previous_stop = stop
    return ranges


def _label(value: object) -> str:
    if isinstance(value, np.datetime64):
        return str(pd.Timestamp(value))
    return str(value)  # cftime dates print as ISO 8601 too
