"""Every verb works for every task: train, evaluate, predict, compare and export (TorchScript
and ONNX), through the command line, from small recipes on real data (TMY3 stations,
OSTIA sea surface temperature, two days of DWD radar, climt's radiative-convective
columns)."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import numpy as np
import pytest
import torch
import xarray as xr

from esszoo.data.simulated import simulate_rrtmg_columns
from esszoo.data.source import open_source
from tests.conftest import run_cli, tiny_recipe_dict, write_recipe

RADAR_DAYS = slice("2018-05-10", "2018-05-11T23:55")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tmy3):
    """Small real data files: stations, OSTIA (a third of the band, to keep the baselines
    of inpainting quick), and radar coarsened to 8 km."""
    folder = tmp_path_factory.mktemp("verbs")
    tmy3[["tas", "ps", "huss"]].isel(time=slice(0, 24 * 30)).to_netcdf(folder / "stations.nc")
    open_source("ostia").load().isel(lon=slice(0, 144)).to_netcdf(folder / "ostia.nc")
    radar = open_source("radolan").sel(time=RADAR_DAYS).coarsen(y=4, x=4, boundary="trim").mean()
    radar["rainfall_amount"].attrs = open_source("radolan")["rainfall_amount"].attrs
    radar.to_netcdf(folder / "radar.nc")
    simulate_rrtmg_columns(
        folder / "columns.nc",
        runs=7,
        days=0.25,
        every=timedelta(hours=2),
        spin_up=timedelta(hours=2),
    )
    return folder


def recipe(folder, task: str) -> dict:
    """A recipe of one epoch of a small model for `task` on one of the files."""
    trainer = {"max_epochs": 1, "batch_size": 8, "progress_bar": False, "precision": "32"}
    radar = {"source": str(folder / "radar.nc"), "inputs": ["rainfall_amount"]}
    ostia = {"source": str(folder / "ostia.nc"), "inputs": ["surface_temperature"]}
    window = {"past": 2, "future": 2, "stride": 4}
    recipes = {
        "regression": tiny_recipe_dict(folder / "runs") | {"name": "regression"},
        "classification": {
            "model": {"name": "lenet5"},
            "data": radar | {"label_rule": "rain_category"},
            "task": {"name": "classification"},
        },
        "segmentation": {
            "model": {"name": "unet", "width": 2},
            "data": radar | {"window": window, "label_rule": "rain_intensity"},
            "task": {"name": "segmentation"},
        },
        "detection": {
            "model": {
                "name": "detr",
                "backbone": "resnet18",
                "width": 4,
                "frozen_batch_norm": False,
                "frozen_stages": 0,
                "queries": 8,
                "hidden": 16,
                "heads": 2,
                "encoder_layers": 1,
                "decoder_layers": 2,
                "feedforward": 16,
            },
            "data": radar | {"window": window, "object_rule": "rain_cells"},
            "task": {"name": "detection"},
        },
        "translation_windows": {
            "model": {"name": "unet3d", "width": 2},
            "data": radar | {"window": window},
            "task": {"name": "translation"},
        },
        "translation_pairs": {
            "model": {"name": "autoencoder", "width": 2, "depth": 2, "latent_channels": 1},
            "data": ostia,
            "task": {"name": "translation"},
        },
        "forecasting": {
            "model": {"name": "gru", "width": 4},
            "data": {
                "source": str(folder / "stations.nc"),
                "inputs": ["tas", "ps"],
                "targets": ["tas"],
                "window": {"past": 24, "future": 6, "stride": 6},
            },
            "task": {"name": "forecasting", "distribution": "gaussian"},
        },
        "column_emulation": {
            "model": {"name": "column_rnn", "hidden": 4},
            "data": {
                "source": str(folder / "columns.nc"),
                "inputs": ["ta", "hus", "ts"],
                "targets": ["tntrl", "rlut"],
                "keep": ["phalf"],
                "split": {"dim": "run", "train": 0.6, "val": 0.2, "test": 0.2},
            },
            "task": {"name": "column_emulation"},
        },
        "generation": {
            "model": {"name": "vae", "width": 2, "depth": 2, "latent_channels": 1},
            "data": radar,
            "task": {"name": "generation", "transform": "log1p"},
        },
        "inpainting": {
            "model": {"name": "pconv_unet", "encoder_layers": 2, "width": 4},
            "data": ostia | {"gaps": {"train": 1, "eval": 1}},
            "task": {"name": "inpainting", "anomalies": True},
        },
    }
    found = recipes[task]
    found.setdefault("name", task)
    found.setdefault("out_dir", str(folder / "runs"))
    found["trainer"] = found.get("trainer", {}) | trainer
    return found


DATA = {
    "regression": "stations.nc",
    "classification": "radar.nc",
    "segmentation": "radar.nc",
    "detection": "radar.nc",
    "translation_windows": "radar.nc",
    "translation_pairs": "ostia.nc",
    "inpainting": "ostia.nc",
    "forecasting": "stations.nc",
    "column_emulation": "columns.nc",
    "generation": "radar.nc",
}
OUTPUTS = {
    "regression": {"pr"},
    "classification": {"predicted_class", "class_probability"},
    "segmentation": {"predicted_class", "class_probability"},
    "detection": {"score", "object_class", "column_start", "latitude", "west", "east"},
    "translation_windows": {"rainfall_amount"},
    "translation_pairs": {"surface_temperature"},
    "inpainting": {"surface_temperature", "surface_temperature_filled"},
    "forecasting": {"tas", "tas_std"},
    "column_emulation": {"tntrl", "rlut"},
    "generation": {"rainfall_amount"},  # a VAE's fields rebuilt through its code
}


@pytest.mark.parametrize("task", sorted(DATA))
def test_every_verb_works_for_every_task(task, files, capsys):
    path = write_recipe(files / f"{task}.yaml", recipe(files, task))
    run_dir = files / "runs" / task
    data = files / DATA[task]

    status, out, err = run_cli(["train", path, "--overwrite"], capsys)
    assert status == 0, err
    with open(run_dir / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["predictor"] != "baseline" and len(rows) >= 2
    assert "loses_to" in rows[0]  # judged against its baselines, whatever the verdict

    status, out, err = run_cli(["evaluate", run_dir], capsys)
    assert status == 0 and "baseline: " in out, err

    status, out, err = run_cli(["compare", run_dir, "--out", files / f"{task}.csv"], capsys)
    assert status == 0 and (files / f"{task}.csv").is_file(), err

    status, out, err = run_cli(
        ["predict", run_dir, "--data", data, "--out", files / "p.nc"], capsys
    )
    assert status == 0, err
    predicted = xr.load_dataset(files / "p.nc")
    assert OUTPUTS[task] <= set(predicted.data_vars), set(predicted.data_vars)
    source = xr.load_dataset(data)
    for name in set(source.coords) & set(predicted.coords) & set(source.dims):
        if name not in ("time",):  # windows start at their last input frame
            assert np.array_equal(predicted[name].values, source[name].values), name
    assert "esszoo" in predicted.attrs["history"]

    for format in ("torchscript", "onnx"):
        status, out, err = run_cli(["export", run_dir, "--format", format], capsys)
        assert status == 0 and "reproduces esszoo" in out, err


def test_predictions_of_windows_run_along_a_lead_time(files, capsys):
    run_dir = files / "runs" / "translation_windows"
    if not (run_dir / "model.json").is_file():
        path = write_recipe(files / "tw.yaml", recipe(files, "translation_windows"))
        assert run_cli(["train", path, "--overwrite"], capsys)[0] == 0
    out = files / "lead.nc"
    assert run_cli(["predict", run_dir, "--data", files / "radar.nc", "--out", out], capsys)[0] == 0
    predicted = xr.load_dataset(out)
    rain = predicted["rainfall_amount"]
    assert rain.dims == ("time", "lead_time", "y", "x")
    assert predicted["lead_time"].values.tolist() == [300_000_000_000, 600_000_000_000]  # 5, 10 min
    source = xr.load_dataset(files / "radar.nc")
    assert predicted["time"].values[0] == source["time"].values[1]  # after two input frames
    assert rain.attrs["units"] == source["rainfall_amount"].attrs["units"]


def test_an_exported_inpainting_model_fills_a_field_given_with_its_gaps(files, capsys):
    run_dir = files / "runs" / "inpainting"
    if not (run_dir / "model.json").is_file():
        path = write_recipe(files / "ip.yaml", recipe(files, "inpainting"))
        assert run_cli(["train", path, "--overwrite"], capsys)[0] == 0
    assert run_cli(["export", run_dir, "--format", "torchscript"], capsys)[0] == 0
    module = torch.jit.load(str(run_dir / "model.pt"))  # no esszoo needed to run it
    field = torch.from_numpy(xr.load_dataset(files / "ostia.nc")["surface_temperature"].values[-2:])
    field = field[:, None].float()  # (2, 1, 18, 144), land missing
    gappy = field.clone()
    gappy[:, :, 5:12, 40:100] = float("nan")
    filled = module(gappy)
    observed = torch.isfinite(gappy)
    assert torch.equal(filled[observed], gappy[observed])  # observed values kept
    hole = torch.isfinite(field) & ~observed
    assert torch.isfinite(filled[hole]).all()
    assert (filled[hole] - field[hole]).abs().mean() < 3.0  # K, after one epoch
    record = json.loads((run_dir / "model.json").read_text())
    assert record["grid"]["dims"] == ["lat", "lon"] and record["grid"]["coords"] == ["lat", "lon"]


def test_the_table_of_verbs_holds_every_built_in_task(tmp_path):
    from esszoo.tasks import BUILTIN_MODULES, DEFAULT_TASK, tasks

    built_in = {name for name, cls in tasks().items() if cls.__module__ in BUILTIN_MODULES}
    named = {recipe(tmp_path, case).get("task", {}).get("name", DEFAULT_TASK) for case in DATA}
    assert built_in <= named, built_in - named


def test_detections_are_boxes_in_grid_cells_and_degrees_in_netcdf_and_csv(files, capsys):
    run_dir = files / "runs" / "detection"
    if not (run_dir / "model.json").is_file():
        path = write_recipe(files / "det.yaml", recipe(files, "detection"))
        assert run_cli(["train", path, "--overwrite"], capsys)[0] == 0
    assert (run_dir / "detections.png").is_file()  # the busiest test cases, overlaid
    netcdf, table = files / "boxes.nc", files / "boxes.csv"
    for out in (netcdf, table):
        command = ["predict", run_dir, "--data", files / "radar.nc", "--out", out]
        assert run_cli(command, capsys)[0] == 0
    boxes = xr.load_dataset(netcdf)
    assert boxes["score"].dims == ("time", "object")
    assert (boxes["score"].diff("object") <= 0).all()  # most likely first
    assert (boxes["column_end"] > boxes["column_start"]).all()
    radar = xr.load_dataset(files / "radar.nc")  # RADOLAN's curvilinear latitudes
    assert float(radar["latitudes"].min()) <= float(boxes["south"].min())
    assert float(boxes["north"].max()) <= float(radar["latitudes"].max())
    with open(table) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == boxes.sizes["time"] * boxes.sizes["object"]
    assert {"time", "object", "score", "west", "east", "latitude"} <= set(rows[0])
