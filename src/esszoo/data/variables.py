"""Variables as users name them, carried with their units."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import xarray as xr

from esszoo.errors import DataError, did_you_mean


@dataclass(frozen=True)
class Variable:
    """A named variable with its units, CF standard name, and physical bounds (CF
    valid_min and valid_max, or a recipe's `data.bounds`) where it has them."""

    name: str
    units: str = ""
    standard_name: str = ""
    long_name: str = ""
    valid_min: float | None = None
    valid_max: float | None = None
    # a profile (`esszoo.data.columns`): its vertical dimension and how many levels it has
    vertical: str | None = None
    levels: int | None = None

    def to_dict(self) -> dict[str, str | float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, str | float]) -> Variable:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def of(cls, array: xr.DataArray) -> Variable:
        low, high = valid_range(array.attrs)
        return cls(
            name=str(array.name),
            units=str(array.attrs.get("units", "")),
            standard_name=str(array.attrs.get("standard_name", "")),
            long_name=str(array.attrs.get("long_name", "")),
            valid_min=low,
            valid_max=high,
        )

    def attrs(self) -> dict[str, str | float]:
        skip = ("name", "vertical", "levels")
        return {k: v for k, v in self.to_dict().items() if v not in ("", None) and k not in skip}

    @property
    def bounded(self) -> bool:
        return self.valid_min is not None or self.valid_max is not None


def valid_range(attrs: dict) -> tuple[float | None, float | None]:
    """A variable's CF valid range: `valid_range`, else `valid_min` and `valid_max`."""
    if "valid_range" in attrs and np.size(attrs["valid_range"]) == 2:
        low, high = np.asarray(attrs["valid_range"], dtype=np.float64).tolist()
        return float(low), float(high)
    low, high = attrs.get("valid_min"), attrs.get("valid_max")
    return (
        None if low is None else float(np.asarray(low, dtype=np.float64)),
        None if high is None else float(np.asarray(high, dtype=np.float64)),
    )


def honour_valid_range(dataset: xr.Dataset) -> xr.Dataset:
    """Values outside a variable's CF valid range are missing, as CF says (lazily)."""
    for name, variable in dataset.data_vars.items():
        low, high = valid_range(variable.attrs)
        if (low is None and high is None) or variable.dtype.kind not in "fiu":
            continue
        inside = xr.ones_like(variable, dtype=bool)
        if low is not None:
            inside &= variable >= low
        if high is not None:
            inside &= variable <= high
        dataset[name] = variable.where(inside | variable.isnull()).assign_attrs(variable.attrs)
    return dataset


def select_variables(dataset: xr.Dataset, names: list[str], where: str) -> list[xr.DataArray]:
    """The data variables called `names`, which must share one set of dimensions."""
    if not names:
        raise DataError(f"no variables given for {where}")
    arrays = []
    for name in names:
        if name not in dataset.data_vars:
            available = ", ".join(sorted(map(str, dataset.data_vars))) or "none"
            hint = did_you_mean(name, map(str, dataset.data_vars))
            raise DataError(
                f"variable '{name}' ({where}) is not in the data",
                hint or f"the data hold: {available}",
            )
        arrays.append(dataset[name])
    first = arrays[0]
    for array in arrays[1:]:
        if set(array.dims) != set(first.dims):
            raise DataError(
                f"variable '{array.name}' has dimensions {tuple(array.dims)} but "
                f"'{first.name}' has {tuple(first.dims)}",
                "use variables on the same grid, or select or regrid them first",
            )
    return [array.transpose(*first.dims) for array in arrays]


def available_memory() -> int | None:
    """Bytes of memory available to this process (Linux: MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def load_values(array: xr.DataArray, part: bool = False, dtype: type = np.float64) -> np.ndarray:
    """The values of `array` as float64 (or `dtype`), NaN where missing; a clear error if
    unusable.

    `part`: `array` is a block of a variable read piece by piece (a block may be empty of
    valid values, as a radar outage is); check the whole with `require_values`."""
    if array.dtype.kind not in "biuf":  # text would convert silently where it looks numeric
        raise DataError(
            f"variable '{array.name}' holds {array.dtype} values, not numbers",
            "choose numeric variables",
        )
    needed, available = array.size * 8, available_memory()
    if available is not None and needed > available / 2:
        raise DataError(
            f"variable '{array.name}' {dict(array.sizes)} needs {needed / 2**30:.1f} GiB in "
            f"memory, more than half the {available / 2**30:.1f} GiB available",
            "select a smaller region or period (or coarsen) before training, or leave it on "
            "disk (translation: data.stream: true)",
        )
    try:
        with np.errstate(over="ignore"):  # overflows into a narrower type: refused below
            values = np.asarray(array.values, dtype=dtype)
    except (OSError, RuntimeError, ValueError) as error:
        raise DataError(
            f"cannot read the values of '{array.name}' ({str(error)[:160]})",
            "the file may be truncated or corrupt",
        ) from None
    except TypeError:
        raise DataError(
            f"variable '{array.name}' holds {array.dtype} values, not numbers",
            "choose numeric variables",
        ) from None
    if values.dtype.itemsize < array.dtype.itemsize and np.isinf(values).any():
        refuse_overflow(array, values)
    return values if part else require_values(array, values)


def refuse_overflow(array: xr.DataArray, values: np.ndarray) -> None:
    """Values finite in the file but beyond the range of `values`' narrower type would turn
    into infinities, read as missing: refused rather than silently dropped."""
    overflowed = np.isinf(values) & np.isfinite(np.asarray(array.values))
    if overflowed.any():
        largest = np.abs(np.asarray(array.values)[overflowed]).max()
        raise DataError(
            f"variable '{array.name}' holds values up to {largest:.3g}, beyond the "
            f"{values.dtype} range (+-{np.finfo(values.dtype).max:.3g}) the network takes",
            "rescale the variable (or mask such fill values as missing) before predicting",
        )


def require_values(array: xr.DataArray, values: np.ndarray) -> np.ndarray:
    """`values` of the whole variable `array`, refused if empty or without a valid value."""
    if values.size == 0:
        raise DataError(f"variable '{array.name}' is empty: dimensions {dict(array.sizes)}")
    if not np.isfinite(values).any():
        raise DataError(
            f"variable '{array.name}' has no valid value (all NaN or fill value)",
            "check the variable, or choose another one",
        )
    return values
