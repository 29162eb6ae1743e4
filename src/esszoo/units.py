"""Physical units, parsed and compared as quantities, not as text.

Units are read with pint through cf_xarray's registry, which knows the CF and UDUNITS
spellings (``K``, ``degC``, ``degree_Celsius``, ``kg m-2``, ``kg/m2``, ``W m-2``,
``degrees_north``, ``1``). Spellings of temperature that producers write and no parser
reads (``Deg C``, ``deg_C``, ``degrees C``, ``Celsius``) are put in CF form first. Two
spellings of one unit are the same unit; convertible units (K and degC, mm and m) are
converted, and a run says so; incompatible ones are refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np

from esszoo.errors import DataError

# temperature spellings outside UDUNITS: 'Deg C', 'deg_C', 'degrees C', 'DEG K', 'Celsius'
_TEMPERATURE = re.compile(r"^deg(?:ree)?s?[\s_]*([ckf])$|^(celsius|kelvin|fahrenheit)$", re.I)
_CF_TEMPERATURE = {"c": "degC", "k": "K", "f": "degF"}


@functools.cache
def _registry():  # noqa: ANN202 (pint's registry type)
    import logging

    logging.getLogger("pint.util").setLevel(logging.ERROR)  # cf_xarray redefines pint's units
    from cf_xarray.units import units

    return units


def cf_spelling(text: str) -> str:
    """`text` with producers' temperature spellings put in CF form ('Deg C' -> 'degC')."""
    text = str(text).strip()
    match = _TEMPERATURE.match(text)
    if match is None:
        return text
    return _CF_TEMPERATURE[(match.group(1) or match.group(2))[0].lower()]


@functools.cache
def parse(text: str):  # noqa: ANN201 (a pint Unit)
    """The unit `text` names, or None if it names none that pint or CF knows."""
    try:
        return _registry().parse_units(cf_spelling(text).strip() or "1")
    except Exception:  # pint raises several kinds of error for text it cannot read
        return None


def same(a: str, b: str) -> bool:
    """Whether two spellings name the same unit (text that cannot be parsed must match)."""
    if str(a).strip() == str(b).strip():
        return True
    first, second = parse(a), parse(b)
    if first is None or second is None:
        return False
    return first == second or _factor(first, second) == (1.0, 0.0)


def _factor(source, target) -> tuple[float, float] | None:  # noqa: ANN001
    """(scale, offset) such that target = scale * source + offset, or None."""
    registry = _registry()
    try:
        zero = registry.Quantity(0.0, source).to(target).magnitude
        one = registry.Quantity(1.0, source).to(target).magnitude
    except Exception:  # DimensionalityError, offset units in products, ...
        return None
    return round(float(one - zero), 12), round(float(zero), 12)


def converter(source: str, target: str, variable: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function converting values of `variable` from `source` units to `target` units;
    None where they are the same unit; a DataError where they cannot be converted."""
    if same(source, target):
        return None
    first, second = parse(source), parse(target)
    factor = _factor(first, second) if first is not None and second is not None else None
    if factor is None:
        raise DataError(
            f"variable '{variable}' is in '{source or 'no units'}', which cannot be converted "
            f"to the '{target}' the model was trained on",
            f"give '{variable}' in {target} (or units convertible to it)",
        )
    scale, offset = factor
    return lambda values: values * scale + offset
