"""Inpainting: real gap patterns, classical baselines, Liu's losses, scores on the holes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import xarray as xr

import esszoo
from esszoo.data.dataset import SplitData, Table
from esszoo.data.grid import Grid
from esszoo.data.inpainting import inpainting_data
from esszoo.data.masks import gap_patterns
from esszoo.data.source import open_source
from esszoo.data.splits import Split
from esszoo.data.variables import Variable
from esszoo.options import TrainerOptions
from esszoo.tasks import infilling
from esszoo.tasks.inpainting import InpaintingTask, total_variation

LAT = np.linspace(-5, 5, 12)
LON = np.arange(0, 360, 5.0)


def test_gap_patterns_are_real_shapes_and_reproducible():
    first = gap_patterns(LAT, LON, 6, seed=3)
    again = gap_patterns(LAT, LON, 6, seed=3)
    assert first.shape == (6, 12, 72) and np.array_equal(first, again)
    assert 0.0 < first.mean() < 0.9
    assert not np.array_equal(first[0], first[1])  # every draw its own place
    clouds = gap_patterns(LAT, LON, 20, sources=("cloud",), seed=0)
    covered = clouds.any(axis=1).mean(axis=1)
    assert (covered < 0.6).all()  # the satellite sees one sector of the band


def test_ostia_fields_get_gaps_over_ocean_with_truth_kept():
    data = inpainting_data(
        open_source("ostia"), variable="surface_temperature", train_gaps=2, eval_gaps=2
    )
    test = data.test
    hidden = (test.mask == 0) & torch.isfinite(test.y)
    assert hidden.float().mean() > 0.1  # ocean points hidden, their truth known
    assert torch.isnan(test.x[hidden]).all()
    assert torch.equal(test.x[test.mask > 0], test.y[test.mask > 0])
    assert data.split.labels["test"][1].startswith("2010-09")
    assert len(test) == 2 * (data.split.ranges["test"][1] - data.split.ranges["test"][0])


def toy(fields: np.ndarray, mask: np.ndarray, times=None) -> SplitData:
    """A SplitData whose three splits are the given fields (N, 1, H, W) and masks."""
    lat, lon = np.linspace(-10, 10, fields.shape[-2]), np.linspace(0, 350, fields.shape[-1])
    x = torch.from_numpy(np.where(mask, fields, np.nan)).float()
    table = Table(
        x,
        torch.from_numpy(fields).float(),
        torch.from_numpy(mask).float(),
        {"time": times} if times is not None else {},
    )
    split = Split("time", {s: (0, len(fields)) for s in ("train", "val", "test")}, {})
    return SplitData(
        [Variable("sst", "K")],
        [Variable("sst", "K")],
        {"train": table, "val": table, "test": table},
        split,
        ("time", "lat", "lon"),
        {},
        grid=Grid.of(
            xr.DataArray(fields[0, 0], coords={"lat": lat, "lon": lon}, dims=("lat", "lon")),
            ("lat", "lon"),
        ),
    )


def test_linear_interpolation_recovers_a_linear_field_in_its_holes():
    lat, lon = np.meshgrid(np.linspace(-10, 10, 9), np.linspace(0, 350, 36), indexing="ij")
    field = (280 + 0.5 * lat)[None, None] * np.ones((2, 1, 1, 1))
    mask = np.ones_like(field, dtype=bool)
    mask[:, :, 3:6, 10:20] = False
    data = toy(field, mask)
    filled = infilling.interpolation(data, "linear")(data.test).numpy()
    assert np.allclose(filled, field, atol=1e-6)


def test_dineof_fills_a_low_rank_record():
    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(2, 1, 8, 20))
    amplitudes = rng.normal(size=(30, 2))
    fields = 290 + np.einsum("tk,kchw->tchw", amplitudes, patterns)
    mask = rng.random(fields.shape) > 0.3
    data = toy(fields, mask)
    filled = infilling.dineof(data)(data.test).numpy()
    hidden = ~mask
    error = np.sqrt(np.mean((filled[hidden] - fields[hidden]) ** 2))
    anomaly = np.sqrt(np.mean((fields - fields.mean(0)) ** 2))  # the error of the mean field
    assert error < 0.1 * anomaly


def test_dineof_never_fills_a_time_from_its_own_copies():
    # a test field outside the training span, scored twice under complementary gaps: one
    # matrix holding both copies would recover it almost exactly; a record has it once
    rng = np.random.default_rng(1)
    train = 290 + rng.normal(size=(20, 1, 1, 1)) * rng.normal(size=(1, 1, 6, 10))
    field = 290 + rng.normal(size=(1, 1, 6, 10))
    half = np.zeros((1, 1, 6, 10), dtype=bool)
    half[..., :, :5] = True
    test = np.concatenate([field, field])
    mask = np.concatenate([half, ~half])
    times = np.array(["2001-01-15"] * 2, dtype="datetime64[ns]")
    data = toy(train, np.ones_like(train, dtype=bool))
    data.tables["test"] = Table(
        torch.from_numpy(np.where(mask, test, np.nan)).float(),
        torch.from_numpy(test).float(),
        torch.from_numpy(mask).float(),
        {"time": times},
    )
    filled = infilling.dineof(data)(data.test).numpy()
    error = np.sqrt(np.mean((filled[~mask] - test[~mask]) ** 2))
    assert error > 0.5  # the noise under each hole stays unknown


def test_climatology_is_the_training_mean_of_the_same_month():
    times = np.array(["2001-01-15", "2001-02-15", "2002-01-15"], dtype="datetime64[ns]")
    fields = np.stack([np.full((1, 3, 4), v) for v in (1.0, 5.0, 3.0)])
    data = toy(fields, np.ones_like(fields, dtype=bool), times)
    predicted = infilling.climatology(data)(data.test)
    assert predicted[0].unique().tolist() == [2.0]  # January: (1 + 3) / 2
    assert predicted[1].unique().tolist() == [5.0]


def test_climatology_gives_points_never_trained_on_the_mean_of_all_points():
    fields = np.full((2, 1, 3, 4), 290.0)
    fields[:, :, 0, 0] = np.nan  # never seen in training, but observed later
    fields[:, :, 2, :] = 294.0
    data = toy(fields, np.isfinite(fields))
    predicted = infilling.climatology(data)(data.test)
    assert predicted[0, 0, 0, 0].item() == pytest.approx(np.nanmean(fields))  # not 0 K
    assert predicted[0, 0, 2, 1].item() == pytest.approx(294.0)


def test_model_output_enters_as_anomalies_on_the_observed_ocean():
    from esszoo.data.inpainting import _model_fields

    # the model on a coarse grid, with a coarse coastline where the observations see ocean
    model_lat, model_lon = np.linspace(-6, 6, 5), np.arange(0, 360, 3.0)
    rng = np.random.default_rng(0)
    values = 300 + rng.normal(size=(4, 5, 120))
    values[:, 2, 10:14] = np.nan  # model land
    times = np.array(["2015-01-15", "2015-02-15", "2015-03-15", "2015-04-15"], "datetime64[ns]")
    model = xr.Dataset(
        {"tos": (("time", "lat", "lon"), values, {"units": "K"})},
        coords={"time": times, "lat": model_lat, "lon": model_lon},
    )
    observed_mean = np.full((len(LAT), len(LON)), 295.0)
    observed_mean[:, 0] = np.nan  # land of the observations
    lat, lon = np.meshgrid(LAT, LON, indexing="ij")  # of every point of the observations
    fields, field_times = _model_fields(model, "tos", "time", lat, lon, observed_mean)
    assert fields.shape == (4, len(LAT), len(LON)) and np.array_equal(field_times, times)
    ocean = np.isfinite(observed_mean)
    assert np.isfinite(fields[:, ocean]).all()  # no hole left by the model's coast
    assert np.isnan(fields[:, ~ocean]).all()
    assert np.allclose(fields.mean(0)[ocean], 295.0, atol=1e-3)  # the observations' mean
    assert fields.std(0)[ocean].min() > 0.1  # the model's own variability


def test_scores_count_only_hidden_points_with_known_truth():
    fields = np.full((2, 1, 6, 8), 290.0)
    fields[:, :, 0, :] = np.nan  # land
    mask = np.isfinite(fields)
    mask[:, :, 2:4, 2:6] = False
    data = toy(fields, mask)
    task = InpaintingTask(torch.nn.Identity(), InpaintingTask.Options(), TrainerOptions())
    perfect = torch.from_numpy(np.nan_to_num(fields, nan=-1e9)).float()
    scores = task.score(perfect, data.test.y, data, data.test)
    assert scores["rmse"] == 0 and scores["area_mean_err"] == 0
    off = perfect.clone()
    off[:, :, 2:4, 2:6] += 2.0  # only the holes are wrong, by 2 K
    scores = task.score(off, data.test.y, data, data.test)
    assert scores["rmse"] == pytest.approx(2.0) and scores["bias"] == pytest.approx(2.0)
    assert scores["area_mean_err"] > 0


def test_total_variation_sees_only_the_dilated_holes():
    field = torch.zeros(1, 1, 8, 8)
    field[..., :, 4:] = 1.0  # a step
    mask = torch.ones(1, 1, 8, 8)
    known = torch.ones(1, 1, 8, 8)
    assert total_variation(field, mask, known) == 0  # no hole, nothing counted
    mask[..., 2:5, 3:5] = 0
    assert total_variation(field, mask, known) > 0


def test_perceptual_terms_without_vgg_weights_are_a_clear_error():
    from esszoo.errors import RecipeError

    spec = InpaintingTask.Options(loss_weights={"perceptual": 0.05})
    with pytest.raises(RecipeError, match="VGG-16 weights"):
        InpaintingTask(torch.nn.Identity(), spec, TrainerOptions())


def test_a_bayesian_pconv_unet_fills_ostia_end_to_end_with_draws_and_a_flag(tmp_path):
    from esszoo.prediction import predict_file
    from esszoo.training import train
    from tests.conftest import write_recipe

    recipe = {
        "name": "fill",
        "model": {
            "name": "pconv_unet",
            "config": "kadow2020",
            "width": 4,
            "encoder_layers": 2,
            "padding": "earth",
        },
        "data": {
            "source": "ostia",
            "inputs": ["surface_temperature"],
            "gaps": {"train": 1, "eval": 1},
        },
        "task": {"name": "inpainting", "anomalies": True},
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False},
        # its partial convolutions made Bayesian (Bayes by Backprop), 3 draws
        "uncertainty": {"method": "bayes", "samples": 3},
        "out_dir": str(tmp_path / "runs"),
    }
    run_dir = train(write_recipe(tmp_path / "fill.yaml", recipe))
    net = esszoo.load(run_dir).net
    assert any(
        type(getattr(m, "geometry", None)).__name__ == "PartialConv2d" for m in net.modules()
    )
    with open(run_dir / "uncertainty.csv") as handle:
        drawn, _ = csv.DictReader(handle)
    with open(run_dir / "scores.csv") as handle:
        scored = next(csv.DictReader(handle))
    # the draws' mean is judged where the point scores judge the model: the hidden points
    assert float(drawn["spread"]) > 0
    assert abs(float(drawn["rmse_of_mean"]) - float(scored["rmse"])) < 0.3 * float(scored["rmse"])
    with open(run_dir / "spread_by_distance.csv") as handle:
        bins = list(csv.DictReader(handle))
    assert bins[0]["distance"] == "0-2" and all(int(b["points"]) > 0 for b in bins)
    assert (run_dir / "spread.png").is_file()
    from PIL import Image

    for name in ("reconstructions.png", "reconstructions_2.png"):  # a file per test case
        width, height = Image.open(run_dir / name).size
        assert width < 2500 and height < 1500, (name, width, height)
    scores = (run_dir / "scores.csv").read_text()
    for baseline in ("climatology", "linear interpolation", "DINEOF"):
        assert baseline in scores
    fields = open_source("ostia").isel(time=slice(-3, None)).load()
    values = fields["surface_temperature"].values
    for t in range(3):
        values[t, 4:9, 60 + 40 * t : 120 + 40 * t] = np.nan
    fields.to_netcdf(tmp_path / "gappy.nc")
    out = xr.load_dataset(predict_file(run_dir, tmp_path / "gappy.nc", tmp_path / "filled.nc"))
    filled = out["surface_temperature_filled"].values.astype(bool)
    assert filled.sum() > 0 and np.isfinite(out["surface_temperature"].values[filled]).all()
    land = np.isnan(values).all(axis=0)
    assert np.isnan(out["surface_temperature"].values[:, land]).all()  # land stays missing
    draws = out["surface_temperature_draws"]
    assert draws.dims[0] == "realization" and draws.sizes["realization"] == 3
    spread = out["surface_temperature_spread"].values
    assert (spread[filled] > 0).any() and np.isnan(draws.values[:, :, land]).all()
