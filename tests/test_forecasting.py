"""Forecasting real series: windows split in time, heads defined by the loss, the
forecasters' baselines, probabilistic scores from scoringrules, every verb."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import scoringrules
import torch
import xarray as xr

import esszoo
from esszoo.data.dataset import Table
from esszoo.data.readers import read_radolan_series
from esszoo.data.series import select_series, series_data
from esszoo.data.source import open_source
from esszoo.errors import DataError, ModelError
from esszoo.options import TrainerOptions
from esszoo.tasks.forecasting import (
    Forecast,
    ForecastingOptions,
    ForecastingTask,
    LinearAutoregression,
    SeasonalClimatology,
    _spans,
    forecast_scores,
    steps_after,
)
from tests.conftest import run_cli

TRAINER = {"max_epochs": 2, "batch_size": 32, "progress_bar": False, "precision": "32"}
WINDOW = {"past": 12, "future": 3}


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def nino() -> xr.Dataset:
    return open_source("nino12").load()


def test_windows_stay_inside_their_split_and_carry_the_season(nino):
    data = series_data(nino, inputs=["sst"], targets=["sst"], **WINDOW)
    assert data.train.x.shape[1:] == (12, 3)  # sst, and the phase of the year as sin, cos
    assert [v.name for v in data.inputs] == ["sst", "annual_sin", "annual_cos"]
    assert data.train.y.shape[1:] == (3, 1)
    times = nino["time"].values
    for name, (first, stop) in data.split.ranges.items():  # every window inside its block
        table = data.tables[name]
        first_input = np.searchsorted(times, table.coords["time"]) - 11
        last_target = np.searchsorted(times, table.coords["target_time"][:, -1])
        assert first_input.min() >= first and last_target.max() < stop
    # a window is the series itself: inputs then targets, consecutive months
    values = nino["sst"].values
    start = int(np.searchsorted(nino["time"].values, data.test.coords["time"][0])) - 11
    np.testing.assert_allclose(data.test.x[0, :, 0], values[start : start + 12])
    np.testing.assert_allclose(data.test.y[0, :, 0], values[start + 12 : start + 15])
    np.testing.assert_allclose(data.test.coords["last"][0], values[start + 11])


def test_hourly_series_get_the_phase_of_the_day_and_gaps_drop_windows():
    weather = open_source("tmy3").isel(time=slice(0, 24 * 60))
    data = series_data(weather, inputs=["tas"], targets=["tas"], past=24, future=6, stride=6)
    # 42 training days hold whole days, not a whole year: a year's phase would meet its
    # validation and test values first there
    assert [v.name for v in data.inputs][1:] == ["daily_sin", "daily_cos"]
    asked = series_data(
        weather, inputs=["tas"], targets=["tas"], past=24, future=6, time_features=["annual"]
    )
    assert [v.name for v in asked.inputs][1:] == ["annual_sin", "annual_cos"]
    assert len(data.train) and data.dims[1:] == ("station",)  # every station a series
    assert SeasonalClimatology(data.train).name == "climatology (calendar month and hour)"
    co2 = open_source("co2")  # 59 blank weeks
    weekly = series_data(co2, inputs=["co2"], targets=["co2"], past=8, future=4)
    assert sum(weekly.dropped.values()) > 0
    assert all(
        torch.isfinite(t.x).all() and torch.isfinite(t.y).all() for t in weekly.tables.values()
    )


def test_radar_rain_rates_are_box_means_where_the_radar_sees_most_of_a_box(tmp_path):
    amount = np.zeros((2, 38, 19), np.float32)  # two boxes of 19 x 19 pixels along y
    amount[0, :19] = 0.5  # mm in 5 minutes: 6 mm per hour
    amount[1, :19] = np.where(np.arange(19) < 1, np.nan, 1.0)  # 1 of 19 columns unseen
    amount[:, 19:, :3] = np.nan  # the second box: 3 of 19 columns unseen, under 90% seen
    amount[0, 19:, 3:] = 0.25
    times = np.array(["2018-05-10T00:00", "2018-05-10T00:05"], dtype="datetime64[ns]")
    radar = xr.Dataset({"rainfall_amount": (("time", "y", "x"), amount)}, {"time": times})
    radar.to_netcdf(tmp_path / "radar.nc")
    series = read_radolan_series([tmp_path / "radar.nc"])["rain_rate"]
    assert series.dims == ("time", "y", "x") and series.attrs["units"] == "mm h-1"
    assert series["y"].values.tolist() == [9, 28] and series["x"].values.tolist() == [9]
    np.testing.assert_allclose(series[:, 0, 0], [6.0, 12.0])  # the mean of the seen pixels
    assert np.isnan(series[:, 1, 0]).all()


def test_the_series_of_a_recipe_are_chosen_by_their_points(tmp_path):
    weather = open_source("tmy3").isel(time=slice(0, 24 * 20))
    one = select_series(weather, {"station": ["703165"]})
    data = series_data(one, inputs=["tas"], targets=["tas"], past=24, future=6, stride=6)
    both = series_data(weather, inputs=["tas"], targets=["tas"], past=24, future=6, stride=6)
    assert len(both.train) == 2 * len(data.train)
    np.testing.assert_array_equal(
        data.train.y[:, :, 0], both.train.y[both.train.coords["series"] == 1][:, :, 0]
    )
    with pytest.raises(DataError, match=r"'station' holds \['723170', '703165'\]"):
        select_series(weather, {"station": ["1"]})


def test_a_window_longer_than_a_split_or_features_without_dates_are_one_clear_error(nino):
    with pytest.raises(DataError, match="fewer than a window of 100 \\+ 20"):
        series_data(nino, inputs=["sst"], targets=["sst"], past=100, future=20)
    undated = nino.assign_coords(time=np.arange(nino.sizes["time"]))
    with pytest.raises(DataError, match="time features \\['annual'\\] need dates"):
        series_data(undated, inputs=["sst"], targets=["sst"], time_features=["annual"], **WINDOW)
    assert series_data(undated, inputs=["sst"], targets=["sst"], **WINDOW).train.x.shape[-1] == 1


def test_gaussian_crps_is_scoringrules_closed_form_and_a_point_forecasts_is_its_error():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(500, 3, 1, generator=generator)
    center, scale = 0.3 * torch.ones_like(truth), 1.2 * torch.ones_like(truth)
    gaussian = Forecast(center, scale=scale)
    z = (truth - center) / scale  # Gneiting & Raftery (2007), eq. 21
    pdf, cdf = (
        torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi),
        0.5 * (1 + torch.erf(z / math.sqrt(2))),
    )
    closed = scale * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    np.testing.assert_allclose(gaussian.crps(truth), closed.numpy(), rtol=1e-5, atol=1e-6)
    point = forecast_scores(Forecast(center), truth)
    assert point["crps"] == pytest.approx(point["mae"]) and "cover50" not in point


def test_a_calibrated_forecast_covers_its_intervals_and_a_narrow_one_does_not():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(20000, 2, 1, generator=generator)
    zero = torch.zeros_like(truth)
    calibrated = forecast_scores(Forecast(zero, scale=torch.ones_like(truth)), truth)
    assert calibrated["cover50"] == pytest.approx(0.5, abs=0.02)
    assert calibrated["cover90"] == pytest.approx(0.9, abs=0.02)
    assert calibrated["spread_skill"] == pytest.approx(1.0, abs=0.03)
    narrow = forecast_scores(Forecast(zero, scale=0.3 * torch.ones_like(truth)), truth)
    assert narrow["cover90"] < 0.5 and narrow["spread_skill"] < 0.4
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]  # the same Gaussian as quantiles
    z = torch.tensor([-1.6449, -0.6745, 0.0, 0.6745, 1.6449])
    quantiles = Forecast(zero, quantiles=z.expand(*truth.shape, 5), levels=levels)
    scored = forecast_scores(quantiles, truth)
    assert scored["cover90"] == pytest.approx(0.9, abs=0.02)
    expected = scoringrules.crps_quantile(
        truth.numpy(), z.expand(*truth.shape, 5).numpy(), np.array(levels)
    )
    assert scored["crps"] == pytest.approx(float(expected.mean()))


def test_linear_autoregression_recovers_an_ar1_process():
    generator = torch.Generator().manual_seed(0)
    series = [0.0]
    for _ in range(4000):
        series.append(0.8 * series[-1] + 0.1 * float(torch.randn(1, generator=generator)))
    values = torch.tensor(series)
    x = torch.stack([values[i : i + 4] for i in range(len(values) - 5)])[..., None]
    y = torch.stack([values[i + 4 : i + 6] for i in range(len(values) - 5)])[..., None]
    fit = LinearAutoregression(Table(x, y))
    mean, spread = fit(Table(x[:5], y[:5]))
    np.testing.assert_allclose(mean[:, 0, 0], 0.8 * x[:5, -1, 0], atol=0.02)
    np.testing.assert_allclose(mean[:, 1, 0], 0.64 * x[:5, -1, 0], atol=0.02)
    assert spread[0, 0, 0] == pytest.approx(0.1, rel=0.05)  # the innovations' spread
    assert spread[0, 1, 0] == pytest.approx(0.1 * math.sqrt(1 + 0.64), rel=0.05)


class Constant(torch.nn.Module):
    """A network whose forecast is fixed: the loss of a given forecast."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.values = values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values.expand(len(x), 1, -1)


def test_the_quantile_loss_is_least_at_the_true_quantiles():
    options = ForecastingOptions(distribution="quantiles", quantiles=[0.1, 0.5, 0.9])
    y = torch.randn(20000, 1, 1, generator=torch.Generator().manual_seed(0))

    def loss(levels: torch.Tensor) -> float:
        task = ForecastingTask(Constant(levels), options, TrainerOptions())
        return float(task.batch_loss({"x": torch.zeros(len(y), 1, 1), "y": y}))

    true = torch.tensor([-1.2816, 0.0, 1.2816])
    assert loss(true) < loss(true + 0.2) and loss(true) < loss(true * 0.7)


def test_the_gaussian_loss_is_least_at_the_true_spread():
    options = ForecastingOptions(distribution="gaussian")
    y = 2.0 * torch.randn(20000, 1, 1, generator=torch.Generator().manual_seed(0))
    raw = lambda scale: math.log(math.expm1(scale))  # noqa: E731 (softplus^-1)

    def loss(scale: float) -> float:
        task = ForecastingTask(Constant(torch.tensor([0.0, raw(scale)])), options, TrainerOptions())
        return float(task.batch_loss({"x": torch.zeros(len(y), 1, 1), "y": y}))

    assert loss(2.0) < loss(1.5) and loss(2.0) < loss(2.5)


def test_models_that_take_the_truth_read_it_in_training_only():
    seen = []

    class Recording(torch.nn.Module):
        def forward(self, x, teacher=None):
            seen.append(teacher is not None)
            return torch.zeros(len(x), 2, 1, requires_grad=True)

    task = ForecastingTask(Recording(), ForecastingOptions(), TrainerOptions())
    batch = {"x": torch.zeros(4, 3, 1), "y": torch.zeros(4, 2, 1)}
    task.train()
    task.batch_loss(batch)
    task.eval()
    task.batch_loss(batch)
    assert seen == [True, False]


RUNS = {
    "point": ({"name": "lstm", "width": 8}, {}),
    "gaussian": ({"name": "transformer", "width": 8, "depth": 1, "heads": 2, "hidden": 16}, {}),
    "quantiles": ({"name": "seq2seq_attention", "width": 8, "maxout": 4}, {}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nino):
    folder = tmp_path_factory.mktemp("forecasts")
    nino.to_netcdf(folder / "nino.nc")
    found = {}
    for distribution, (model, _) in RUNS.items():
        recipe = {
            "name": distribution,
            "model": model,
            "data": {"source": str(folder / "nino.nc"), "inputs": ["sst"], "window": WINDOW},
            "task": {"name": "forecasting", "distribution": distribution},
            "trainer": TRAINER,
        }
        found[distribution] = esszoo.train(recipe, out_dir=str(folder / "runs"))
    return found, folder


@pytest.mark.parametrize("distribution", sorted(RUNS))
def test_every_forecast_is_scored_beside_the_forecasters_baselines(runs, distribution):
    found, _ = runs
    rows = {row["predictor"]: row for row in read_csv(found[distribution].path / "scores.csv")}
    assert set(rows) == {
        RUNS[distribution][0]["name"],
        "baseline: persistence",
        "baseline: climatology (calendar month)",
        "baseline: linear autoregression",
    }
    for row in rows.values():
        assert float(row["crps"]) > 0 and row["units"] == "degC"
        assert ("cover90" in row and row["cover90"] != "") == (distribution != "point")
    by_lead = read_csv(found[distribution].path / "scores_by_lead.csv")
    assert len(by_lead) == 4 * 3 and {int(r["lead"]) for r in by_lead} == {1, 2, 3}
    assert (found[distribution].path / "skill_by_lead.png").is_file()
    assert (found[distribution].path / "reliability.png").is_file() == (distribution != "point")


@pytest.mark.parametrize("distribution", sorted(RUNS))
def test_predict_writes_forecasts_along_lead_time_that_are_the_models(runs, distribution, capsys):
    found, folder = runs
    out = folder / f"{distribution}.nc"
    status, _, err = run_cli(
        ["predict", found[distribution].path, "--data", folder / "nino.nc", "--out", out], capsys
    )
    assert status == 0, err
    predicted = xr.load_dataset(out)
    assert predicted["sst"].dims == ("time", "lead_time") and predicted.sizes["lead_time"] == 3
    extra = {"gaussian": "sst_std", "quantiles": "sst_quantiles"}.get(distribution)
    assert extra is None or extra in predicted
    # the forecast issued at a test window's last step is the model's for that window
    predictor = esszoo.load(found[distribution].path)
    data = series_data(open_source(folder / "nino.nc"), inputs=["sst"], targets=["sst"], **WINDOW)
    task = ForecastingTask(
        predictor.net, ForecastingOptions(distribution=distribution), TrainerOptions()
    )
    with torch.no_grad():
        expected = task.forecast(predictor(data.test.x[:5])).center[..., 0]
    issued = predicted["sst"].sel(time=data.test.coords["time"][:5]).values
    np.testing.assert_allclose(issued, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_forecasters_export_and_compare(runs, capsys):
    found, folder = runs
    status, out, err = run_cli(
        ["export", found["gaussian"].path, "--format", "onnx", "--out", folder / "f.onnx"], capsys
    )
    assert status == 0 and "reproduces esszoo" in out, err
    status, out, err = run_cli(["compare", found["point"].path, found["quantiles"].path], capsys)
    assert status == 0 and "lstm" in out and "seq2seq_attention" in out, err
    scores = esszoo.evaluate(found["point"])  # a DataFrame, as a notebook shows it
    assert scores["predictor"].iloc[0] == "lstm" and "crps" in scores.columns


def test_next_steps_are_the_steps_after_each_position():
    series = torch.arange(7.0).view(1, 7, 1)  # 5 past steps, then a horizon of 2
    ahead = steps_after(series, past=5, horizon=2)
    assert ahead[0, :, :, 0].tolist() == [[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]


def test_masked_spans_hide_about_their_share_in_spans():
    torch.manual_seed(0)
    hidden = _spans((2000, 48), ratio=0.15, span=3, device=torch.device("cpu"))
    assert hidden.float().mean().item() == pytest.approx(0.15, abs=0.03)
    begins = hidden.clone()
    begins[:, 1:] &= ~hidden[:, :-1]  # where a run of hidden steps begins
    for shift in range(3):  # every run is at least a span long (unless the window ends)
        assert hidden[:, shift:][begins[:, : 48 - shift]].all()
    assert not hidden[:, 3:][begins[:, :-3]].all()  # and runs are not all longer


@pytest.mark.parametrize(
    ("model", "objective"),
    [
        ({"name": "gpt", "width": 8, "depth": 1, "heads": 2, "context": 16}, "next_steps"),
        ({"name": "bert", "width": 8, "depth": 1, "heads": 2, "context": 16}, "masked_spans"),
    ],
)
def test_a_pretrained_sequence_model_starts_a_forecaster(tmp_path, nino, model, objective, capsys):
    nino.to_netcdf(tmp_path / "nino.nc")
    data = {"source": str(tmp_path / "nino.nc"), "inputs": ["sst"], "window": WINDOW}
    recipe = {"model": model, "data": data, "trainer": TRAINER, "out_dir": str(tmp_path)}
    task = {"name": "forecasting", "pretraining": objective}
    pretrained = esszoo.train(recipe | {"name": "pre", "task": task})
    rows = read_csv(pretrained.path / "scores.csv")
    assert rows[0]["predictor"] == model["name"]  # scored as a forecaster like any other
    tuned = esszoo.train(
        recipe
        | {"name": "tuned", "task": {"name": "forecasting"}, "init_from": str(pretrained.path)}
    )
    out = capsys.readouterr().out
    assert "tensors copied" in out and "kept fresh" in out
    assert (tuned.path / "scores.csv").is_file()


def test_pretraining_needs_a_model_that_forecasts_from_every_position():
    net = esszoo.create_model("lstm", in_channels=1, out_channels=1, horizon=2, width=4)
    with pytest.raises(ModelError, match="use gpt for next_steps and bert for masked_spans"):
        ForecastingTask(net, ForecastingOptions(pretraining="next_steps"), TrainerOptions())
