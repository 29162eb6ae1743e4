"""Irregular series: real observations hidden (data.thin), windows kept with their gaps
and a mask (data.missing), the ODE-RNN and the latent ODE that read them, the variational
latent's KL in the loss, and the baselines of a gappy past."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import esszoo
from esszoo.data.series import last_observed, series_data
from esszoo.data.source import open_source
from esszoo.errors import ModelError
from esszoo.layers.bayesian import sampling
from esszoo.layers.ode import ODERNN
from esszoo.layers.variational import GaussianLatent, latent_kl
from esszoo.tasks.forecasting import interpolate_gaps
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]

WINDOW = {"past": 12, "future": 3}
SMALL = {"latents": 4, "width": 8, "units": 8, "gru_units": 8}
TRAINER = {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "precision": "32"}


@pytest.fixture(scope="module")
def nino() -> xr.Dataset:
    return open_source("nino12").load()


def test_thinning_hides_its_share_of_the_past_the_same_way_every_time(nino):
    whole = series_data(nino, inputs=["sst"], targets=["sst"], **WINDOW)
    thinned = series_data(nino, inputs=["sst"], targets=["sst"], thin=0.5, missing="keep", **WINDOW)
    again = series_data(nino, inputs=["sst"], targets=["sst"], thin=0.5, missing="keep", **WINDOW)
    assert whole.train.mask is None
    train = thinned.train
    hidden = 1 - train.mask[..., 0].mean().item()  # sst; the time features are never hidden
    assert 0.45 < hidden < 0.55
    assert torch.equal(train.mask, again.train.mask)
    assert torch.equal(train.mask.bool(), torch.isfinite(train.x))
    assert train.mask[..., 1:].all()
    # nothing is invented: what is left is the series, the targets are whole
    assert len(train) == len(whole.train)
    seen = train.mask[..., 0].bool()
    assert torch.equal(train.x[..., 0][seen], whole.train.x[..., 0][seen])
    assert torch.equal(train.y, whole.train.y)
    # persistence reads the last month that is left
    expected = last_observed(train.x[..., :1].numpy())
    assert np.array_equal(train.coords["last"], expected)
    assert not np.array_equal(train.coords["last"], whole.train.coords["last"])


def test_the_last_observation_and_linear_interpolation_of_gaps():
    nan = np.nan
    past = np.array([[[1.0], [nan], [3.0], [nan]], [[nan], [nan], [nan], [nan]]])
    assert np.allclose(last_observed(past)[0], [3.0]) and np.isnan(last_observed(past)[1, 0])
    filled = interpolate_gaps(torch.tensor([[[1.0, 5.0], [nan, 5.0], [3.0, 5.0], [nan, 5.0]]]))
    assert filled[0, :, 0].tolist() == [1.0, 2.0, 3.0, 3.0]  # held after the last
    assert filled[0, :, 1].tolist() == [5.0] * 4


def test_a_model_of_complete_windows_is_refused_a_gappy_past(tmp_path, nino):
    nino.to_netcdf(tmp_path / "nino.nc")
    recipe = {
        "name": "gaps",
        "model": {"name": "lstm", "width": 8},
        "data": {"source": str(tmp_path / "nino.nc"), "inputs": ["sst"], "window": WINDOW},
        "task": {"name": "forecasting"},
        "trainer": TRAINER,
    }
    recipe["data"]["thin"] = 0.3
    with pytest.raises(ModelError, match="reads complete windows.*latent_ode, ode_rnn"):
        esszoo.train(recipe, out_dir=str(tmp_path / "runs"))


def test_the_gaussian_latent_has_the_closed_form_kl_and_draws_only_when_asked():
    latent = GaussianLatent()
    mean, spread = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.3, 2.0]])
    latent.train()
    drawn = latent(mean, spread)
    q, p = torch.distributions.Normal(mean, spread), torch.distributions.Normal(0.0, 1.0)
    assert torch.allclose(latent.kl, torch.distributions.kl_divergence(q, p).sum())
    assert not torch.equal(drawn, mean)
    latent.eval()
    assert torch.equal(latent(mean, spread), mean)
    with sampling(latent):
        assert not torch.equal(latent(mean, spread), mean)
    assert torch.equal(latent_kl(torch.nn.Sequential(latent)), latent.kl)
    assert latent_kl(torch.nn.Linear(2, 2)) is None
    # against a mean squared error, the KL of a likelihood of std 0.01 weighs 2 x 0.01^2
    scaled = GaussianLatent(observation_std=0.01)
    scaled(mean, spread)
    assert torch.allclose(scaled.kl, 2e-4 * latent.kl)


@pytest.mark.parametrize(
    "name, options", [("latent_ode", SMALL), ("ode_rnn", {}), ("ode_rnn", {"variant": "delta_t"})]
)
def test_hidden_values_are_never_read(name, options):
    torch.manual_seed(0)
    model = esszoo.create_model(name, in_channels=2, out_channels=1, horizon=3, **options).eval()
    x = torch.randn(4, 10, 2)
    mask = (torch.rand(4, 10, 2) > 0.4).float()
    with torch.no_grad():
        reference = model(x, mask)
        assert torch.equal(model(torch.where(mask > 0, x, torch.nan), mask), reference)
        assert torch.equal(model(torch.where(mask > 0, x, 1e3), mask), reference)
        # without a mask, NaN are the gaps
        assert torch.allclose(model(torch.where(mask > 0, x, torch.nan)), reference)


def test_the_ode_rnn_state_moves_with_the_time_between_observations():
    torch.manual_seed(0)
    layer = ODERNN(1, 6, units=8, layers=1, gru_units=8, solver="euler", step_size=0.05)
    x = torch.ones(1, 5, 1)
    times = torch.arange(5) * 0.05
    early = torch.tensor([[1.0, 1, 0, 0, 0]])[..., None]  # observed at steps 0-1
    late = torch.tensor([[0.0, 0, 0, 1, 1]])[..., None]  # the same values at steps 3-4
    with torch.no_grad():
        after_early, _ = layer(x, early, times)
        after_late, _ = layer(x, late, times)
        # the state evolves through the three steps after the early observations
        evolved = layer.ode.trajectory(layer(x[:, :2], early[:, :2], times[:2])[0], times[1:])
    assert not torch.allclose(after_early, after_late)
    assert torch.allclose(after_early, evolved[-1], atol=1e-6)


def test_a_latent_ode_trains_on_a_thinned_real_series_with_its_kl(tmp_path, nino, capsys):
    nino.to_netcdf(tmp_path / "nino.nc")
    data = {"source": str(tmp_path / "nino.nc"), "inputs": ["sst"], "window": WINDOW}
    losses = {}
    for weight in (0.0, 1.0):
        recipe = {
            "name": f"latent{weight:g}",
            "model": {"name": "latent_ode", **SMALL},
            "data": data | {"thin": 0.5},
            "task": {"name": "forecasting", "kl_weight": weight},
            "trainer": TRAINER,
        }
        run = esszoo.train(recipe, out_dir=str(tmp_path / "runs"))
        with open(run.path / "metrics.csv") as handle:
            row = list(csv.DictReader(handle))[-1]
        losses[weight] = float(row["train_loss"])
        assert float(row["function_evaluations"]) > 0
    assert losses[1.0] > losses[0.0]  # the same seed, the KL added
    with open(run.path / "scores.csv") as handle:
        rows = {r["predictor"] for r in csv.DictReader(handle)}
    assert "baseline: linear interpolation + autoregression" in rows
    # the trained predictor, in physical units: a gap is a gap with or without its mask
    predictor = esszoo.load(run.path)
    test = series_data(
        nino, inputs=["sst"], targets=["sst"], thin=0.5, missing="keep", **WINDOW
    ).test
    with torch.no_grad():
        assert torch.allclose(predictor(test.x), predictor(test.x, test.mask))
        filled = predictor(test.x.nan_to_num(float(test.x[..., 0].nanmean())))
        assert not torch.allclose(predictor(test.x), filled)
    # predictions on the real file, whose months are all there, and with gaps
    gappy = nino.copy(deep=True)
    gappy["sst"][::3] = np.nan
    gappy.to_netcdf(tmp_path / "gappy.nc")
    for source in ("nino.nc", "gappy.nc"):
        out = tmp_path / f"predicted_{source}"
        status, _, err = run_cli(
            ["predict", run.path, "--data", tmp_path / source, "--out", out], capsys
        )
        assert status == 0, err
        forecast = xr.load_dataset(out)["sst"]
        assert forecast.dims == ("time", "lead_time") and bool(forecast[-10:].notnull().all())


def test_forecasts_of_an_irregular_past_carry_draws_with_uncertainty(tmp_path, nino, capsys):
    nino.to_netcdf(tmp_path / "nino.nc")
    recipe = {
        "name": "drawn",
        "model": {"name": "latent_ode", **SMALL},
        "data": {"source": str(tmp_path / "nino.nc"), "inputs": ["sst"], "window": WINDOW,
                 "thin": 0.5},
        "task": {"name": "forecasting"},
        "trainer": TRAINER,
        # Bayesian weights, and z_0 drawn from q(z_0 | x)
        "uncertainty": {"method": "bayes", "samples": 3},
    }  # fmt: skip
    run = esszoo.train(recipe, out_dir=str(tmp_path / "runs"))
    with open(run.path / "uncertainty.csv") as handle:
        model, climatology = csv.DictReader(handle)
    assert float(model["spread"]) > 0 and climatology["method"] == "climatology"
    out = tmp_path / "drawn.nc"
    status, _, err = run_cli(
        ["predict", run.path, "--data", tmp_path / "nino.nc", "--out", out], capsys
    )
    assert status == 0, err
    predicted = xr.load_dataset(out)
    assert predicted["sst_draws"].dims == ("realization", "time", "lead_time")
    assert float(predicted["sst_spread"][-10:].min()) > 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.thin=1.5", "data.thin"),
        ("data.missing=fill", "data.missing"),
        ("model.observation_std=0", "positive observation_std"),
        ("model.encoder_solver=rk5", "unknown ODE solver 'rk5'"),
    ],
)
def test_bad_settings_of_irregular_series_get_one_clear_line(override, message, tmp_path, capsys):
    recipe = ROOT / "recipes" / "forecast_nino12_latent_ode.yaml"
    status, _, err = run_cli(
        ["train", recipe, override, "trainer.max_epochs=1", f"out_dir={tmp_path}"], capsys
    )
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_the_ode_rnn_variants_are_checked():
    with pytest.raises(ModelError, match="ode_rnn has no variant 'lstm'"):
        esszoo.create_model("ode_rnn", in_channels=1, out_channels=1, variant="lstm")
