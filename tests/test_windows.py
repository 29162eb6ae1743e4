"""Windows of fields: nowcasting as translation (volumes) and as segmentation (classes)."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import esszoo
from esszoo.data.labels import rain_intensity
from esszoo.data.windows import window_data
from esszoo.errors import DataError
from tests.conftest import write_recipe


def moving_storm(steps: int = 60) -> xr.Dataset:
    """A rain cell drifting east by one point every 5 minutes (5-minute sums in mm)."""
    y, x = np.mgrid[0:16, 0:20]
    frames = [np.exp(-((x - (t % 20)) ** 2 + (y - 8) ** 2) / 8.0) * 1.5 for t in range(steps)]
    times = pd.date_range("2018-05-10", periods=steps, freq="5min")
    field = xr.DataArray(
        np.array(frames, dtype=np.float32),
        dims=("time", "y", "x"),
        attrs={"standard_name": "rainfall_amount", "units": "kg"},
    )
    return xr.Dataset({"rain": field}, coords={"time": times})


def test_rain_intensity_follows_the_ams_thresholds():
    amounts = np.array([[0.0, 0.1 / 12, 3.0 / 12, 8.0 / 12, np.nan]])
    assert rain_intensity(amounts).tolist() == [[0, 1, 2, 3, -1]]


def test_windows_stay_inside_their_split():
    data = window_data(
        moving_storm(), inputs=["rain"], past=3, future=2, stride=1, train=0.5, val=0.25, test=0.25
    )
    assert data.train.x.shape == (26, 3, 16, 20) and data.train.y.shape == (26, 2, 16, 20)
    last_train_input = data.train.coords["time"][-1]
    first_val_input = data.val.coords["time"][0]
    assert last_train_input < np.datetime64("2018-05-10T02:30")  # train block: 30 frames
    assert first_val_input >= np.datetime64("2018-05-10T02:40")
    # a target frame is the frame that follows the inputs
    assert torch.allclose(data.train.y[0, 0], data.train.x[1, 2])


def test_volumes_and_class_maps():
    volumes = window_data(
        moving_storm(),
        inputs=["rain"],
        past=4,
        future=4,
        volume=True,
        train=0.5,
        val=0.25,
        test=0.25,
    )
    assert volumes.train.x.shape[1:] == (1, 4, 16, 20)
    classes = window_data(
        moving_storm(),
        inputs=["rain"],
        past=2,
        future=3,
        point_rule="rain_intensity",
        train=0.5,
        val=0.25,
        test=0.25,
    )
    assert classes.train.y.dtype == torch.int64 and classes.classes[0] == "none"
    assert set(classes.train.y.unique().tolist()) <= {0, 1, 2, 3}


def test_a_window_longer_than_a_split_is_refused():
    with pytest.raises(DataError, match="fewer than a window"):
        window_data(
            moving_storm(20), inputs=["rain"], past=6, future=6, train=0.5, val=0.25, test=0.25
        )


def train_tiny(tmp_path, model: dict, task: dict, extra: dict) -> list[dict]:
    from esszoo.training import train

    moving_storm().to_netcdf(tmp_path / "storm.nc")
    recipe = {
        "name": "tiny",
        "model": model,
        "data": {
            "source": str(tmp_path / "storm.nc"),
            "inputs": ["rain"],
            "split": {"train": 0.5, "val": 0.25, "test": 0.25},
        }
        | extra,
        "task": task,
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False},
        "out_dir": str(tmp_path / "runs"),
    }
    run_dir = train(write_recipe(tmp_path / "tiny.yaml", recipe))
    with open(run_dir / "scores.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "model",
    [{"name": "unet3d", "width": 2}, {"name": "convlstm", "hidden": [4], "patch": 2}],
    ids=["unet3d", "convlstm"],
)
def test_volume_to_volume_nowcast_beside_persistence(tmp_path, model):
    # a ConvLSTM reads the same volumes of frames with 2-D convolutions, frame by frame
    rows = train_tiny(
        tmp_path,
        model,
        {"name": "translation"},
        {"window": {"past": 4, "future": 4, "stride": 2}},
    )
    names = [row["predictor"] for row in rows]
    assert names == [
        model["name"],
        "baseline: climatology (training mean)",
        "baseline: linear regression (pooled)",
        "baseline: linear regression (per point)",
        "baseline: persistence",
        "baseline: extrapolation (pysteps)",  # no STEPS: the grid has no latitudes
    ]
    assert all(float(row["rmse"]) >= 0 for row in rows)
    rmse = {row["predictor"]: float(row["rmse"]) for row in rows}
    # the storm moves: pysteps' extrapolation along its motion beats keeping it in place
    assert rmse["baseline: extrapolation (pysteps)"] < rmse["baseline: persistence"]


@pytest.mark.parametrize("name", esszoo.list_models(task="segmentation"))
def test_segmentation_of_rain_intensity_beside_persistence(tmp_path, name):
    # every segmentation model trains from a recipe: the data fix in_channels, out_channels
    small = esszoo.model_card(name).small
    arguments = {k: v for k, v in small.items() if k not in ("in_channels", "out_channels")}
    rows = train_tiny(
        tmp_path,
        {"name": name, **arguments},
        {"name": "segmentation", "class_weights": "balanced"},
        {"window": {"past": 2, "future": 2, "stride": 2}, "label_rule": "rain_intensity"},
    )
    names = [row["predictor"] for row in rows]
    assert names[0] == name and "baseline: persistence" in names
    assert names[1].startswith("baseline: majority class")
    assert {"miou", "iou_heavy", "pixel_acc"} <= set(rows[0])


def two_variables(steps: int = 60) -> xr.Dataset:
    """The drifting storm and, at the same times, a field made from it (a 'sensor')."""
    storm = moving_storm(steps)
    sensor = (2.0 * storm["rain"] + 0.1).assign_attrs(units="kg", standard_name="sensor")
    return storm.assign(sensor=sensor)


def train_pairs(tmp_path, model: dict, data: dict) -> list[dict]:
    from esszoo.training import train

    recipe = {
        "name": "pairs",
        "model": model,
        "data": {"source": str(tmp_path / "pairs.nc"), "inputs": ["rain"]} | data,
        "task": {"name": "translation"},
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False},
        "out_dir": str(tmp_path / "runs"),
    }
    run_dir = train(write_recipe(tmp_path / "pairs.yaml", recipe))
    with open(run_dir / "scores.csv") as handle:
        return list(csv.DictReader(handle))


def test_one_variable_from_another_at_the_same_time(tmp_path):
    two_variables().to_netcdf(tmp_path / "pairs.nc")
    rows = train_pairs(tmp_path, {"name": "unet", "width": 2}, {"targets": ["sensor"]})
    rows = {row["predictor"]: row for row in rows}
    assert list(rows) == [
        "unet",
        "baseline: climatology (training mean)",
        "baseline: linear regression (pooled)",
        "baseline: linear regression (per point)",
    ]
    # the sensor is a linear function of the rain, at every point alike
    assert float(rows["baseline: linear regression (pooled)"]["rmse"]) < 1e-4
    assert float(rows["baseline: linear regression (per point)"]["rmse"]) < 1e-4
    assert "linear regression" in rows["unet"]["loses_to"]  # one epoch of a tiny UNet


def test_an_autoencoder_is_compared_with_as_many_eofs_as_its_code_has_numbers(tmp_path):
    two_variables().to_netcdf(tmp_path / "pairs.nc")
    model = {"name": "autoencoder", "width": 2, "depth": 2, "latent_channels": 1}
    rows = train_pairs(tmp_path, model, {"split": {"train": 0.5, "val": 0.25, "test": 0.25}})
    # code: 1 channel on a grid 4 times coarser, 4 x 5 = 20 numbers; 30 training fields
    assert [row["predictor"] for row in rows] == [
        "autoencoder",
        "baseline: climatology (training mean)",
        "baseline: EOF truncation (20 modes)",
    ]


def test_eof_truncation_keeps_the_leading_modes():
    from esszoo.data.dataset import Table
    from esszoo.tasks.translation import eof_truncation

    rng = np.random.default_rng(0)
    patterns = rng.normal(size=(2, 1, 6, 7))
    fields = torch.from_numpy(np.einsum("tk,kchw->tchw", rng.normal(size=(20, 2)), patterns))
    table = Table(fields, fields)
    assert torch.allclose(eof_truncation(fields, 2)(table), fields.float(), atol=1e-4)
    assert not torch.allclose(eof_truncation(fields, 1)(table), fields.float(), atol=1e-2)


def test_volumes_of_levels_go_to_volume_networks(tmp_path):
    pairs = two_variables()
    stacked = {
        name: xr.concat([pairs[name] * (0.5**k) for k in range(3)], dim="level")
        .transpose("time", "level", "y", "x")
        .assign_attrs(pairs[name].attrs)
        for name in ("rain", "sensor")
    }
    xr.Dataset(stacked).to_netcdf(tmp_path / "pairs.nc")
    with pytest.raises(DataError, match="select one level"):
        train_pairs(tmp_path, {"name": "unet", "width": 2}, {"targets": ["sensor"]})
    rows = train_pairs(tmp_path, {"name": "unet3d", "width": 2}, {"targets": ["sensor"]})
    assert [row["predictor"] for row in rows][:3] == [
        "unet3d",
        "baseline: climatology (training mean)",
        "baseline: linear regression (pooled)",
    ]


def test_panels_show_the_cases_with_the_most_going_on():
    from esszoo.plots import busiest_cases

    dry = torch.zeros(6, 1, 4, 5)
    dry[4, 0, 1:3, 1:3] = 3.0  # one rainy scene
    dry[1, 0, 0, 0] = 0.5
    assert busiest_cases(dry, 2) == [1, 4]
    classes = torch.zeros(5, 4, 5, dtype=torch.long)
    classes[3, :2] = 2
    classes[0, 0, 0] = -1  # unknown points do not count
    assert busiest_cases(classes, 1) == [3]
    assert busiest_cases(classes, 9) == [0, 1, 2, 3, 4]
