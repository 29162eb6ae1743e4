"""Hand-written reference physics that the models of the zoo learn to emulate, and the
cheap physics that hybrids correct.

Each function maps physical inputs (SI units, torch tensors) to physical outputs and is
registered here by name, with the variables it reads and writes, so that recipes can ask
for it (``data.physics: mixed_column_precipitation``, ``task.residual_of:
grey_longwave``). An input is a scalar per sample, tensor (batch,), or a profile,
(batch, levels), when it names its vertical dimension; a function of one output returns
a tensor, one of several a tuple of them in the order of `outputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from esszoo.errors import RecipeError, choices_hint
from esszoo.physics.condensation import (
    cheap_mixed_column_precipitation,
    mixed_column_precipitation,
)
from esszoo.physics.grey_radiation import grey_longwave


@dataclass(frozen=True)
class PhysicsFunction:
    """A hand-written function with the variables it maps from and to."""

    name: str
    function: Callable[..., torch.Tensor]
    # (CF standard name, units[, vertical dimension of a profile]), in call order
    inputs: tuple[tuple[str, ...], ...]
    outputs: tuple[tuple[str, str, str], ...]  # (variable name, CF standard name, units)
    summary: str
    short: str  # a label for tables


FUNCTIONS = {
    f.name: f
    for f in (
        PhysicsFunction(
            "mixed_column_precipitation",
            mixed_column_precipitation,
            (
                ("air_temperature", "K"),
                ("surface_air_pressure", "Pa"),
                ("specific_humidity", "kg kg-1"),
            ),
            (("pr", "precipitation_amount", "kg m-2"),),
            "large-scale condensation of a well-mixed column: 40 layers over the lowest "
            "200 hPa, Newton iteration to 1e-6 K",
            "reference",
        ),
        PhysicsFunction(
            "cheap_mixed_column_precipitation",
            cheap_mixed_column_precipitation,
            (
                ("air_temperature", "K"),
                ("surface_air_pressure", "Pa"),
                ("specific_humidity", "kg kg-1"),
            ),
            (("pr", "precipitation_amount", "kg m-2"),),
            "the same scheme with 4 layers and one Newton step",
            "cheap (4 layers, 1 Newton step)",
        ),
        PhysicsFunction(
            "grey_longwave",
            grey_longwave,
            (
                ("air_temperature", "K", "level"),
                ("air_pressure", "Pa", "interface"),
                ("surface_temperature", "K"),
            ),
            (
                ("tntrl", "tendency_of_air_temperature_due_to_longwave_heating", "K day-1"),
                ("rlds", "surface_downwelling_longwave_flux_in_air", "W m-2"),
                ("rlus", "surface_upwelling_longwave_flux_in_air", "W m-2"),
                ("rlut", "toa_outgoing_longwave_flux", "W m-2"),
            ),
            "grey longwave radiation (Frierson et al. 2006, climt's GrayLongwaveRadiation): "
            "one band, optical depth fixed by pressure",
            "grey longwave",
        ),
    )
}


def physics_function(name: str) -> PhysicsFunction:
    """The registered physics function called `name`."""
    if name not in FUNCTIONS:
        raise RecipeError(f"unknown physics function '{name}'", choices_hint(name, FUNCTIONS))
    return FUNCTIONS[name]


__all__ = [
    "FUNCTIONS",
    "PhysicsFunction",
    "cheap_mixed_column_precipitation",
    "grey_longwave",
    "mixed_column_precipitation",
    "physics_function",
]
