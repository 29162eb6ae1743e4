"""Uncertainty as a recipe switch: the probabilistic scores mean what they say, a run with
MC dropout or Bayes by Backprop scores its draws beside a climatological ensemble, and
`esszoo predict` writes a mean, a spread and the draws."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scoringrules
import torch
import xarray as xr

import esszoo
from esszoo.errors import ModelError, RecipeError
from esszoo.layers.bayesian import BayesianLayer
from esszoo.options import UncertaintyOptions
from esszoo.recipe import load_recipe
from esszoo.uncertainty import check_model, draws, probabilistic_scores
from tests.conftest import run_cli, tiny_recipe_dict, write_recipe


def test_a_calibrated_ensemble_covers_its_intervals_and_a_narrow_one_does_not():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(20000, generator=generator)
    calibrated = torch.randn(50, 20000, generator=generator)
    scores = probabilistic_scores(calibrated, truth)
    # the empirical interval of n draws spans (n - 1) / (n + 1) of the level's probability
    assert scores["coverage_50"] == pytest.approx(0.5 * 49 / 51, abs=0.015)
    assert scores["coverage_90"] == pytest.approx(0.9 * 49 / 51, abs=0.015)
    assert scores["spread_skill"] == pytest.approx(1.0, abs=0.03)
    expected = scoringrules.crps_ensemble(
        truth.double().numpy(), calibrated.double().numpy(), m_axis=0
    )
    assert scores["crps"] == pytest.approx(float(np.mean(expected)))
    narrow = probabilistic_scores(0.3 * calibrated, truth)
    assert narrow["coverage_90"] < 0.5 and narrow["spread_skill"] < 0.4
    assert narrow["crps"] > scores["crps"]


def test_points_without_truth_are_left_out():
    truth = torch.tensor([0.0, float("nan"), 1.0])
    ensemble = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    assert probabilistic_scores(ensemble, truth)["rmse_of_mean"] == 0.0


def test_draws_are_reproducible_and_leave_the_global_generator_alone():
    net = esszoo.create_model("mlp", in_channels=3, out_channels=1, dropout=0.5).eval()
    x = torch.randn(8, 3)
    options = UncertaintyOptions(method="mc_dropout", samples=4, seed=7)
    torch.manual_seed(123)
    first = torch.stack(draws(lambda model: model(x), [net], options))
    after = torch.rand(1)
    torch.manual_seed(123)
    second = torch.stack(draws(lambda model: model(x), [net], options))
    assert torch.equal(first, second) and torch.equal(torch.rand(1), after)
    assert not torch.equal(first[0], first[1])  # each draw a new dropout mask
    assert not net.training and all(not m.training for m in net.modules())


def test_a_model_that_cannot_draw_gets_one_clear_line():
    mlp = esszoo.create_model("mlp", in_channels=3, out_channels=1)
    with pytest.raises(ModelError, match="no dropout for uncertainty.method mc_dropout"):
        check_model(mlp, "mc_dropout", "mlp")
    with pytest.raises(ModelError, match="no Bayesian layers"):
        check_model(mlp, "bayes", "mlp")
    with pytest.raises(RecipeError, match="uncertainty.method"):
        load_recipe("recipes/emulate_precip.yaml", ["uncertainty.method=ensembles"])


def test_mc_dropout_on_an_emulator_scores_draws_and_predicts_them(tmp_path, station_file, capsys):
    recipe = tiny_recipe_dict(
        tmp_path / "runs",
        name="mc",
        **{
            "model.dropout": 0.1,
            "uncertainty": {"method": "mc_dropout", "samples": 8},
            "trainer.max_epochs": 1,
        },
    )
    status, _, err = run_cli(["train", write_recipe(tmp_path / "mc.yaml", recipe)], capsys)
    assert status == 0, err
    run_dir = tmp_path / "runs" / "mc"
    with open(run_dir / "uncertainty.csv") as handle:
        model, climate = csv.DictReader(handle)
    assert model["method"] == "mc_dropout" and climate["predictor"].endswith(
        "climatological ensemble"
    )
    assert float(model["crps"]) < float(climate["crps"]) and model["loses_to"] == ""
    assert 0 < float(model["coverage_50"]) <= float(model["coverage_90"]) <= 1
    assert (run_dir / "reliability.png").stat().st_size > 0
    out = tmp_path / "predicted.nc"
    status, _, err = run_cli(["predict", run_dir, "--data", station_file, "--out", out], capsys)
    assert status == 0, err
    predicted = xr.load_dataset(out)
    assert predicted["pr_draws"].dims[0] == "realization" and predicted.sizes["realization"] == 8
    assert np.allclose(predicted["pr_draws"].mean("realization"), predicted["pr"])
    assert np.allclose(predicted["pr_draws"].std("realization", ddof=1), predicted["pr_spread"])
    assert float(predicted["pr_spread"].mean()) > 0
    assert predicted["pr"].attrs["cell_methods"] == "realization: mean"


def test_method_bayes_makes_the_model_bayesian_and_its_checkpoint_says_so(tmp_path, capsys):
    recipe = tiny_recipe_dict(
        tmp_path / "runs",
        name="bayes",
        **{"uncertainty": {"method": "bayes", "samples": 4}, "trainer.max_epochs": 1},
    )
    status, _, err = run_cli(["train", write_recipe(tmp_path / "b.yaml", recipe)], capsys)
    assert status == 0, err
    net = esszoo.load(tmp_path / "runs" / "bayes").net
    assert sum(isinstance(m, BayesianLayer) for m in net.modules()) == 3  # two hidden, one out
    assert (tmp_path / "runs" / "bayes" / "uncertainty.csv").is_file()


def test_an_ensemble_trains_seeded_members_and_predicts_a_draw_per_member(
    tmp_path, station_file, capsys
):
    recipe = tiny_recipe_dict(
        tmp_path / "runs",
        name="ens",
        **{"uncertainty": {"method": "ensemble", "members": 2}, "trainer.max_epochs": 1},
    )
    status, _, err = run_cli(["train", write_recipe(tmp_path / "e.yaml", recipe)], capsys)
    assert status == 0, err
    run_dir = tmp_path / "runs" / "ens"
    seeds = [
        esszoo.load(folder).description["training"]["seed"]
        for folder in (run_dir, run_dir / "members" / "member_1")
    ]
    assert seeds == [0, 1]
    with open(run_dir / "uncertainty.csv") as handle:
        model, _ = csv.DictReader(handle)
    assert model["method"] == "ensemble" and model["samples"] == "2"
    out = tmp_path / "predicted.nc"
    status, _, err = run_cli(["predict", run_dir, "--data", station_file, "--out", out], capsys)
    assert status == 0, err
    drawn = xr.load_dataset(out)["pr_draws"]
    assert drawn.sizes["realization"] == 2
    assert not np.allclose(drawn.isel(realization=0), drawn.isel(realization=1))
    # a member missing: one clear line, not a silent ensemble of fewer
    import shutil

    shutil.rmtree(run_dir / "members" / "member_1")
    status, _, err = run_cli(["predict", run_dir, "--data", station_file, "--out", out], capsys)
    assert status == 2 and "member_1" in err and len(err.strip().splitlines()) == 1


def test_a_field_task_draws_maps_on_its_grid(tmp_path):
    from esszoo.data.source import open_source
    from esszoo.prediction import predict_file

    ostia = open_source("ostia").load()
    ostia.to_netcdf(tmp_path / "ostia.nc")
    recipe = {
        "name": "sst_bayes",
        "model": {"name": "unet", "width": 2, "padding": "earth"},
        "data": {
            "source": str(tmp_path / "ostia.nc"),
            "inputs": ["surface_temperature"],
            "window": {"past": 2, "future": 1},
        },
        "task": {"name": "translation"},
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False, "precision": "32"},
        "uncertainty": {"method": "bayes", "samples": 3},
    }
    run = esszoo.train(recipe, out_dir=str(tmp_path / "runs"))
    with open(run.path / "uncertainty.csv") as handle:
        model, _ = csv.DictReader(handle)
    assert float(model["spread"]) > 0 and 0 <= float(model["coverage_90"]) <= 1
    predicted = xr.load_dataset(predict_file(run.path, tmp_path / "ostia.nc", tmp_path / "p.nc"))
    name = next(n for n in predicted.data_vars if n.endswith("_draws"))
    drawn, mean = predicted[name], predicted[name.removesuffix("_draws")]
    assert drawn.dims[0] == "realization" and drawn.shape[1:] == mean.shape
    assert {"lat", "lon"} <= set(mean.dims)
    land = np.isnan(mean.values)
    assert land.any() and np.isnan(drawn.values[:, land]).all()  # land stays missing


def test_uncertainty_refuses_data_left_on_disk(tmp_path):
    from esszoo.data.source import open_source
    from esszoo.errors import RunError

    store = tmp_path / "ostia.zarr"
    open_source("ostia").isel(time=slice(0, 24)).to_zarr(store, consolidated=False)
    recipe = {
        "name": "streamed",
        "model": {"name": "unet", "width": 2, "dropout": 0.1},
        "data": {"source": str(store), "inputs": ["surface_temperature"],
                 "window": {"past": 2, "future": 1}, "stream": True, "stream_workers": 0},
        "task": {"name": "translation"},
        "trainer": {"max_epochs": 1, "batch_size": 4, "progress_bar": False},
        "uncertainty": {"method": "mc_dropout"},
    }  # fmt: skip
    with pytest.raises(RunError, match="uncertainty needs the data in memory"):
        esszoo.train(recipe, out_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs" / "streamed" / "model.safetensors").exists()


def test_an_ensemble_trains_its_members_with_every_process_of_a_ddp_run(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    recipe = tiny_recipe_dict(
        tmp_path / "runs",
        name="pair",
        **{"trainer.max_epochs": 1, "uncertainty": {"method": "ensemble", "members": 2}},
    )
    path = write_recipe(tmp_path / "pair.yaml", recipe)
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node=2",
               str(bin_dir / "esszoo"), "train", str(path), "trainer.devices=2",
               "trainer.accelerator=cpu", "trainer.batch_size=128"]  # fmt: skip
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = tmp_path / "runs" / "pair"
    assert (run_dir / "members" / "member_1" / "model.safetensors").is_file()
    with open(run_dir / "uncertainty.csv") as handle:
        model, _ = csv.DictReader(handle)
    assert model["method"] == "ensemble" and int(model["samples"]) == 2
    assert float(model["spread"]) > 0
