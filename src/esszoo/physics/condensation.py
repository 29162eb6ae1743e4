"""Large-scale condensation in a well-mixed column: the function the first emulator learns.

The scheme
----------
Large-scale condensation (Manabe, Smagorinsky & Strickler 1965, Mon. Wea. Rev. 93, 769-798,
doi:10.1175/1520-0493(1965)093<0769:SCOAGC>2.3.CO;2) removes any supersaturation of a grid
box by condensation, releases its latent heat, and lets the condensate fall out as
precipitation. The new temperature and humidity are found by an isobaric saturation
adjustment, iterated with Newton's method as in the `satad` routine of the COSMO and ICON
models (Doms et al. 2011, COSMO documentation part II, section 5.1):

    find T*  with  f(T*) = T* - T - L/c_p (q - q_s(T*, p)) = 0,
    T*_{n+1} = T*_n - f(T*_n) / (1 + L/c_p dq_s/dT(T*_n)),   then  q* = q_s(T*, p).

The column: from the surface state (T_s, p_s, q_s) the air is taken to be well mixed over
the lowest `depth` = 200 hPa (about 2 km), as in a deep convective boundary layer; dry
hours then stay unsaturated and give no precipitation. Each of `levels` layers of
equal pressure thickness holds the surface air lifted dry-adiabatically to the layer's
mid-point pressure p_k, i.e. T_k = T_s (p_k / p_s)^kappa and q_k = q_s. Each layer that
is supersaturated is adjusted, and the column's precipitation is the condensate summed
over the layers' masses:

    P = sum_k (q_k - q*_k) dp / g        [kg m-2, i.e. mm of water]

Saturation vapour pressure and latent heat follow Bolton (1980), see `thermo.py`.

Cost: `levels` layers times a Newton iteration per layer, until every column has
converged to `tolerance` (typically 3 to 5 iterations): the shape of cost of a real
column parameterization. With few levels and one Newton step the same code becomes the
cheap approximation that a hybrid model corrects.
"""

from __future__ import annotations

import torch

from esszoo.physics.thermo import (
    CP_DRY,
    GRAVITY,
    KAPPA,
    latent_heat_vaporization,
    saturation_specific_humidity,
    saturation_specific_humidity_slope,
)

COLUMN_DEPTH = 20_000.0  # Pa; the mixed column is the lowest 200 hPa above the surface


def saturation_adjustment(
    temperature: torch.Tensor,
    humidity: torch.Tensor,
    pressure: torch.Tensor,
    *,
    tolerance: float | None = 1.0e-6,
    max_iterations: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Isobaric saturation adjustment (Newton's method); returns (T*, q*).

    Only supersaturated points change. With ``tolerance=None`` exactly ``max_iterations``
    Newton steps are taken, which keeps the function traceable for export.
    """
    saturated = humidity > saturation_specific_humidity(temperature, pressure)
    heat_per_humidity = latent_heat_vaporization(temperature) / CP_DRY  # L/c_p, K per kg kg-1
    adjusted = temperature
    for _ in range(max_iterations):
        excess = humidity - saturation_specific_humidity(adjusted, pressure)
        residual = adjusted - temperature - heat_per_humidity * excess
        slope = 1.0 + heat_per_humidity * saturation_specific_humidity_slope(adjusted, pressure)
        step = residual / slope
        adjusted = adjusted - step
        if tolerance is not None and bool((step.abs() * saturated).max() < tolerance):
            break
    new_temperature = torch.where(saturated, adjusted, temperature)
    new_humidity = torch.where(
        saturated, saturation_specific_humidity(adjusted, pressure), humidity
    )
    return new_temperature, new_humidity


def mixed_column_precipitation(
    temperature: torch.Tensor,
    pressure: torch.Tensor,
    humidity: torch.Tensor,
    *,
    levels: int = 40,
    depth: float = COLUMN_DEPTH,
    tolerance: float | None = 1.0e-6,
    max_iterations: int = 20,
) -> torch.Tensor:
    """Precipitation (kg m-2) of large-scale condensation in a column well mixed from the surface.

    Arguments are the surface air temperature (K), surface pressure (Pa) and specific
    humidity (kg kg-1), tensors of one shape; the result has that shape and is >= 0.
    """
    thickness = depth / levels  # Pa, dp of each layer
    fraction = (torch.arange(levels, dtype=temperature.dtype) + 0.5) / levels
    # columns (...,) -> layers (..., levels)
    layer_pressure = pressure.unsqueeze(-1) - fraction * depth
    layer_temperature = (
        temperature.unsqueeze(-1) * (layer_pressure / pressure.unsqueeze(-1)) ** KAPPA
    )
    layer_humidity = humidity.unsqueeze(-1).expand_as(layer_temperature)
    _, adjusted_humidity = saturation_adjustment(
        layer_temperature,
        layer_humidity,
        layer_pressure,
        tolerance=tolerance,
        max_iterations=max_iterations,
    )
    condensate = (layer_humidity - adjusted_humidity).clamp(min=0.0)  # kg kg-1
    return condensate.sum(-1) * thickness / GRAVITY


def cheap_mixed_column_precipitation(
    temperature: torch.Tensor, pressure: torch.Tensor, humidity: torch.Tensor
) -> torch.Tensor:
    """The cheap approximation: 4 layers and a single Newton step."""
    return mixed_column_precipitation(
        temperature, pressure, humidity, levels=4, tolerance=None, max_iterations=1
    )
