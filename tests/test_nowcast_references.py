"""The references of radar nowcasting (pysteps' extrapolation and STEPS) and the field's
scores (pysteps' verification), as esszoo runs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esszoo import verification
from esszoo.data.variables import Variable
from esszoo.tasks.extrapolation import MotionNowcasts, cascade_levels, rain_rate_factor

STEP = 3  # points a frame the synthetic rain moves east


def moving_rain(frames: int, shape=(48, 64), start=(24, 16)) -> np.ndarray:
    """A rain cell with a core of 20 mm/h in 5-minute amounts (mm), moving STEP points east
    per frame: (frames, H, W)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    fields = []
    for k in range(frames):
        centre = (start[0], start[1] + STEP * k)
        rate = 20.0 * np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * 4.0**2))
        texture = 1 + 0.3 * np.sin(0.7 * y + 0.9 * (x - STEP * k))  # something to track
        fields.append(np.where(rate * texture > 0.1, rate * texture, 0.0) / 12)
    return np.stack(fields)


def centre_of_rain(field: np.ndarray) -> float:
    """The rain-weighted mean column of a field."""
    return float((field.sum(0) * np.arange(field.shape[1])).sum() / field.sum())


def test_rain_rates_are_found_from_units_and_the_time_step():
    amount = Variable("rainfall_amount", "kg", "rainfall_amount")
    assert rain_rate_factor(amount, 300.0) == 12.0
    assert rain_rate_factor(amount, None) is None  # an amount without a time step
    for units in ("mm h-1", "mm/h", "mm hr-1", "mm/hr"):  # one rate, however it is spelt
        assert rain_rate_factor(Variable("rr", units, "rainfall_rate"), None) == 1.0
    assert rain_rate_factor(Variable("pr", "kg m-2 s-1", "precipitation_flux"), None) == 3600.0
    assert rain_rate_factor(Variable("tas", "K", "air_temperature"), 300.0) is None
    assert cascade_levels((47, 57)) == 4 and cascade_levels((1000, 1000)) == 8


def test_extrapolation_moves_the_rain_where_persistence_keeps_it():
    window = moving_rain(9)
    past, future = window[:6], window[6:]
    nowcasts = MotionNowcasts(12.0, 3, kmperpixel=1.0, minutes=5.0, members=4)
    moved = nowcasts.extrapolation(torch.from_numpy(past)[None]).numpy()[0]
    assert moved.shape == future.shape
    for lead in range(3):
        assert centre_of_rain(moved[lead]) == pytest.approx(centre_of_rain(future[lead]), abs=1.0)
        # persistence stays STEP * (lead + 1) points behind
        behind = centre_of_rain(future[lead]) - centre_of_rain(past[-1])
        assert behind == pytest.approx(STEP * (lead + 1), abs=1.0)
    assert (moved >= 0).all()


def test_steps_members_differ_move_with_the_rain_and_are_reproducible():
    window = torch.from_numpy(moving_rain(6)).unsqueeze(0).unsqueeze(0)  # a volume (1,1,T,H,W)
    nowcasts = MotionNowcasts(12.0, 3, kmperpixel=1.0, minutes=5.0, members=6, seed=3)
    members = nowcasts.ensemble(window)
    assert members.shape == (1, 6, 3, 48, 64)
    assert (members >= 0).all() and members.sum() > 0
    assert not torch.equal(members[0, 0], members[0, 1])  # the noise makes them differ
    assert torch.equal(members, nowcasts.ensemble(window))  # the seed fixes them
    last = moving_rain(9)[-1]
    assert centre_of_rain(members[0, :, -1].mean(0).numpy()) == pytest.approx(
        centre_of_rain(last), abs=3.0
    )
    dry = torch.zeros(1, 6, 48, 64)
    assert torch.equal(nowcasts.ensemble(dry), torch.zeros(1, 6, 3, 48, 64))


def test_a_window_with_too_little_rain_for_steps_takes_the_extrapolation():
    window = torch.zeros(1, 3, 48, 64)
    window[0, :, 20, 30] = 1.0  # one wet point: STEPS cannot fit its autoregression
    nowcasts = MotionNowcasts(12.0, 3, kmperpixel=2.0, minutes=5.0, members=4)
    members = nowcasts.ensemble(window)
    assert nowcasts.fallbacks == 1 and torch.isfinite(members).all()
    for member in members[0]:
        torch.testing.assert_close(member, nowcasts.extrapolation(window)[0])


def test_categorical_scores_count_hits_misses_and_false_alarms():
    observed = np.zeros((1, 1, 4, 4))
    observed[..., :2, :] = 3.0  # 8 wet points
    forecast = np.zeros((1, 1, 4, 4))
    forecast[..., 1:3, :] = 3.0  # 4 hits, 4 false alarms, 4 misses
    forecast[..., 3, 0] = np.nan  # left out
    scores = verification.categorical(forecast, observed, [1.0])
    assert scores["CSI"][0, 0] == pytest.approx(4 / 12)
    assert scores["POD"][0, 0] == pytest.approx(4 / 8)
    assert scores["FAR"][0, 0] == pytest.approx(4 / 8)


def test_fss_is_one_for_a_perfect_forecast_and_grows_with_the_scale_for_a_shifted_one():
    observed = moving_rain(2)[None, :1] * 12
    shifted = moving_rain(2)[None, 1:] * 12  # the cell STEP points east
    assert verification.fractions_skill(observed, observed, [1.0], [1])[0, 0, 0] == 1.0
    skill = verification.fractions_skill(shifted, observed, [1.0], [1, 5, 15])[0, :, 0]
    assert skill[0] < skill[1] < skill[2] < 1.0


def test_ensemble_scores_reduce_to_the_mean_absolute_error_and_rank_where_expected():
    rng = np.random.default_rng(0)
    observed = rng.gamma(1.0, 2.0, size=(3, 2, 8, 8))
    one = observed[:, None] + 1.0  # members all alike, 1 mm/h too wet
    crps, ranks = verification.ensemble(np.repeat(one, 5, axis=1), observed)
    np.testing.assert_allclose(crps, 1.0)  # CRPS of a point forecast: its absolute error
    assert ranks[0] == pytest.approx(1.0)  # the observation below every member
    wide = observed[:, None] + rng.normal(0, 1, size=(3, 9, 2, 8, 8))
    crps_wide, ranks_wide = verification.ensemble(wide, observed)
    assert ranks_wide.sum() == pytest.approx(1.0) and ranks_wide.max() < 0.3


def test_a_blurred_field_has_less_power_at_small_scales():
    rng = np.random.default_rng(1)
    fields = rng.gamma(0.5, 2.0, size=(4, 64, 64))
    blurred = (
        fields + np.roll(fields, 1, 1) + np.roll(fields, 1, 2) + np.roll(fields, 1, (1, 2))
    ) / 4
    sharp, wavelengths = verification.power_spectrum(fields, spacing_km=2.0)
    smooth, _ = verification.power_spectrum(blurred, spacing_km=2.0)
    assert wavelengths[0] > wavelengths[-1] and wavelengths[-1] == pytest.approx(4.0, rel=0.1)
    assert smooth[-1] < 0.2 * sharp[-1]  # the shortest waves lost
    assert smooth[1] == pytest.approx(sharp[1], rel=0.3)  # the long ones kept


@pytest.fixture(scope="module")
def rain_windows():
    """Six hours of real DWD radar at 8 km, as windows of 3 frames in and 2 out."""
    from esszoo.data.source import open_source
    from esszoo.data.windows import window_data

    source = open_source("radolan")
    radar = source.sel(time=slice("2018-05-10T12", "2018-05-10T17:55")).load()

    def windows(coarsen={"y": 8, "x": 8}, **options):  # noqa: B006 (read only)
        return window_data(
            radar,
            inputs=["rainfall_amount"],
            coarsen=coarsen,
            past=3,
            future=2,
            stride=9,
            train=0.5,
            val=0.25,
            test=0.25,
            **options,
        )

    return windows


def test_nowcasts_of_rain_windows_are_scored_beside_the_references(rain_windows):
    from esszoo.options import TrainerOptions
    from esszoo.tasks.segmentation import SegmentationTask
    from esszoo.tasks.translation import TranslationTask

    data = rain_windows()
    native = rain_windows(coarsen=None).grid.spacing_km()  # the file's own 1-km-ish points
    assert data.frame_step == 300.0 and data.grid.spacing_km() == pytest.approx(
        8 * native, rel=0.05
    )
    options = TranslationTask.Options(steps_members=3)
    found = TranslationTask(torch.nn.Identity(), options, TrainerOptions()).baselines(data)
    assert {"persistence", "extrapolation (pysteps)", "STEPS (pysteps, mean of 3)"} <= set(found)
    for name in ("extrapolation (pysteps)", "STEPS (pysteps, mean of 3)"):
        prediction = found[name](data.test)
        assert prediction.shape == data.test.y.shape
        assert torch.isfinite(prediction).all() and (prediction >= 0).all()

    labelled = rain_windows(point_rule="rain_intensity")
    options = SegmentationTask.Options(steps_members=3)
    found = SegmentationTask(torch.nn.Identity(), options, TrainerOptions()).baselines(labelled)
    shares = found["STEPS (pysteps, 3 members' classes)"](labelled.test)
    assert shares.shape == (len(labelled.test), 4, *labelled.test.y.shape[1:])
    torch.testing.assert_close(shares.sum(1), torch.ones_like(shares[:, 0]))
    classes = found["extrapolation (pysteps)"](labelled.test).argmax(1)
    assert classes.shape == labelled.test.y.shape


def test_windows_that_are_not_rain_get_no_references_of_rain(rain_windows):
    from esszoo.options import TrainerOptions
    from esszoo.tasks.translation import TranslationTask

    data = rain_windows()
    data.inputs[0] = Variable("tas", "K", "air_temperature")
    found = TranslationTask(torch.nn.Identity(), TranslationTask.Options(), TrainerOptions())
    assert "extrapolation (pysteps)" not in found.baselines(data)
