"""Hostile inputs: each one gets one line on stderr, exit status 2, and leaves every file
as it was (nothing lost, nothing half-written, no run left behind)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.conftest import run_cli, tiny_recipe_dict, write_recipe

CASES: dict[str, Callable] = {}
UNITS = {"tas": "K", "ps": "Pa", "huss": "kg kg-1"}


def case(function: Callable) -> Callable:
    CASES[function.__name__] = function
    return function


class Place:
    """A scratch folder with real station data, a recipe for it and a finished run."""

    def __init__(self, root: Path, station_file: Path, trained_run: Path):
        self.root = root
        self.stations = station_file
        self.run = root / "run"
        shutil.copytree(trained_run, self.run, ignore=shutil.ignore_patterns("checkpoints"))

    def recipe(self, **changes) -> Path:
        out_dir = changes.pop("out_dir", self.root / "runs")
        return write_recipe(self.root / "r.yaml", tiny_recipe_dict(out_dir, **changes))

    def text_recipe(self, text: str) -> Path:
        path = self.root / "r.yaml"
        path.write_text(text)
        return path

    def data(self, dataset: xr.Dataset, name: str = "bad.nc") -> Path:
        path = self.root / name
        for variable in dataset.variables.values():
            variable.encoding = {}  # the source's chunking may not fit the changed data
        dataset.to_netcdf(path)
        return path

    def stations_with(self, change: Callable[[xr.Dataset], xr.Dataset]) -> Path:
        return self.data(change(xr.load_dataset(self.stations)))

    def train_on(self, path: Path) -> list:
        return ["train", self.recipe(**{"data.source": str(path)})]


# -- data files ----------------------------------------------------------------------------


@case
def missing_file(p):
    return p.train_on(p.root / "absent.nc"), "no such file"


@case
def empty_file(p):
    (p.root / "empty.nc").write_bytes(b"")
    return p.train_on(p.root / "empty.nc"), "empty.nc"


@case
def truncated_netcdf(p):
    (p.root / "cut.nc").write_bytes(p.stations.read_bytes()[:2000])
    return p.train_on(p.root / "cut.nc"), "cut.nc"


@case
def text_posing_as_netcdf(p):
    (p.root / "notes.nc").write_text("temperature was 280 K\n")
    return p.train_on(p.root / "notes.nc"), "notes.nc"


@case
def folder_posing_as_zarr(p):
    (p.root / "store.zarr").mkdir()
    return p.train_on(p.root / "store.zarr"), "store.zarr"


@case
def unknown_file_type(p):
    (p.root / "data.grib7").write_bytes(b"GRIB")
    return p.train_on(p.root / "data.grib7"), "data.grib7"


@case
def text_variable(p):
    def change(ds):
        return ds.assign(tas=ds["tas"].astype(str))

    return p.train_on(p.stations_with(change)), "tas"


@case
def nan_only_variable(p):
    return p.train_on(p.stations_with(lambda ds: ds.assign(ps=ds["ps"] * np.nan))), "ps"


@case
def zero_length_time(p):
    return p.train_on(p.stations_with(lambda ds: ds.isel(time=slice(0, 0)))), "time"


@case
def time_not_in_order(p):
    return p.train_on(p.stations_with(lambda ds: ds.isel(time=np.r_[5:50, 0:5]))), "time"


@case
def repeated_times(p):
    def change(ds):
        return ds.isel(time=np.r_[0:50, 10:20])

    return p.train_on(p.stations_with(change)), "time"


@case
def infinite_values(p):
    def change(ds):
        values = ds["tas"].values.copy()
        values[:] = np.inf
        return ds.assign(tas=(ds["tas"].dims, values, ds["tas"].attrs))

    return p.train_on(p.stations_with(change)), "tas"


@case
def unknown_variable(p):
    return ["train", p.recipe(**{"data.inputs": ["tas", "ps", "hus"]})], "hus"


@case
def csv_with_words(p):
    frame = xr.load_dataset(p.stations).to_dataframe().reset_index()
    frame["tas"] = "warm"
    frame.to_csv(p.root / "words.csv", index=False)
    return p.train_on(p.root / "words.csv"), "tas"


@case
def predict_units_that_do_not_convert(p):
    def change(ds):
        return ds.assign(tas=ds["tas"].assign_attrs(units="kg m-2"))

    data = p.stations_with(change)
    return ["predict", p.run, "--data", data, "--out", p.root / "o.nc"], "cannot be converted"


@case
def predict_missing_variable(p):
    bad = p.stations_with(lambda ds: ds.drop_vars("huss"))
    return ["predict", p.run, "--data", bad, "--out", p.root / "o.nc"], "huss"


@case
def predict_values_beyond_float32(p):
    def change(ds):
        values = ds["tas"].values.astype(np.float64)
        values[0] = 1e39  # finite in the file, infinite in the network's float32
        return ds.assign(tas=(ds["tas"].dims, values, ds["tas"].attrs))

    data = p.stations_with(change)
    return ["predict", p.run, "--data", data, "--out", p.root / "o.nc"], "float32 range"


@case
def predict_over_its_own_input(p):
    return ["predict", p.run, "--data", p.stations, "--out", p.stations], "stations.nc"


@case
def predict_into_a_folder_that_is_a_file(p):
    (p.root / "taken").write_text("a file")
    return ["predict", p.run, "--data", p.stations, "--out", p.root / "taken" / "o.nc"], "taken"


@case
def huge_dimension(p):
    import dask.array

    huge = dask.array.zeros((10**6, 3, 10**5), chunks=(10**5, 3, 10**4), dtype="float32")
    ds = xr.Dataset(
        {name: (("time", "station", "x"), huge, {"units": u}) for name, u in UNITS.items()},
        coords={"time": np.arange(10**6)},
    )
    ds.to_zarr(p.root / "huge.zarr", compute=False)  # the metadata only: nothing is written
    return p.train_on(p.root / "huge.zarr"), "GiB in memory"


@case
def pattern_matching_no_file(p):
    return p.train_on(p.root / "nothing" / "*.nc"), "no file matches"


@case
def time_axis_that_cannot_be_decoded(p):
    def change(ds):
        ds = ds.copy()
        ds["time"] = ("time", np.arange(ds.sizes["time"], dtype=float))
        ds["time"].attrs = {"units": "hours since the start", "calendar": "standard"}
        return ds

    path = p.root / "undecodable.nc"
    change(xr.load_dataset(p.stations)).to_netcdf(path)
    return p.train_on(path), "cannot be decoded"


@case
def truncated_grib(p):
    (p.root / "cut.grib2").write_bytes(b"GRIB" + b"\x00" * 60)
    return p.train_on(p.root / "cut.grib2"), "cut.grib2"


# -- recipes -------------------------------------------------------------------------------


@case
def yaml_syntax_error(p):
    return ["train", p.text_recipe("name: x\nmodel: {name: mlp\n")], "r.yaml"


@case
def empty_recipe(p):
    return ["train", p.text_recipe("")], "r.yaml"


@case
def recipe_is_a_list(p):
    return ["train", p.text_recipe("- name\n- model\n")], "r.yaml"


@case
def missing_recipe(p):
    return ["train", p.root / "nowhere.yaml"], "nowhere.yaml"


@case
def unknown_recipe_key(p):
    return ["train", p.recipe(**{"trainer.max_epoch": 5})], "max_epochs"


@case
def wrong_value_type(p):
    return ["train", p.recipe(**{"trainer.batch_size": "many"})], "batch_size"


@case
def negative_batch_size(p):
    return ["train", p.recipe(**{"trainer.batch_size": -4})], "batch_size"


@case
def zero_epochs(p):
    return ["train", p.recipe(**{"trainer.max_epochs": 0})], "max_epochs"


@case
def split_over_one(p):
    return ["train", p.recipe(**{"data.split": {"train": 0.8, "val": 0.3, "test": 0.2}})], "split"


@case
def split_dates_outside_the_data(p):
    split = {
        "train": ["1990-01-01", "1990-02-01"],
        "val": ["1990-02-02", "1990-03-01"],
        "test": ["1990-03-02", "1990-04-01"],
    }
    return ["train", p.recipe(**{"data.split": split})], "1990"


@case
def unknown_model(p):
    return ["train", p.recipe(**{"model.name": "mpl"})], "mlp"


@case
def unknown_model_argument(p):
    return ["train", p.recipe(**{"model.widht": 8})], "width"


@case
def unknown_task(p):
    return ["train", p.recipe(**{"task": {"name": "regresion"}})], "regression"


@case
def name_climbing_out_of_the_runs(p):
    return ["train", p.recipe(name="../../outside")], "name"


@case
def name_with_a_slash(p):
    return ["train", p.recipe(name="a/b")], "name"


@case
def out_dir_is_a_file(p):
    (p.root / "runs_file").write_text("not a folder")
    return ["train", p.recipe(out_dir=str(p.root / "runs_file"))], "runs_file"


@case
def override_without_value(p):
    return ["train", p.recipe(), "trainer.max_epochs"], "trainer.max_epochs"


@case
def override_of_unknown_key(p):
    return ["train", p.recipe(), "trainer.epochs=3"], "epochs"


@case
def unknown_catalog_entry(p):
    return ["train", p.recipe(**{"data.source": "era5"})], "era5"


@case
def resume_without_a_run(p):
    return ["train", p.recipe(), "--resume"], "nothing to resume"


@case
def inpainting_of_a_station_series(p):
    changes = {"model": {"name": "pconv_unet"}, "task": {"name": "inpainting"}}
    return ["train", p.recipe(**changes, **{"data.inputs": ["tas"]})], "fields"


@case
def translation_of_a_station_series(p):
    changes = {"model": {"name": "unet"}, "task": {"name": "translation"}}
    return ["train", p.recipe(**changes, **{"data.inputs": ["tas"]})], "fields"


@case
def streaming_a_station_series(p):
    changes = {"model": {"name": "unet"}, "task": {"name": "translation"}}
    recipe = p.recipe(**changes, **{"data.targets": ["ps"], "data.stream": True})
    return ["train", recipe], "fields"


@case
def bounds_of_a_variable_that_is_not_a_target(p):
    return ["train", p.recipe(**{"data.bounds": {"tas": {"min": 200}}})], "data.bounds names"


@case
def bounds_in_units_that_do_not_convert(p):
    bounds = {"pr": {"min": 0, "units": "K"}}
    return ["train", p.recipe(**{"data.bounds": bounds})], "cannot be converted"


@case
def option_of_another_task(p):
    return ["train", p.recipe(**{"task.dice_weight": 1.0})], "option of segmentation"


def detection_recipe(p, model: str = "detr", rule: str = "rain_cells", variable: str = "") -> Path:
    """A detection recipe on 40 frames of a small synthetic radar field."""
    times = np.arange("2018-05-10T00:00", "2018-05-10T03:20", 5, dtype="datetime64[m]")
    rain = np.zeros((len(times), 16, 16), dtype=np.float32)
    rain[:, 4:8, 4:8] = 1.0
    attrs = {"standard_name": variable or "rainfall_amount", "units": "kg m-2"}
    radar = xr.Dataset({"rain": (("time", "y", "x"), rain, attrs)}, coords={"time": times})
    path = p.data(radar, "radar.nc")
    return p.text_recipe(
        f"name: d\nout_dir: {p.root / 'runs'}\nmodel: {{name: {model}}}\n"
        f"data: {{source: {path}, inputs: [rain], object_rule: {rule}, "
        "window: {past: 2, future: 1, stride: 2}}\n"
        "task: {name: detection}\ntrainer: {max_epochs: 1, progress_bar: false}\n"
    )


@case
def detection_by_an_unknown_object_rule(p):
    return ["train", detection_recipe(p, rule="rain_cellz")], "unknown object rule 'rain_cellz'"


@case
def detection_of_rain_cells_in_a_temperature(p):
    recipe = detection_recipe(p, variable="air_temperature")
    return ["train", recipe], "reads rainfall_amount"


@case
def detection_with_a_model_that_is_not_a_detector(p):
    return ["train", detection_recipe(p, model="resnet18")], "does not detect objects"


def search_of(p, space: dict | None = None, *options: str) -> list:
    space = {"trainer.lr": {"low": 1e-3, "high": 1e-2}} if space is None else space
    return ["search", p.recipe(**{"search.space": space}), *options]


@case
def search_by_an_unknown_method(p):
    return search_of(p, None, "--method", "bayes"), "unknown search method 'bayes'"


@case
def cell_search_of_a_model_that_is_not_a_network_of_cells(p):
    return search_of(p, None, "--method", "darts"), "set model.name to darts"


@case
def cell_search_with_a_shared_storage(p):
    url = "sqlite:///search.db"
    return search_of(p, None, "--method", "enas", "--storage", url), "--storage is for the studies"


@case
def nas_rl_layer_search_with_even_filter_sizes(p):
    recipe = p.recipe(**{"search.layers": {"heights": [2, 4]}})
    return ["search", recipe, "--method", "nas-rl"], "each odd and positive"


@case
def nas_rl_search_of_a_range_of_real_numbers(p):
    return search_of(p, None, "--method", "nas-rl"), "give trainer.lr as a list"


@case
def search_with_a_budget_of_zero(p):
    return search_of(p, None, "--budget", "0"), "budget of 0 trials"


@case
def search_with_a_storage_that_cannot_be_opened(p):
    url = "postgresql://nobody@127.0.0.1:1/nothing"
    return search_of(p, None, "--storage", url), "cannot open the study's storage"


@case
def search_of_a_space_that_leaves_nothing_to_search(p):
    return search_of(p, {"model.width": [8]}), "leaves nothing to search"


@case
def search_of_a_recipe_without_a_space(p):
    return ["search", p.recipe()], "has no search space"


@case
def search_among_models_one_of_which_is_unknown(p):
    return search_of(p, {"model.name": ["mlp", "mlpp"]}), "unknown model 'mlpp'"


def forecast_recipe(p, window: str, task: str = "{name: forecasting}", select: str = "{}") -> Path:
    return p.text_recipe(
        f"name: f\nout_dir: {p.root / 'runs'}\nmodel: {{name: lstm, width: 4}}\n"
        f"data: {{source: {p.stations}, inputs: [tas], window: {window}, select: {select}}}\n"
        f"task: {task}\ntrainer: {{max_epochs: 1, progress_bar: false}}\n"
    )


@case
def forecast_window_longer_than_a_split(p):
    recipe = forecast_recipe(p, "{past: 5000, future: 24}")
    return ["train", recipe], "fewer than a window of 5000 + 24"


@case
def forecast_quantiles_out_of_order(p):
    recipe = forecast_recipe(
        p, "{past: 24, future: 6}", "{name: forecasting, quantiles: [0.9, 0.1]}"
    )
    return ["train", recipe], "quantile levels must be increasing"


@case
def forecast_a_station_the_data_do_not_have(p):
    recipe = forecast_recipe(p, "{past: 24, future: 6}", select="{station: ['999999']}")
    return ["train", recipe], "asks for ['999999'], and 'station' holds ['723170', '703165']"


@case
def forecast_select_along_a_dimension_that_is_not_there(p):
    recipe = forecast_recipe(p, "{past: 24, future: 6}", select="{site: ['723170']}")
    return ["train", recipe], "'site', which is not a dimension"


@case
def forecast_without_a_window(p):
    return ["train", forecast_recipe(p, "null")], "window"


@case
def import_of_a_missing_module(p):
    return ["train", p.recipe(imports=["no_such_module_here"])], "no module"


@case
def streaming_for_regression(p):
    return ["train", p.recipe(**{"data.stream": True})], "option of the data of translation"


@case
def stream_block_of_zero(p):
    return ["train", p.recipe(), "data.stream_block=0"], "stream_block"


@case
def compile_neither_on_nor_off(p):
    return ["train", p.recipe(), "trainer.compile=sometimes"], "compile"


# -- checkpoints ---------------------------------------------------------------------------


@case
def run_without_model_json(p):
    (p.run / "model.json").unlink()
    return ["evaluate", p.run], "model.json"


@case
def truncated_model_json(p):
    text = (p.run / "model.json").read_text()
    (p.run / "model.json").write_text(text[: len(text) // 2])
    return ["evaluate", p.run], "model.json"


@case
def model_json_lies_about_shapes(p):
    description = json.loads((p.run / "model.json").read_text())
    description["model"]["arguments"]["width"] = 2 * description["model"]["arguments"]["width"]
    (p.run / "model.json").write_text(json.dumps(description))
    return ["evaluate", p.run], "weights"


@case
def model_json_names_no_model(p):
    description = json.loads((p.run / "model.json").read_text())
    description["model"]["name"] = "nonet"
    (p.run / "model.json").write_text(json.dumps(description))
    return ["evaluate", p.run], "nonet"


@case
def pickle_posing_as_weights(p):
    import pickle

    (p.run / "model.safetensors").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}))
    return ["evaluate", p.run], "safetensors"


@case
def weights_changed_after_saving(p):
    weights = bytearray((p.run / "model.safetensors").read_bytes())
    weights[-4:] = b"\x00\x00\x80\x7f"  # the last number becomes infinity
    (p.run / "model.safetensors").write_bytes(bytes(weights))
    return ["evaluate", p.run], "sha256"


@case
def folder_that_is_not_a_run(p):
    (p.root / "empty_run").mkdir()
    return ["evaluate", p.root / "empty_run"], "empty_run"


@case
def export_to_unknown_format(p):
    return ["export", p.run, "--format", "tflite"], "tflite"


@case
def sample_from_a_run_that_is_not_generative(p):
    return ["sample", p.run, "--n", 4, "--out", p.root / "s.nc"], "generation runs"


@case
def sample_no_fields(p):
    return ["sample", p.run, "--n", 0, "--out", p.root / "s.nc"], "at least one"


@case
def generation_without_a_discriminator_step(p):
    task = {"name": "generation", "discriminator_steps": 0}
    return ["train", p.recipe(task=task)], "discriminator_steps"


@case
def a_steps_ensemble_of_one_member(p):
    return ["train", p.recipe(task={"name": "translation", "steps_members": 1})], "steps_members"


# -- the harness ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_one_line_exit_2_and_loses_nothing(
    name, tmp_path, station_file, trained_run, capsys
):
    place = Place(tmp_path / "place", station_file, trained_run)
    args, fragment = CASES[name](place)
    capsys.readouterr()  # what setting the case up printed
    before = snapshot(tmp_path)
    status, _, err = run_cli([str(a) for a in args], capsys)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("esszoo: error: "), err
    assert fragment in lines[0], lines[0]
    assert snapshot(tmp_path) == before  # nothing lost, changed or half-written


def test_the_table_holds_at_least_fifty_hostile_inputs():
    assert len(CASES) >= 50
