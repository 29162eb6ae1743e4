"""RRTMG through climt, the radiative-convective columns that make its data, and the
column emulators learned from them: a handful of columns, a few steps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import esszoo
from esszoo.data.columns import column_data
from esszoo.errors import DataError
from esszoo.physics import radiation
from esszoo.physics.column_model import ColumnBlowUp, ColumnModel, draw_columns
from tests.conftest import run_cli, write_recipe


@pytest.fixture(scope="module")
def columns() -> xr.Dataset:
    """Six columns of the host model after two hours: real RRTMG inputs."""
    model = ColumnModel(draw_columns(6, seed=3))
    for _ in range(12):
        model.step()
    return model.columns()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    from esszoo.data.simulated import simulate_rrtmg_columns

    path = tmp_path_factory.mktemp("rrtmg") / "columns.nc"
    return simulate_rrtmg_columns(
        path, runs=7, days=0.5, every=timedelta(hours=3), spin_up=timedelta(hours=3)
    )


def budget_residual(band: str, out: xr.Dataset, columns: xr.Dataset) -> np.ndarray:
    net = radiation.net_flux_into_atmosphere(band, lambda name: out[name].values.astype(float))
    heating = out[radiation.HEATING[band]].values.astype(float)
    return radiation.column_energy_residual(heating, columns["phalf"].values, net)


def test_rrtmg_heats_and_cools_with_units_and_closes_its_energy_budget(columns):
    longwave = radiation.rrtmg_longwave(columns)
    shortwave = radiation.rrtmg_shortwave(columns)
    assert longwave["tntrl"].dims == ("column", "level")
    assert longwave["rld"].dims == ("column", "interface")
    assert longwave["tntrl"].attrs["units"] == "K day-1"
    assert shortwave["rsds"].attrs["units"] == "W m-2"
    # the atmosphere cools to space in the longwave; the Earth emits 150-500 W m-2
    assert longwave["tntrl"].mean() < 0
    assert ((longwave["rlut"] > 150) & (longwave["rlut"] < 350)).all()
    # at the top the Sun delivers 1367 W m-2 times the cosine of its zenith angle
    sun = 1367.0 * columns["coszen"].clip(min=0).values
    np.testing.assert_allclose(shortwave["rsdt"].values, sun, atol=0.5)
    assert np.abs(budget_residual("longwave", longwave, columns)).max() < 0.01
    assert np.abs(budget_residual("shortwave", shortwave, columns)).max() < 0.01


def test_a_column_gets_the_same_radiation_alone_as_in_a_batch(columns):
    batch = radiation.rrtmg_longwave(columns)
    alone = radiation.rrtmg_longwave(columns.isel(column=[4]))
    np.testing.assert_array_equal(alone["tntrl"].values[0], batch["tntrl"].values[4])


def test_units_that_convert_are_converted(columns):
    in_hpa = columns.assign(
        pfull=(columns["pfull"] / 100).assign_attrs(units="hPa"),
        phalf=(columns["phalf"] / 100).assign_attrs(units="hPa"),
        co2=(columns["co2"] * 1e6).assign_attrs(units="ppm"),
    )
    np.testing.assert_allclose(
        radiation.rrtmg_longwave(in_hpa)["rlut"],
        radiation.rrtmg_longwave(columns)["rlut"],
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda c: c.drop_vars("o3"), "no 'o3'"),
        (
            lambda c: c.isel(level=slice(None, None, -1), interface=slice(None, None, -1)),
            "upside down",
        ),
        (lambda c: c.assign(hus=c["hus"].assign_attrs(units="K")), "cannot be converted"),
        (lambda c: c.assign(ta=(c["ta"] - 273.15).assign_attrs(units="K")), "spans"),
        (lambda c: c.assign(phalf=c["phalf"].where(c.interface != 0, 500.0)), "surface pressure"),
        (lambda c: c.assign(ta=c["ta"].where(c.level != 3, np.nan)), "NaN"),
    ],
    ids=["missing ozone", "upside down", "wrong units", "celsius as K", "surface above top", "NaN"],
)
def test_bad_columns_get_one_clear_line(columns, change, fragment):
    with pytest.raises(DataError, match=fragment) as error:
        radiation.rrtmg_longwave(change(columns))
    assert "\n" not in str(error.value)


def test_a_blown_up_column_stops_the_model_before_rrtmg_sees_it():
    model = ColumnModel(draw_columns(3, seed=1))
    model.state["air_temperature"].values[5, 0, 1] = 900.0
    with pytest.raises(ColumnBlowUp, match=r"column\(s\) \[1\]"):
        for _ in range(6):
            model.step()


def test_the_simulated_data_are_cf_columns_of_independent_runs(simulated):
    data = xr.load_dataset(simulated)
    assert dict(data.sizes) == {
        "run": 7,
        "time": 4,
        "perturbation": 2,
        "level": 30,
        "interface": 31,
    }
    assert data["tntrl"].dims == ("run", "time", "perturbation", "level")
    assert data["ta"].attrs["standard_name"] == "air_temperature"
    assert {"run_sst", "run_co2"} <= set(data.coords)
    # the perturbed copy differs from its state; its radiation was computed for it
    assert np.abs(data["ta"].sel(perturbation=1) - data["ta"].sel(perturbation=0)).max() > 0.5
    assert (data["tntrl"].sel(perturbation=1) != data["tntrl"].sel(perturbation=0)).any()
    split = column_data(
        data, inputs=["ta", "ts"], targets=["tntrl", "rlut"], keep=["phalf"], split_dim="run"
    )
    runs = {name: set(np.arange(7)[split.split.indices(name)]) for name in ("train", "val", "test")}
    assert not (runs["train"] & runs["test"]) and not (runs["val"] & runs["test"])
    # profiles first, a level after another, then the scalars
    assert split.train.x.shape[1] == 31 and split.train.y.shape[1] == 31
    assert [v.levels for v in split.inputs] == [30, None]
    assert split.train.coords["phalf"].shape[1] == 31


def emulator_recipe(tmp_path: Path, source: Path, **model) -> Path:
    recipe = {
        "name": "lw",
        "model": model or {"name": "mlp", "depth": 2, "width": 32},
        "data": {
            "source": str(source),
            "inputs": ["ta", "hus", "o3", "pfull", "ts", "co2"],
            "targets": ["tntrl", "rlds", "rlus", "rlut"],
            "keep": ["phalf"],
            "split": {"dim": "run", "train": 0.6, "val": 0.2, "test": 0.2},
        },
        "task": {"name": "column_emulation"},
        "trainer": {"max_epochs": 2, "batch_size": 16, "progress_bar": False, "precision": "32"},
        "out_dir": str(tmp_path / "runs"),
    }
    return write_recipe(tmp_path / "lw.yaml", recipe)


def test_an_emulator_is_scored_by_variable_and_level_with_its_energy_check(
    simulated, tmp_path, capsys
):
    status, out, err = run_cli(["train", emulator_recipe(tmp_path, simulated)], capsys)
    assert status == 0, err
    run = tmp_path / "runs" / "lw"
    scores = (run / "scores.csv").read_text()
    for score in ("profile_rmse", "tntrl_bias", "rlut_rmse", "energy_rmse"):
        assert score in scores
    by_level = (run / "scores_by_level.csv").read_text().splitlines()
    assert by_level[0].startswith("variable,units,level,pressure_hPa,predictor,rmse,bias")
    assert len(by_level) == 1 + 30 * 2  # 30 levels, the model and its baseline
    assert (run / "errors_by_level.png").is_file()
    # predictions keep the columns' dimensions, profiles along their level
    data = xr.load_dataset(simulated).isel(run=[0, 1])
    predicted = esszoo.predict(run, data)
    assert predicted["tntrl"].dims == ("run", "time", "perturbation", "level")
    assert predicted["rlut"].dims == ("run", "time", "perturbation")
    assert predicted["tntrl"].attrs["units"] == "K day-1"


def test_the_recurrent_emulator_gets_the_columns_layout(simulated, tmp_path, capsys):
    recipe = emulator_recipe(tmp_path, simulated, name="column_rnn", hidden=8)
    status, out, err = run_cli(["train", recipe], capsys)
    assert status == 0, err
    arguments = esszoo.load(tmp_path / "runs" / "lw").description["model"]["arguments"]
    assert arguments | {"levels": 30, "profile_inputs": 4, "profile_outputs": 1} == arguments


def test_profiles_on_other_levels_get_one_line(simulated, tmp_path, capsys):
    status, _, err = run_cli(["train", emulator_recipe(tmp_path, simulated)], capsys)
    assert status == 0, err
    data = xr.load_dataset(simulated).isel(run=[0], level=slice(0, 20))
    data.to_netcdf(tmp_path / "coarse.nc")
    status, _, err = run_cli(
        [
            "predict",
            tmp_path / "runs" / "lw",
            "--data",
            tmp_path / "coarse.nc",
            "--out",
            tmp_path / "out.nc",
        ],
        capsys,
    )
    assert status == 2 and "20 levels" in err and "trained on 30" in err
    assert not (tmp_path / "out.nc").exists()


def test_an_exported_emulator_runs_in_rrtmgs_place_inside_climt(simulated, tmp_path, capsys):
    status, _, err = run_cli(["train", emulator_recipe(tmp_path, simulated)], capsys)
    assert status == 0, err
    run = tmp_path / "runs" / "lw"
    status, out, err = run_cli(
        ["couple", run, "--days", "1", "--columns", "2", "--out", tmp_path / "online"], capsys
    )
    assert status == 0, err
    assert (run / "model.pt").is_file()  # coupled through its TorchScript export
    online = xr.load_dataset(tmp_path / "online" / "online.nc")
    assert online["ta"].dims == ("model", "day", "column", "level")
    assert list(online["model"].values) == ["RRTMG", "emulator"]
    assert np.isfinite(online["ta"]).all()
    # one day apart from one start: the runs differ, and by less than a day's heating
    difference = np.abs(online["ta"].sel(model="emulator") - online["ta"].sel(model="RRTMG"))
    assert 0 < float(difference.max()) < 10
    assert (tmp_path / "online" / "online.png").is_file()
    assert "ta_rmse_K" in (tmp_path / "online" / "online_drift.csv").read_text()


def test_coupling_a_run_that_is_no_radiation_emulator_gets_one_line(trained_run, capsys):
    status, _, err = run_cli(["couple", trained_run, "--days", "1"], capsys)
    assert status == 2 and "heating rate" in err and len(err.strip().splitlines()) == 1


def test_grey_longwave_is_climts_grey_radiation(columns):
    import climt
    import torch

    from esszoo.physics.grey_radiation import grey_longwave

    count, levels = columns.sizes["column"], columns.sizes["level"]
    depth, grey = climt.Frierson06LongwaveOpticalDepth(), climt.GrayLongwaveRadiation()
    state = climt.get_default_state(
        [depth, grey], grid_state=climt.get_grid(nx=count, ny=1, nz=levels)
    )
    for name, variable in (
        ("air_temperature", "ta"),
        ("air_pressure", "pfull"),
        ("air_pressure_on_interface_levels", "phalf"),
    ):
        state[name].values[:] = columns[variable].values.T[:, None, :]
    state["surface_air_pressure"].values[:] = columns["phalf"].values[None, :, 0]
    state["surface_temperature"].values[:] = columns["ts"].values[None, :]
    state["latitude"].values[:] = 0.0
    state.update(depth(state))
    _, diagnostics = grey(state)
    heating, rlds, rlus, rlut = grey_longwave(
        *(torch.from_numpy(columns[v].values.astype(float)) for v in ("ta", "phalf", "ts"))
    )
    expected = diagnostics["air_temperature_tendency_from_longwave"].values[:, 0, :].T
    up = diagnostics["upwelling_longwave_flux_in_air"].values[:, 0, :].T
    down = diagnostics["downwelling_longwave_flux_in_air"].values[:, 0, :].T
    np.testing.assert_allclose(heating.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(rlut.numpy(), up[:, -1], rtol=1e-10)
    np.testing.assert_allclose(rlus.numpy(), up[:, 0], rtol=1e-10)
    np.testing.assert_allclose(rlds.numpy(), down[:, 0], rtol=1e-10)
    # one band with no water vapour: far from RRTMG, what the hybrid's network corrects
    assert np.abs(rlut.numpy() - radiation.rrtmg_longwave(columns)["rlut"].values).max() > 3


def hybrid_recipe(tmp_path: Path, source: Path) -> Path:
    recipe = emulator_recipe(tmp_path, source)
    text = recipe.read_text().replace("- pfull\n", "- pfull\n  - phalf\n")
    recipe.write_text(
        text.replace(
            "name: column_emulation", "name: column_emulation\n  residual_of: grey_longwave"
        )
    )
    return recipe


def test_the_hybrid_learns_rrtmg_minus_grey_radiation_inside_its_export(
    simulated, tmp_path, capsys
):
    import torch

    from esszoo.physics.grey_radiation import grey_longwave

    status, out, err = run_cli(["train", hybrid_recipe(tmp_path, simulated)], capsys)
    assert status == 0, err
    run = tmp_path / "runs" / "lw"
    scores = (run / "scores.csv").read_text()
    assert "hybrid: mlp + grey_longwave" in scores and "physics alone: grey longwave" in scores
    predictor = esszoo.load(run)
    data = xr.load_dataset(simulated).isel(run=[0], time=0, perturbation=0)
    x = torch.cat(
        [torch.from_numpy(data[v].values).float() for v in ("ta", "hus", "o3", "pfull", "phalf")]
        + [torch.from_numpy(data[v].values).float()[:, None] for v in ("ts", "co2")],
        dim=1,
    )
    base = torch.cat(
        [
            t if t.dim() == 2 else t[:, None]
            for t in grey_longwave(x[:, :30], x[:, 120:151], x[:, 151])
        ],
        dim=1,
    )
    with torch.no_grad():
        residual = predictor.denormalize(predictor.net(predictor.normalize(x)))
        torch.testing.assert_close(predictor(x), base + residual, rtol=1e-5, atol=1e-4)
    # the export carries the grey scheme: coupled through TorchScript, no Python physics
    status, _, err = run_cli(
        ["couple", run, "--days", "1", "--columns", "2", "--out", tmp_path / "online"], capsys
    )
    assert status == 0, err
    assert np.isfinite(xr.load_dataset(tmp_path / "online" / "online.nc")["ta"]).all()


@pytest.mark.parametrize(
    "change, fragment",
    [
        ("task.residual_of=cheap_mixed_column_precipitation", "'ta' is a profile"),
        ("data.targets=[rlut,tntrl]", "in that order"),
    ],
)
def test_a_hybrid_whose_physics_does_not_fit_gets_one_line(
    simulated, tmp_path, capsys, change, fragment
):
    status, _, err = run_cli(["train", hybrid_recipe(tmp_path, simulated), change], capsys)
    assert status == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs" / "lw").exists()


def test_profiles_given_upside_down_to_an_emulator_get_one_line(simulated, tmp_path, capsys):
    status, _, err = run_cli(["train", emulator_recipe(tmp_path, simulated)], capsys)
    assert status == 0, err
    data = xr.load_dataset(simulated).isel(run=[0])
    data.isel(level=slice(None, None, -1), interface=slice(None, None, -1)).to_netcdf(
        tmp_path / "flipped.nc"
    )
    status, _, err = run_cli(
        [
            "predict",
            tmp_path / "runs" / "lw",
            "--data",
            tmp_path / "flipped.nc",
            "--out",
            tmp_path / "out.nc",
        ],
        capsys,
    )
    assert status == 2 and "upside down" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.nc").exists()


def test_an_emulators_own_online_states_join_its_training_split_only(simulated, tmp_path, capsys):
    from esszoo.coupling import online_states
    from esszoo.recipe import load_recipe
    from esszoo.run import build_data

    recipe = emulator_recipe(tmp_path, simulated)
    status, _, err = run_cli(["train", recipe], capsys)
    assert status == 0, err
    states = online_states(
        [tmp_path / "runs" / "lw"],
        tmp_path / "online.nc",
        columns=2,
        days=0.5,
        spin_up=timedelta(hours=3),
        log=None,
    )
    visited = xr.load_dataset(states)
    assert visited["tntrl"].dims == ("run", "time", "perturbation", "level")
    assert "emulated_longwave" in visited.attrs["history"]
    # labelled by RRTMG: the scheme's answer for exactly the visited state
    one = visited.isel(run=0, time=-1, perturbation=0).expand_dims(column=1)
    np.testing.assert_allclose(
        radiation.rrtmg_longwave(one)["tntrl"].values[0], one["tntrl"].values[0], atol=1e-3
    )
    plain = build_data(load_recipe(recipe))
    more = build_data(load_recipe(recipe, [f"data.train_extra=[{states}]"]))
    added = visited.sizes["run"] * visited.sizes["time"] * visited.sizes["perturbation"]
    assert len(more.train.x) == len(plain.train.x) + added
    assert torch_equal(more.test.x, plain.test.x) and torch_equal(more.val.y, plain.val.y)
    status, _, err = run_cli(
        ["train", recipe, "data.train_extra=[missing.nc]", "name=again"], capsys
    )
    assert status == 2 and "missing.nc" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "again").exists()


def torch_equal(a, b) -> bool:  # noqa: ANN001
    return a.shape == b.shape and bool((a == b).all())
