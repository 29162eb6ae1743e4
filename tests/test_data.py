"""The data door: catalog, readers, variables, masks, splits and normalization."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from esszoo.data import catalog
from esszoo.data.batches import TensorBatches
from esszoo.data.coords import horizontal
from esszoo.data.source import open_source
from esszoo.data.splits import contiguous_split
from esszoo.data.tabular import tabular_data
from esszoo.errors import DataError


def test_tmy3_has_units_standard_names_and_two_stations(tmy3):
    assert dict(tmy3.sizes) == {"time": 8760, "station": 2}
    assert tmy3["tas"].attrs["units"] == "K" and tmy3["ps"].attrs["units"] == "Pa"
    assert tmy3["huss"].attrs["standard_name"] == "specific_humidity"
    assert float(tmy3["tas"].min()) > 250 and float(tmy3["tas"].max()) < 315
    assert float(tmy3["huss"].min()) > 0 and float(tmy3["huss"].max()) < 0.03
    assert "NREL" in tmy3.attrs["source"] and tmy3.attrs["references"]


def test_tmy3_missing_values_are_nan(tmy3):
    # Sand Point lacks most liquid precipitation depths (-9900 in the file)
    assert int(np.isnan(tmy3["prl"].sel(station="703165")).sum()) == 8011
    assert not np.isnan(tmy3["prl"].sel(station="723170")).any()


def test_catalog_files_match_their_pinned_sums():
    entry = catalog.entry("tmy3")
    for path, expected in zip(catalog.fetch("tmy3"), entry.files.values(), strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_data_sets_read_from_one_file_share_its_cached_copy():
    radar, series = catalog.entry("radolan"), catalog.entry("radolan_series")
    assert series.files == radar.files and series.reader != radar.reader
    assert series.local_files() == radar.local_files()  # the 550 MB file is cached once


def test_fetch_refuses_files_that_do_not_match(tmp_path, monkeypatch):
    monkeypatch.setenv("ESSZOO_DATA", str(tmp_path))
    entry = catalog.entry("tmy3")
    fake = {member: b"not the real file" for member in entry.files}
    monkeypatch.setattr(catalog, "_from_installed_package", lambda data_set: fake)
    with pytest.raises(DataError, match="sha256"):
        catalog.fetch("tmy3")
    assert not any(tmp_path.rglob("*.csv")) and not any(tmp_path.rglob("*.CSV"))


def test_fetch_without_the_index_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ESSZOO_DATA", str(tmp_path))
    monkeypatch.setattr(catalog, "_from_installed_package", lambda data_set: None)
    monkeypatch.setattr(
        catalog.subprocess,
        "run",
        lambda *a, **k: type("R", (), {"returncode": 1, "stderr": "ERROR: no network"})(),
    )
    with pytest.raises(DataError, match="could not download pvlib==0.16.1"):
        catalog.fetch("tmy3")


def test_unknown_data_set_suggests_the_nearest():
    with pytest.raises(DataError, match="did you mean 'tmy3'"):
        open_source("tmy")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_source(tmp_path / "absent.nc")


def test_truncated_netcdf_is_a_clear_error(tmp_path, station_file):
    broken = tmp_path / "broken.nc"
    broken.write_bytes(station_file.read_bytes()[:2000])
    with pytest.raises(DataError, match="cannot read"):
        open_source(broken).load()


def test_csv_with_time_column_becomes_a_time_dimension(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("time,a,b\n2020-01-01,1,2\n2020-01-02,3,\n")
    dataset = open_source(path)
    assert list(dataset.dims) == ["time"]
    assert np.isnan(dataset["b"].values[1])


def test_unknown_variable_names_the_nearest(tmy3):
    with pytest.raises(DataError, match="did you mean 'tas'"):
        tabular_data(tmy3, inputs=["taz", "ps"], targets=["huss"])


def test_variables_on_other_dimensions_are_refused(tmy3):
    dataset = tmy3.assign(profile=xr.DataArray(np.ones(5), dims="level"))
    with pytest.raises(DataError, match="dimensions"):
        tabular_data(dataset, inputs=["tas", "profile"], targets=["huss"])


def test_all_nan_variable_is_refused(tmy3):
    dataset = tmy3.assign(prl=xr.full_like(tmy3["prl"], np.nan))
    with pytest.raises(DataError, match="'prl' has no valid value"):
        tabular_data(dataset, inputs=["tas", "ps"], targets=["prl"])


def test_rows_with_missing_values_are_dropped_and_counted(tmy3):
    dataset = tmy3.copy(deep=True)
    dataset["tas"][10:20, 0] = np.nan
    data = tabular_data(dataset, inputs=["tas", "ps"], targets=["huss"])
    assert data.dropped["train"] == 10
    assert len(data.train) == data.split.ranges["train"][1] * 2 - 10
    assert np.isfinite(data.train.x.numpy()).all()


def test_splits_are_contiguous_ordered_and_disjoint(tmy3):
    data = tabular_data(tmy3, inputs=["tas", "ps", "huss"], physics="mixed_column_precipitation")
    ranges = data.split.ranges
    assert ranges["train"][0] == 0 and ranges["test"][1] == 8760
    assert ranges["train"][1] == ranges["val"][0] and ranges["val"][1] == ranges["test"][0]
    assert data.split.labels["test"][1] == "2002-01-01 00:00:00"
    assert len(data.train) == 2 * ranges["train"][1]


def test_split_by_dates(tmy3):
    times = tmy3["time"].values
    split = contiguous_split(
        times,
        "time",
        ["2001-01-01", "2001-08-31T23:00"],
        ["2001-09-01", "2001-10-31T23:00"],
        ["2001-11-01", "2001-12-31T23:00"],
    )
    assert split.labels["val"] == ("2001-09-01 00:00:00", "2001-10-31 23:00:00")


def test_overlapping_date_splits_are_refused(tmy3):
    with pytest.raises(DataError, match="time order"):
        contiguous_split(
            tmy3["time"].values,
            "time",
            ["2001-01-01", "2001-09-30"],
            ["2001-09-01", "2001-10-31"],
            ["2001-11-01", "2001-12-31"],
        )


def test_fractions_must_sum_to_one(tmy3):
    with pytest.raises(DataError, match="sum to 1"):
        contiguous_split(tmy3["time"].values, "time", 0.7, 0.2, 0.2)


def test_non_monotonic_time_is_refused(tmy3):
    shuffled = tmy3.isel(time=np.r_[1:100, 0])
    with pytest.raises(DataError, match="not strictly increasing"):
        tabular_data(shuffled, inputs=["tas", "ps"], targets=["huss"])


def test_physics_target_needs_matching_units(tmy3):
    celsius = tmy3.assign(tas=(tmy3["tas"] - 273.15).assign_attrs(tmy3["tas"].attrs, units="degC"))
    with pytest.raises(DataError, match="convert 'tas' to K"):
        tabular_data(celsius, inputs=["tas", "ps", "huss"], physics="mixed_column_precipitation")


def test_normalization_comes_from_the_training_split_only(tmy3):
    from esszoo.options import TrainerOptions
    from esszoo.registry import create_model
    from esszoo.tasks.regression import RegressionTask

    data = tabular_data(tmy3, inputs=["tas", "ps", "huss"], physics="mixed_column_precipitation")
    net = create_model("mlp", in_channels=3, out_channels=1)
    task = RegressionTask(net, RegressionTask.Options(), TrainerOptions())
    tensors = task.prepare(data)
    assert np.allclose(tensors["train"]["x"].mean(0).numpy(), 0, atol=1e-4)
    assert np.allclose(task.stats["input_mean"].numpy(), data.train.x.mean(0).numpy())
    # the test months (November, December) are colder than the training mean
    assert tensors["test"]["x"][:, 0].mean() < -0.3


def test_tensor_batches_cover_every_row_once_per_epoch():
    import torch

    rows = torch.arange(10).float()[:, None]
    batches = TensorBatches({"x": rows}, 3, shuffle=True, seed=1)
    batches.set_epoch(2)
    first = torch.cat([b["x"] for b in batches]).flatten()
    assert sorted(first.tolist()) == list(range(10)) and len(batches) == 4
    again = torch.cat([b["x"] for b in batches]).flatten()
    batches.set_epoch(3)
    other = torch.cat([b["x"] for b in batches]).flatten()
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_grouped_batches_hold_the_rows_of_batches_one_at_a_time():
    import torch

    rows = torch.arange(23).float()[:, None]
    single = TensorBatches({"x": rows}, 3, shuffle=True, seed=1)
    grouped = TensorBatches({"x": rows}, 3, shuffle=True, seed=1, group=4)
    assert (len(single), len(grouped), grouped.steps()) == (8, 2, 8)
    assert [len(b["x"]) for b in grouped] == [12, 11]
    assert torch.equal(torch.cat([b["x"] for b in grouped]), torch.cat([b["x"] for b in single]))


def test_splits_are_kept_on_an_accelerator_where_they_fit(monkeypatch):
    # "meta" stands in for an accelerator of 1 MiB: a split of 400 kB fits in half of
    # it, not in a quarter; the CPU keeps its tensors where they are
    import torch

    from esszoo.data import batches

    monkeypatch.setattr(
        batches, "device_memory", lambda device: 2**20 if device.type == "meta" else None
    )
    splits = {"train": {"x": torch.zeros(100_000)}, "val": {"x": torch.zeros(1000)}}
    moved, note = batches.on_device(splits, torch.device("meta"), 0.5)
    assert moved["train"]["x"].device.type == "meta" and "kept on meta" in note
    kept, note = batches.on_device(splits, torch.device("meta"), 0.25)
    assert kept["train"]["x"].device.type == "cpu" and "exceed 0.25" in note
    assert batches.on_device(splits, torch.device("cpu"), 0.5) == (splits, None)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_batches_gathered_on_the_gpu_are_those_of_the_host():
    import torch

    rows = torch.randn(1000, 3)
    host = TensorBatches({"x": rows}, 64, shuffle=True, seed=3, group=4)
    device = TensorBatches({"x": rows.cuda()}, 64, shuffle=True, seed=3, group=4)
    for a, b in zip(host, device, strict=True):
        assert b["x"].is_cuda and torch.equal(a["x"], b["x"].cpu())


def test_data_paths_are_read_only_through_the_door(tmp_path: Path):
    with pytest.raises(DataError, match="folder"):
        open_source(tmp_path)


def test_netcdf3_netcdf4_and_zarr_read_alike(tmp_path, tmy3):
    subset = tmy3[["tas", "ps", "huss"]].isel(time=slice(0, 240))
    subset.to_netcdf(tmp_path / "classic.nc", format="NETCDF3_64BIT", engine="scipy")
    subset.to_netcdf(tmp_path / "modern.nc", format="NETCDF4")
    subset.to_zarr(tmp_path / "store.zarr")
    opened = [open_source(tmp_path / name) for name in ("classic.nc", "modern.nc", "store.zarr")]
    for dataset in opened:
        assert dataset["tas"].attrs["units"] == "K"
        np.testing.assert_allclose(dataset["huss"].values, subset["huss"].values)


def test_fill_values_become_masked_rows(tmp_path, tmy3):
    subset = tmy3[["tas", "ps", "huss"]].isel(time=slice(0, 240)).copy(deep=True)
    subset["tas"][3, 0] = np.nan
    path = tmp_path / "filled.nc"
    subset.to_netcdf(path, encoding={"tas": {"_FillValue": -999.0, "dtype": "float32"}})
    raw = xr.load_dataset(path, mask_and_scale=False)
    assert float(raw["tas"][3, 0]) == -999.0  # on disk: the fill value
    data = tabular_data(
        open_source(path), inputs=["tas", "ps"], targets=["huss"], train=0.5, val=0.25, test=0.25
    )
    assert data.dropped["train"] == 1


def test_many_netcdf_files_by_pattern_read_as_one(tmp_path, station_file):
    from esszoo.data.source import open_source

    whole = xr.load_dataset(station_file)
    (tmp_path / "parts").mkdir()
    for k, part in enumerate([slice(0, 100), slice(100, 250), slice(250, None)]):
        whole.isel(time=part).to_netcdf(tmp_path / "parts" / f"stations_{k}.nc")
    combined = open_source(str(tmp_path / "parts" / "stations_*.nc"))
    assert combined["tas"].chunks is not None  # lazy, through dask
    xr.testing.assert_identical(combined.load(), whole)


def test_grib_without_cfgrib_is_one_clear_line(tmp_path, monkeypatch):
    import importlib.util

    from esszoo.data.source import open_source

    path = tmp_path / "forecast.grib2"
    path.write_bytes(b"GRIB" + b"\x00" * 60)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cfgrib" else real(name, *a)
    )
    with pytest.raises(DataError, match="cfgrib is not installed; pip install cfgrib eccodes"):
        open_source(path)


def test_a_fraction_of_device_memory_outside_0_to_1_is_refused_in_one_line(tmp_path):
    from esszoo.errors import RecipeError
    from esszoo.recipe import load_recipe
    from tests.conftest import tiny_recipe_dict, write_recipe

    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe_dict(tmp_path / "runs"))
    for value in ("2", "-0.1"):
        with pytest.raises(RecipeError, match="data_on_device") as error:
            load_recipe(recipe, [f"trainer.data_on_device={value}"])
        assert "\n" not in str(error.value).strip()


def test_coordinates_are_found_without_formatting_the_data(monkeypatch):
    """OSTIA's fields name a grid_mapping variable that a selection leaves out; cf_xarray
    would format the whole array into an error it drops, on every lookup (a second per
    call on a stack of global fields). The lookup reads the coordinates alone."""
    field = xr.DataArray(
        np.zeros((2, 3, 4), dtype=np.float32),
        dims=("time", "lat", "lon"),
        coords={"lat": [-10.0, 0.0, 10.0], "lon": [0.0, 90.0, 180.0, 270.0]},
        name="sst",
        attrs={"grid_mapping": "crs"},  # no variable 'crs'
    )
    formatted = []
    original = xr.Variable.__repr__
    monkeypatch.setattr(
        xr.Variable, "__repr__", lambda self: formatted.append(self.dims) or original(self)
    )
    assert horizontal(field, "latitude").name == "lat"
    assert horizontal(field, "longitude").name == "lon"
    assert formatted == []
