"""A scientist's own files: the built-in data written as other producers write them.

Each form either gives the same result as the original or one clear line: grids flipped,
rolled, transposed or with longitudes in -180..180, Ferret/GrADS-style coordinate names
with CF attributes only, a year-0 climatology, a noleap calendar, other unit spellings, a
GRIB2 file written with ecCodes, extra global attributes and time bounds. The verbs are
called from Python on objects in memory (`esszoo.train`, `esszoo.predict`,
`esszoo.evaluate`), as a notebook user calls them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import esszoo
from esszoo.data.source import open_source
from esszoo.errors import DataError, EsszooError
from tests.conftest import run_cli, write_recipe

TRAINER = {"max_epochs": 1, "batch_size": 8, "progress_bar": False, "precision": "32"}
SST = "surface_temperature"


@pytest.fixture(scope="module")
def ostia() -> xr.Dataset:
    return open_source("ostia").load()


@pytest.fixture(scope="module")
def radar() -> xr.Dataset:
    days = open_source("radolan").sel(time=slice("2018-05-10", "2018-05-11T23:55"))
    coarse = days.coarsen(y=4, x=4, boundary="trim").mean().load()
    coarse["rainfall_amount"].attrs = days["rainfall_amount"].attrs
    return coarse


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ostia, radar) -> dict[str, esszoo.Run]:
    """One small run of every field task, trained from Python on data in files."""
    folder = tmp_path_factory.mktemp("own")
    ostia.to_netcdf(folder / "ostia.nc")
    radar.to_netcdf(folder / "radar.nc")
    sst = {"source": str(folder / "ostia.nc"), "inputs": [SST]}
    rain = {"source": str(folder / "radar.nc"), "inputs": ["rainfall_amount"]}
    window = {"past": 2, "future": 2, "stride": 4}
    recipes = {
        "inpainting": (
            {"name": "pconv_unet", "encoder_layers": 2, "width": 4, "padding": "earth"},
            sst | {"gaps": {"train": 1, "eval": 1}},
            {"name": "inpainting", "anomalies": True},
        ),
        "translation": (
            {"name": "unet", "width": 2, "padding": "earth"},
            sst | {"window": {"past": 2, "future": 1}},
            {"name": "translation"},
        ),
        "segmentation": (
            {"name": "unet", "width": 2},
            rain | {"window": window, "label_rule": "rain_intensity"},
            {"name": "segmentation"},
        ),
        "classification": (
            {"name": "lenet5"},
            rain | {"label_rule": "rain_category"},
            {"name": "classification"},
        ),
    }
    return {
        task: esszoo.train(
            {"name": task, "model": model, "data": data, "task": options, "trainer": TRAINER},
            out_dir=str(folder / "runs"),
        )
        for task, (model, data, options) in recipes.items()
    }


def to_original(predicted: xr.Dataset, names: dict[str, str] | None = None) -> xr.Dataset:
    """Predictions on a reworked grid, put back on the original's names, order and range."""
    predicted = predicted.rename(names or {})
    if "lon" in predicted.coords:
        predicted = predicted.assign_coords(lon=predicted["lon"] % 360)
    return predicted.sortby([d for d in ("lat", "lon") if d in predicted.dims])


def same(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in a.data_vars:
        np.testing.assert_allclose(
            b[name].transpose(*a[name].dims).values, a[name].values, atol=1e-4, equal_nan=True
        )


SST_FORMS = {
    "latitudes descending": lambda ds: (ds.isel(lat=slice(None, None, -1)), {}),
    "longitudes rolled": lambda ds: (ds.roll(lon=100, roll_coords=True), {}),
    "longitudes -180..180": lambda ds: (
        ds.assign_coords(lon=(ds["lon"] + 180) % 360 - 180).sortby("lon"),
        {},
    ),
    "transposed": lambda ds: (ds.transpose("time", "lon", "lat"), {}),
    "Ferret names, CF attributes only": lambda ds: (
        ferret(ds),
        {"TIME": "time", "YT": "lat", "XT": "lon"},
    ),
}


def ferret(ds: xr.Dataset) -> xr.Dataset:
    """Ferret/GrADS style: upper-case names nothing guesses, CF units the only clue."""
    out = ds.rename(time="TIME", lat="YT", lon="XT")
    out["YT"].attrs = {"units": "degrees_north"}
    out["XT"].attrs = {"units": "degrees_east"}
    out["TIME"].attrs = {}
    return out


@pytest.mark.parametrize("task", ["inpainting", "translation"])
@pytest.mark.parametrize("form", sorted(SST_FORMS))
def test_the_same_sst_points_in_another_form_give_the_same_predictions(runs, ostia, task, form):
    expected = esszoo.predict(runs[task], ostia)
    reworked, names = SST_FORMS[form](ostia)
    predicted = esszoo.predict(runs[task], reworked)
    for name in predicted.data_vars:  # written back in the data's own order
        assert [d for d in predicted[name].dims if d in reworked.dims] == [
            d for d in reworked[SST].dims if d in predicted[name].dims
        ]
    same(expected, to_original(predicted, names))


RADAR_FORMS = {  # a regional grid does not wrap: its points reordered are flips and transposes
    "rows upside down": lambda ds: ds.isel(y=slice(None, None, -1)),
    "columns mirrored": lambda ds: ds.isel(x=slice(None, None, -1)),
    "both flipped": lambda ds: ds.isel(y=slice(None, None, -1), x=slice(None, None, -1)),
    "transposed": lambda ds: ds.transpose("time", "x", "y"),
}


@pytest.mark.parametrize("task", ["segmentation", "classification"])
@pytest.mark.parametrize("form", sorted(RADAR_FORMS))
def test_a_radar_grid_in_another_order_gives_the_same_predictions(runs, radar, task, form):
    expected = esszoo.predict(runs[task], radar)
    reworked = RADAR_FORMS[form](radar)
    predicted = esszoo.predict(runs[task], reworked)
    spatial = [d for d in ("y", "x") if d in predicted.dims]  # classification has none
    for name in predicted.data_vars:  # written back in the data's own order
        assert [d for d in predicted[name].dims if d in spatial] == [
            d for d in reworked["rainfall_amount"].dims if d in spatial
        ]
    if spatial and form != "transposed":
        predicted = RADAR_FORMS[form](predicted)  # a flip undone is the original order
    same(expected, predicted)


def test_another_grid_is_refused_in_one_line_or_regridded_when_asked(runs, ostia, tmp_path, capsys):
    coarse = ostia.coarsen(lon=2).mean()
    with pytest.raises(DataError, match=r"grid differs.*'lon'.*216 points.*432 points"):
        esszoo.predict(runs["inpainting"], coarse)
    regridded = esszoo.predict(runs["translation"], coarse, regrid=True)
    assert regridded.sizes["lon"] == 432  # on the model's grid
    coarse.to_netcdf(tmp_path / "coarse.nc")
    args = ["predict", runs["translation"].path, "--data", tmp_path / "coarse.nc"]
    status, _, err = run_cli([*args, "--out", tmp_path / "a.nc"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "--regrid" in err
    assert not (tmp_path / "a.nc").exists()
    status, _, err = run_cli([*args, "--out", tmp_path / "b.nc", "--regrid"], capsys)
    assert status == 0 and xr.load_dataset(tmp_path / "b.nc").sizes["lon"] == 432, err


def test_a_year_zero_climatology_is_read_and_written_back_as_it_was(runs, ostia, tmp_path, capsys):
    months = ostia.isel(time=slice(0, 12))
    days = np.arange(12) * 30.4 + 15.0
    climatology = months.assign_coords(time=("time", days)).assign_attrs(title="climatology")
    climatology["time"].attrs = {
        "units": "days since 0000-01-01 00:00:00",
        "calendar": "standard",
        "climatology": "climatology_bounds",
    }
    bounds = np.stack([days - 15, days + 15], axis=1)
    climatology["climatology_bounds"] = (("time", "nv"), bounds)
    path = tmp_path / "climatology.nc"
    climatology.to_netcdf(path, encoding={"time": {"dtype": "f8"}})
    opened = open_source(path)
    assert opened["time"].values[0].year == 0 and opened["time"].values[0].month == 1
    out = tmp_path / "filled.nc"
    run_dir = runs["inpainting"].path
    status, _, err = run_cli(["predict", run_dir, "--data", path, "--out", out], capsys)
    assert status == 0, err
    filled = xr.load_dataset(out, decode_times=False)
    assert filled["time"].attrs["units"] == "days since 0000-01-01 00:00:00"
    np.testing.assert_allclose(filled["time"].values, days)
    assert "climatology_bounds" in filled.variables  # the bounds of the times written
    same(esszoo.predict(runs["inpainting"], months)[[SST]], open_source(out)[[SST]])


def test_a_noleap_calendar_trains_splits_by_dates_and_predicts(ostia, tmp_path):
    noleap = ostia.convert_calendar("noleap")
    path = tmp_path / "noleap.nc"
    noleap.to_netcdf(path)
    split = {
        "train": ["2006-01", "2008-12"],
        "val": ["2009-01", "2009-06"],
        "test": ["2009-07", "2010-12"],
    }
    run = esszoo.train(
        {
            "name": "noleap",
            "model": {"name": "unet", "width": 2, "padding": "earth"},
            "data": {"source": str(path), "inputs": [SST], "window": {"past": 2, "future": 1}}
            | {"split": split},
            "task": {"name": "translation"},
            "trainer": TRAINER,
            "out_dir": str(tmp_path / "runs"),
        }
    )
    scores = run.scores.set_index("predictor")
    assert "baseline: climatology (calendar month)" in scores.index
    predicted = esszoo.predict(run, open_source(path))
    assert predicted["time"].values[0].calendar == "noleap"


def test_unit_spellings_agree_and_convertible_units_are_converted(runs, ostia):
    expected = esszoo.predict(runs["inpainting"], ostia)
    celsius = ostia.assign({SST: (ostia[SST] - 273.15).assign_attrs(units="Deg C")})
    predicted = esszoo.predict(runs["inpainting"], celsius)
    assert predicted[SST].attrs["units"] == "Deg C"  # written back in the data's units
    np.testing.assert_allclose(
        predicted[SST].values + 273.15, expected[SST].values, atol=1e-3, equal_nan=True
    )
    assert "converted from Deg C to K" in predicted.attrs["history"]
    metres = ostia.assign({SST: ostia[SST].assign_attrs(units="m")})
    with pytest.raises(DataError, match="'m', which cannot be converted to the 'K'"):
        esszoo.predict(runs["inpainting"], metres)


def write_grib2(sst: xr.DataArray, path) -> None:
    """Fields written with ecCodes as a GRIB2 producer writes them: north to south,
    paramId 34 (sea surface temperature), a bitmap for land."""
    import eccodes

    lat, lon = sst["lat"].values.astype(float), sst["lon"].values.astype(float)
    with open(path, "wb") as out:
        for k, time in enumerate(pd.DatetimeIndex(sst["time"].values)):
            handle = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
            for key, value in {
                "Ni": len(lon),
                "Nj": len(lat),
                "latitudeOfFirstGridPointInDegrees": lat[-1],
                "latitudeOfLastGridPointInDegrees": lat[0],
                "longitudeOfFirstGridPointInDegrees": lon[0],
                "longitudeOfLastGridPointInDegrees": lon[-1],
                "iDirectionIncrementInDegrees": float(lon[1] - lon[0]),
                "jDirectionIncrementInDegrees": float(lat[1] - lat[0]),
                "jScansPositively": 0,
                "dataDate": int(time.strftime("%Y%m%d")),
                "dataTime": int(time.strftime("%H%M")),
                "paramId": 34,
                "bitmapPresent": 1,
                "missingValue": 9999,
                "bitsPerValue": 24,
            }.items():
                eccodes.codes_set(handle, key, value)
            values = sst.values[k][::-1]
            eccodes.codes_set_values(handle, np.where(np.isnan(values), 9999, values).ravel())
            eccodes.codes_write(handle, out)
            eccodes.codes_release(handle)


def test_a_grib2_file_written_with_eccodes_gives_the_same_fill(runs, ostia, tmp_path):
    months = ostia.isel(time=slice(40, 46))
    path = tmp_path / "sst.grib2"
    write_grib2(months[SST], path)
    grib = open_source(path)
    assert "valid_time" in grib.dims and list(tmp_path.glob("*.idx")) == []  # nothing written
    predicted = esszoo.predict(runs["inpainting"], grib.rename(sst=SST))
    expected = esszoo.predict(runs["inpainting"], months)
    back = predicted.drop_vars("time").rename(latitude="lat", longitude="lon", valid_time="time")
    back = back.sortby("lat")
    np.testing.assert_allclose(back[SST].values, expected[SST].values, atol=2e-3, equal_nan=True)
    (tmp_path / "truncated.grib2").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(EsszooError, match="truncated.grib2"):
        open_source(tmp_path / "truncated.grib2")[list(grib.data_vars)[0]].values  # noqa: B018


def test_predictions_keep_the_files_attributes_and_time_bounds(runs, ostia, tmp_path, capsys):
    given = ostia.assign_attrs(
        title="OSTIA monthly SST",
        institution="Met Office",
        references="Donlon et al. 2012",
        license="OGL",
        history="2020-01-01 made by hand",
    )
    times = given["time"].values
    given["time_bnds"] = (("time", "bnds"), np.stack([times - np.timedelta64(15, "D"), times], 1))
    given["time"].attrs["bounds"] = "time_bnds"
    path, out = tmp_path / "given.nc", tmp_path / "out.nc"
    given.to_netcdf(path)
    status, _, err = run_cli(
        ["predict", runs["inpainting"].path, "--data", path, "--out", out], capsys
    )
    assert status == 0, err
    written = xr.load_dataset(out)
    for key in ("title", "institution", "references", "license"):
        assert written.attrs[key] == given.attrs[key]
    history = written.attrs["history"].splitlines()
    assert history[0] == "2020-01-01 made by hand" and "esszoo" in history[1]
    assert written["time"].attrs["bounds"] == "time_bnds"
    np.testing.assert_array_equal(written["time_bnds"].values, given["time_bnds"].values)
    assert written[SST].attrs["units"] == "K"


def test_a_field_without_latitude_says_so_in_the_log_and_the_card(tmp_path, capsys):
    frames = open_source("ostia").load()[[SST]]
    anonymous = frames.rename(lat="row", lon="column").drop_vars(["row", "column"])
    anonymous.to_netcdf(tmp_path / "anonymous.nc")
    run = esszoo.train(
        {
            "name": "anonymous",
            "model": {"name": "unet", "width": 2},
            "data": {"source": str(tmp_path / "anonymous.nc"), "inputs": [SST]}
            | {"window": {"past": 2, "future": 1}},
            "task": {"name": "translation"},
            "trainer": TRAINER,
            "out_dir": str(tmp_path / "runs"),
        }
    )
    assert "note: no latitude found for 'surface_temperature'" in capsys.readouterr().out
    card = json.loads((run.path / "model.json").read_text())
    assert card["grid"]["area_weights"] == "none: no latitude"
    assert "no latitude" in card["notes"][0]


def test_from_python_the_verbs_take_and_return_objects_in_memory(runs, ostia):
    run = runs["translation"]
    table = esszoo.evaluate(run)
    assert isinstance(table, pd.DataFrame) and table["predictor"].iloc[0] == "unet"
    assert "baseline: linear regression (per point)" in set(table["predictor"])
    assert list(run.scores["predictor"]) == list(table["predictor"])
    predicted = esszoo.predict(run, ostia)
    assert isinstance(predicted, xr.Dataset) and "lead_time" in predicted.dims
    with pytest.raises(DataError, match="lack the model's input variable"):
        esszoo.predict(run, ostia.rename({SST: "sst"}))
    with pytest.raises(EsszooError, match="takes an xarray.Dataset"):
        esszoo.predict(run, ostia[SST])
    with pytest.raises(EsszooError, match="unknown recipe key 'trainer.max_epoch'"):
        esszoo.train(run.path / "recipe.yaml", trainer={"max_epoch": 1})
    write_recipe(run.path.parent / "copy.yaml", {})  # an empty mapping is no recipe
    with pytest.raises(EsszooError, match="missing"):
        esszoo.train(run.path.parent / "copy.yaml")
