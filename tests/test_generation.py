"""The generation task: a VAE and a DCGAN trained on real radar scenes, their samples, the
batched power spectrum, collapse, export and the task's bad inputs."""

from __future__ import annotations

import contextlib
import csv
import io

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import write_recipe

import esszoo
from esszoo.data.source import open_source
from esszoo.errors import EsszooError, ModelError, RecipeError, RunError
from esszoo.recipe import load_recipe
from esszoo.sampling import sample_run
from esszoo.training import train
from esszoo.verification import radial_spectrum


@pytest.fixture(scope="module")
def radar(tmp_path_factory):
    """A day and a half of real DWD radar at 8 km (23 x 28 points), rain in every split."""
    folder = tmp_path_factory.mktemp("generation")
    source = open_source("radolan")
    scenes = source.sel(time=slice("2018-05-13T12", "2018-05-14T23:55"))
    scenes = scenes.coarsen(y=8, x=8, boundary="trim").mean()
    scenes["rainfall_amount"].attrs = source["rainfall_amount"].attrs
    scenes.to_netcdf(folder / "radar.nc")
    return folder


def recipe(folder, model: dict, **task) -> dict:
    return {
        "name": model["name"],
        "out_dir": str(folder / "runs"),
        "model": model,
        "data": {
            "source": str(folder / "radar.nc"),
            "inputs": ["rainfall_amount"],
            "split": {"dim": "time", "train": 0.6, "val": 0.2, "test": 0.2},
        },
        "task": {"name": "generation", "transform": "log1p"} | task,
        "trainer": {
            "max_epochs": 2,
            "batch_size": 32,
            "lr": 1e-3,
            "progress_bar": False,
            "precision": "32",
            "early_stopping": None,
        },
    }


VAE = {"name": "vae", "width": 4, "depth": 2, "latent_channels": 2}
DCGAN = {"name": "dcgan", "width": 4, "noise": 8}


@pytest.fixture(scope="module")
def runs(radar):
    found = {}
    for model, task in ((VAE, {}), (DCGAN, {"discriminator_steps": 2, "label_smoothing": 0.1})):
        found[model["name"]] = train(write_recipe(radar / "r.yaml", recipe(radar, model, **task)))
    return found


def rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", ["vae", "dcgan"])
def test_a_generator_is_scored_beside_real_fields_and_spectral_noise(runs, name):
    scores = {row["predictor"]: row for row in rows(runs[name] / "scores.csv")}
    assert set(scores) == {
        name,
        "baseline: training fields drawn at random",
        "baseline: Gaussian fields of the training spectrum (pysteps)",
    }
    for row in scores.values():
        assert float(row["w1"]) >= 0 and float(row["spectrum_error"]) >= 0
        assert float(row["std_ratio"]) > 0
    # pysteps' noise has the training spectrum: within a factor of 10 of the test days'
    noise = scores["baseline: Gaussian fields of the training spectrum (pysteps)"]
    assert float(noise["spectrum_error"]) < 1.0
    assert len({row["w1"] for row in scores.values()}) == 3  # three different draws
    assert (runs[name] / "samples.png").stat().st_size > 0


def test_a_gan_logs_both_players_and_a_vae_its_elbo(runs):
    gan = rows(runs["dcgan"] / "metrics.csv")
    for key in ("g_loss", "d_loss", "d_real", "d_fake", "val_loss", "val_spread"):
        assert all(np.isfinite(float(row[key])) for row in gan), key
    assert 0 < float(gan[-1]["d_real"]) < 1
    vae = rows(runs["vae"] / "metrics.csv")
    assert all(float(row["train_loss"]) > 0 for row in vae)


@pytest.mark.parametrize("name", ["vae", "dcgan"])
def test_samples_are_written_with_the_grid_coordinates(runs, radar, name, tmp_path):
    path, picture = sample_run(runs[name], 5, tmp_path / f"{name}.nc", seed=1)
    samples = xr.load_dataset(path)
    field = samples["rainfall_amount"]
    assert field.dims == ("sample", "y", "x") and field.shape == (5, 23, 28)
    assert samples["latitudes"].dims == ("y", "x")  # RADOLAN's 2-D latitudes, kept
    trained_on = xr.load_dataset(radar / "radar.nc")
    np.testing.assert_allclose(samples["latitudes"], trained_on["latitudes"], atol=1e-6)
    assert field.attrs["units"] == "kg" and (field >= 0).all()  # expm1 of log1p, clipped
    assert float(field.std("sample").mean()) > 0  # the draws differ
    again = xr.load_dataset(sample_run(runs[name], 5, tmp_path / "again.nc", seed=1)[0])
    xr.testing.assert_equal(again["rainfall_amount"], field)  # the seed fixes them
    assert picture.stat().st_size > 0


def test_a_vae_walks_between_two_real_fields(runs, radar, tmp_path):
    path, _ = sample_run(
        runs["vae"], 6, tmp_path / "walk.nc", between=(str(radar / "radar.nc"), 3, 40)
    )
    walk = xr.load_dataset(path)["rainfall_amount"]
    assert walk.shape == (6, 23, 28)
    steps = [float(abs(walk[k + 1] - walk[k]).mean()) for k in range(5)]
    assert max(steps) < 3 * (sum(steps) / 5)  # even steps along the line
    with pytest.raises(RunError, match="no encoder"):
        sample_run(runs["dcgan"], 3, tmp_path / "no.nc", between=(str(radar / "radar.nc"), 0, 1))


def test_sampling_refuses_what_is_not_a_generation_run(trained_run, runs, tmp_path):
    with pytest.raises(RunError, match="esszoo sample draws from generation runs"):
        sample_run(trained_run, 3, tmp_path / "x.nc")
    with pytest.raises(RunError, match="at least one"):
        sample_run(runs["vae"], 0, tmp_path / "x.nc")


def test_a_gan_exports_its_generator_in_physical_units(runs, tmp_path):
    from esszoo.export import export_run, run_torchscript

    path, error = export_run(runs["dcgan"], "torchscript", tmp_path / "g.pt")
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    fields = run_torchscript(path, z)
    assert fields.shape == (4, 1, 23, 28) and error < 1e-3
    assert (fields > -1e-6).all()  # amounts, through expm1


def test_the_batched_power_spectrum_is_pysteps_rapsd():
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps.utils.spectral import rapsd
    generator = torch.Generator().manual_seed(0)
    for shape in [(23, 28), (32, 32), (47, 57), (20, 9)]:
        fields = torch.rand(3, *shape, generator=generator, dtype=torch.float64)
        ours = radial_spectrum(fields)
        for field, spectrum in zip(fields, ours, strict=True):
            np.testing.assert_allclose(spectrum.numpy(), rapsd(field.numpy(), np.fft), rtol=1e-10)


def test_a_collapsed_generator_stops_the_run_and_keeps_its_checkpoint(radar, monkeypatch, capsys):
    """Validation's draws vary for the first five batches (the sanity check's and the first
    epoch's), then are all the same field: the run stops before its last epoch."""
    from esszoo.models.generative import dcgan

    generate, drawn = dcgan.DCGAN.sample, {"validation": 0}

    def varied_then_the_same(self, count, grid=None, generator=None):
        if self.training:
            return generate(self, count, grid, generator)
        drawn["validation"] += 1
        if drawn["validation"] <= 5:
            return torch.randn(count, 1, *self.grid)
        return torch.zeros(count, 1, *self.grid)

    monkeypatch.setattr(dcgan.DCGAN, "sample", varied_then_the_same)
    spec = recipe(radar, DCGAN)
    spec["name"], spec["trainer"]["max_epochs"] = "collapsed", 6
    run_dir = train(write_recipe(radar / "c.yaml", spec))
    assert "the generator collapsed" in capsys.readouterr().out
    assert len(rows(run_dir / "metrics.csv")) < 6
    assert (run_dir / "model.safetensors").is_file()


def test_generation_bad_inputs_get_one_line(radar, tmp_path):
    for change, match in (
        ({"discriminator_steps": 0}, "discriminator_steps"),
        ({"label_smoothing": 0.6}, "label_smoothing"),
        ({"transform": "sqrt"}, "transform"),
    ):
        path = write_recipe(tmp_path / "bad.yaml", recipe(radar, DCGAN, **change))
        with pytest.raises(RecipeError, match=match):
            load_recipe(path)
    unet = recipe(radar, {"name": "unet", "width": 2})
    with pytest.raises(
        RecipeError, match="not a model of the generation task; choose one of: dcgan, vae"
    ):
        train(write_recipe(tmp_path / "unet.yaml", unet))
    paired = recipe(radar, VAE)
    paired["data"]["window"] = {"past": 2, "future": 1}
    with pytest.raises(EsszooError):
        train(write_recipe(tmp_path / "window.yaml", paired))


def test_dcgan_counts_the_papers_two_networks_and_draws_any_grid():
    model = esszoo.create_model("dcgan", channels=3, grid=(64, 64), noise=100, width=64)
    generator = sum(p.numel() for p in model.generator.parameters())
    discriminator = sum(p.numel() for p in model.discriminator.parameters())
    assert (generator, discriminator) == (3_576_704, 2_765_568)
    odd = esszoo.create_model("dcgan", channels=1, grid=(47, 57), noise=8, width=4)
    fields = odd.sample(2)
    assert fields.shape == (2, 1, 47, 57) and fields.abs().max() <= 1
    assert odd.discriminate(fields).shape == (2,)
    with pytest.raises(ModelError, match="47x57"):
        odd.discriminate(torch.zeros(1, 1, 40, 57))
