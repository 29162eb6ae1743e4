"""`esszoo suggest`: the data decide the ranking (fields or series, gaps that move or land
that never changes, grid sizes), each model with its reasons and the search to confirm."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from esszoo.automl.suggest import search_space, suggest
from esszoo.errors import DataError, RecipeError
from tests.conftest import run_cli


def fields(tmp_path, shape=(40, 12, 24), moving_gaps=True):
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    values[:, :2, :5] = np.nan  # land: missing at every time
    if moving_gaps:
        for t in range(shape[0]):
            values[t, 5:8, t % 10 : t % 10 + 4] = np.nan  # a cloud that moves
    times = np.datetime64("2020-01-01") + np.arange(shape[0]).astype("timedelta64[D]")
    data = xr.Dataset(
        {"sst": (("time", "lat", "lon"), values)},
        coords={
            "time": times,
            "lat": np.linspace(-30, 30, shape[1]),
            "lon": np.arange(shape[2]) * 360.0 / shape[2],
        },
    )
    path = tmp_path / "fields.nc"
    data.to_netcdf(path)
    return path


def test_inpainting_of_real_sst_puts_partial_convolutions_first_and_says_why():
    found, ranked = suggest("ostia", "inpainting")
    assert found.kind == "fields" and found.grid == (18, 432) and found.wraps
    assert found.fixed == pytest.approx(found.missing) and found.gaps == pytest.approx(0, abs=1e-9)
    assert ranked[0].model == "pconv_unet"
    assert any("missing at every time" in reason for reason in ranked[0].reasons)
    assert search_space(ranked)["space"]["model.name"][0] == "pconv_unet"


def test_gaps_that_move_are_measured_apart_from_land(tmp_path):
    found, ranked = suggest(fields(tmp_path), "inpainting")
    land = 2 * 5 / (12 * 24)
    assert found.fixed == pytest.approx(land)
    assert found.gaps == pytest.approx(3 * 4 / (12 * 24), rel=0.01)
    assert any("gaps that move in time" in reason for reason in ranked[0].reasons)
    _, still = suggest(fields(tmp_path, moving_gaps=False), "inpainting")
    assert any("data.gaps" in reason for reason in still[0].reasons)


def test_a_series_with_gaps_ranks_the_latent_ode_first(tmp_path):
    found, ranked = suggest("nino12", "forecasting")
    assert found.kind == "series" and ranked[0].model == "lstm"
    nino = xr.Dataset(
        {"sst": ("time", np.where(np.arange(300) % 4 == 0, np.nan, 20.0))},
        coords={"time": np.arange(300).astype("datetime64[M]")},
    )
    nino.to_netcdf(tmp_path / "gappy.nc")
    _, gappy = suggest(tmp_path / "gappy.nc", "forecasting")
    assert gappy[0].model == "latent_ode" and "25.0% missing" in gappy[0].reasons[0]


def test_a_grid_below_a_model_s_minimum_sends_it_last(tmp_path):
    _, ranked = suggest(fields(tmp_path, shape=(40, 12, 24)), "classification")
    assert {row.model for row in ranked[-2:]} == {"lenet5", "densenet121"}
    assert all("at least" in row.reasons[0] for row in ranked[-2:])
    assert "lenet5" not in search_space(ranked)["space"]["model.name"]


def test_a_task_the_data_cannot_serve_and_an_unknown_task_are_refused():
    with pytest.raises(DataError, match="fields on a grid; these data are series"):
        suggest("nino12", "segmentation")
    with pytest.raises(RecipeError, match="no task 'segmentaton'"):
        suggest("nino12", "segmentaton")


def test_the_command_prints_the_ranking_and_the_search_to_confirm_it(capsys):
    status, out, err = run_cli(["suggest", "ostia", "--task", "inpainting"], capsys)
    assert status == 0, err
    assert "1. pconv_unet:" in out and "esszoo search RECIPE --budget 20" in out
    assert "model.name: [pconv_unet, unet]" in out
