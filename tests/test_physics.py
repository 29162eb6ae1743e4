"""The hand-written physics: Bolton's formulas and the condensation scheme's invariants."""

import pytest
import torch

from esszoo.physics import (
    cheap_mixed_column_precipitation,
    mixed_column_precipitation,
    physics_function,
)
from esszoo.physics.condensation import saturation_adjustment
from esszoo.physics.thermo import (
    CP_DRY,
    latent_heat_vaporization,
    saturation_specific_humidity,
    saturation_specific_humidity_slope,
    saturation_vapour_pressure,
)

f64 = torch.float64


def test_bolton_saturation_vapour_pressure_matches_table_values():
    temperature = torch.tensor([273.15, 293.15, 303.15], dtype=f64)
    # Bolton (1980) eq. 10: 6.112 hPa at 0 C; 23.37 hPa at 20 C; 42.43 hPa at 30 C
    expected = torch.tensor([611.2, 2337.0, 4243.0], dtype=f64)
    assert torch.allclose(saturation_vapour_pressure(temperature), expected, rtol=2e-3)


def test_saturation_humidity_slope_is_the_derivative():
    temperature = torch.linspace(250.0, 310.0, 7, dtype=f64)
    pressure = torch.full_like(temperature, 90_000.0)
    step = 1e-4
    numeric = (
        saturation_specific_humidity(temperature + step, pressure)
        - saturation_specific_humidity(temperature - step, pressure)
    ) / (2 * step)
    analytic = saturation_specific_humidity_slope(temperature, pressure)
    assert torch.allclose(numeric, analytic, rtol=1e-6)


def test_saturation_adjustment_conserves_enthalpy_and_ends_saturated():
    temperature = torch.tensor([280.0, 295.0, 260.0], dtype=f64)
    pressure = torch.tensor([85_000.0, 80_000.0, 90_000.0], dtype=f64)
    humidity = 1.3 * saturation_specific_humidity(temperature, pressure)  # supersaturated
    new_t, new_q = saturation_adjustment(temperature, humidity, pressure)
    latent = latent_heat_vaporization(temperature)
    # the latent heat of the condensate warms the air: c_p dT = L (q - q*)
    assert torch.allclose(CP_DRY * (new_t - temperature), latent * (humidity - new_q), rtol=1e-9)
    assert torch.allclose(new_q, saturation_specific_humidity(new_t, pressure), rtol=1e-9)
    assert (new_t > temperature).all()


def test_unsaturated_air_is_left_alone():
    temperature = torch.tensor([290.0], dtype=f64)
    pressure = torch.tensor([90_000.0], dtype=f64)
    humidity = 0.5 * saturation_specific_humidity(temperature, pressure)
    new_t, new_q = saturation_adjustment(temperature, humidity, pressure)
    assert torch.equal(new_t, temperature) and torch.equal(new_q, humidity)


def test_precipitation_is_zero_for_dry_air_and_grows_with_humidity():
    temperature = torch.full((5,), 295.0, dtype=f64)
    pressure = torch.full((5,), 100_000.0, dtype=f64)
    humidity = torch.tensor([0.001, 0.008, 0.010, 0.015, 0.020], dtype=f64)
    precipitation = mixed_column_precipitation(temperature, pressure, humidity)
    assert precipitation[0] == 0.0
    assert (precipitation.diff() > 0).all()


def test_precipitation_converges_with_vertical_resolution():
    temperature = torch.tensor([300.0, 275.0], dtype=f64)
    pressure = torch.tensor([100_000.0, 95_000.0], dtype=f64)
    humidity = torch.tensor([0.018, 0.005], dtype=f64)
    fine = mixed_column_precipitation(temperature, pressure, humidity, levels=400)
    errors = [
        (mixed_column_precipitation(temperature, pressure, humidity, levels=n) - fine).abs().max()
        for n in (4, 16, 64)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_cheap_physics_is_an_approximation_not_a_copy():
    temperature = torch.tensor([300.0], dtype=f64)
    pressure = torch.tensor([100_000.0], dtype=f64)
    humidity = torch.tensor([0.018], dtype=f64)
    reference = mixed_column_precipitation(temperature, pressure, humidity)
    cheap = cheap_mixed_column_precipitation(temperature, pressure, humidity)
    assert 0.0 < float((cheap - reference).abs()) < 0.5 * float(reference)


def test_unknown_physics_function_names_the_nearest():
    from esszoo.errors import RecipeError

    with pytest.raises(RecipeError, match="mixed_column_precipitation"):
        physics_function("mixed_colum_precipitation")
