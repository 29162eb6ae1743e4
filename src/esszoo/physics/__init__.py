"""Hand-written reference physics that the models of the zoo learn to emulate.

Each function maps physical inputs (SI units, torch tensors) to a physical output and is
registered here by name, with the variables it reads and writes, so that recipes can ask
for it (``target: {physics: mixed_column_precipitation}``).
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


@dataclass(frozen=True)
class PhysicsFunction:
    """A hand-written function with the variables it maps from and to."""

    name: str
    function: Callable[..., torch.Tensor]
    inputs: tuple[tuple[str, str], ...]  # (CF standard name, units), in call order
    output: tuple[str, str, str]  # (variable name, CF standard name, units)
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
            ("pr", "precipitation_amount", "kg m-2"),
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
            ("pr", "precipitation_amount", "kg m-2"),
            "the same scheme with 4 layers and one Newton step",
            "cheap (4 layers, 1 Newton step)",
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
    "mixed_column_precipitation",
    "physics_function",
]
