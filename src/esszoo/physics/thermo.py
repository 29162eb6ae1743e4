"""Moist thermodynamics, written as model physics is written, with the formulas cited.

Bolton, D. (1980). The computation of equivalent potential temperature. Monthly Weather
Review 108, 1046-1053, doi:10.1175/1520-0493(1980)108<1046:TCOEPT>2.0.CO;2.

All functions take torch tensors in SI units (K, Pa, kg kg-1) and broadcast.
"""

from __future__ import annotations

import torch

R_DRY = 287.04  # J kg-1 K-1, gas constant of dry air
R_VAPOUR = 461.50  # J kg-1 K-1, gas constant of water vapour
EPSILON = R_DRY / R_VAPOUR  # ratio of the molar masses of water and dry air, 0.622
CP_DRY = 1004.64  # J kg-1 K-1, specific heat of dry air at constant pressure
KAPPA = R_DRY / CP_DRY  # Poisson's exponent, 0.2857
GRAVITY = 9.80665  # m s-2
T_ZERO = 273.15  # K


def saturation_vapour_pressure(temperature: torch.Tensor) -> torch.Tensor:
    """Saturation vapour pressure over water in Pa (Bolton 1980, eq. 10).

    e_s = 6.112 hPa * exp(17.67 T_c / (T_c + 243.5)), within 0.1% for -30 C <= T_c <= 35 C.
    """
    celsius = temperature - T_ZERO
    return 611.2 * torch.exp(17.67 * celsius / (celsius + 243.5))


def saturation_vapour_pressure_slope(temperature: torch.Tensor) -> torch.Tensor:
    """d e_s / d T in Pa K-1, the derivative of Bolton's eq. 10."""
    celsius = temperature - T_ZERO
    return saturation_vapour_pressure(temperature) * 17.67 * 243.5 / (celsius + 243.5) ** 2


def specific_humidity(vapour_pressure: torch.Tensor, pressure: torch.Tensor) -> torch.Tensor:
    """Specific humidity (kg kg-1) from vapour pressure and pressure: eps e / (p - (1-eps) e)."""
    return EPSILON * vapour_pressure / (pressure - (1.0 - EPSILON) * vapour_pressure)


def saturation_specific_humidity(temperature: torch.Tensor, pressure: torch.Tensor) -> torch.Tensor:
    """Specific humidity at saturation over water, kg kg-1."""
    return specific_humidity(saturation_vapour_pressure(temperature), pressure)


def saturation_specific_humidity_slope(
    temperature: torch.Tensor, pressure: torch.Tensor
) -> torch.Tensor:
    """d q_s / d T (kg kg-1 K-1) at constant pressure: eps p / (p - (1-eps) e_s)^2 de_s/dT."""
    vapour = saturation_vapour_pressure(temperature)
    slope = saturation_vapour_pressure_slope(temperature)
    return EPSILON * pressure * slope / (pressure - (1.0 - EPSILON) * vapour) ** 2


def latent_heat_vaporization(temperature: torch.Tensor) -> torch.Tensor:
    """Latent heat of vaporization in J kg-1 (Bolton 1980, eq. 2): (2.501 - 0.00237 T_c) 1e6."""
    return (2.501 - 0.00237 * (temperature - T_ZERO)) * 1.0e6


def dewpoint_to_specific_humidity(dewpoint: torch.Tensor, pressure: torch.Tensor) -> torch.Tensor:
    """Specific humidity of air whose dew point is `dewpoint` (K) at `pressure` (Pa)."""
    return saturation_specific_humidity(dewpoint, pressure)
