"""Property-based fuzzing: whatever a recipe or a data file holds, esszoo either accepts it
or says what is wrong in an EsszooError; it never fails with another exception."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esszoo.data.fields import field_data, paired_fields
from esszoo.data.source import open_source
from esszoo.data.tabular import tabular_data
from esszoo.errors import EsszooError
from esszoo.recipe import load_recipe

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

KEYS = ["name", "model", "data", "task", "trainer", "out_dir", "init_from", "bogus"]
SECTION_KEYS = [
    "name", "width", "depth", "source", "inputs", "targets", "split", "window", "gaps",
    "max_epochs", "batch_size", "lr", "precision", "devices", "schedule", "train", "val",
    "test", "dim", "loss", "class_weights", "seed", "early_stopping", "zzz",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(SECTION_KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)


def load(text: str, overrides: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.yaml"
        path.write_text(text)
        with contextlib.suppress(EsszooError):
            load_recipe(path, overrides)


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
def test_any_recipe_mapping_is_accepted_or_refused_clearly(recipe):
    load(yaml.safe_dump(recipe))


@FUZZ
@given(st.text(max_size=200))
def test_any_recipe_text_is_accepted_or_refused_clearly(text):
    load(text)


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=4))
def test_any_override_is_accepted_or_refused_clearly(overrides):
    load("name: x\nmodel: {name: mlp}\ndata: {source: tmy3, inputs: [tas]}\n", overrides)


@st.composite
def datasets(draw) -> xr.Dataset:
    """Small data sets of awkward shapes, types, missing values, units and times."""
    times = draw(st.integers(0, 12))
    height, width = draw(st.integers(0, 5)), draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["float32", "float64", "int16", "bool", "str"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = rng.normal(280, 5, size=(times, height, width))
    values[rng.random(values.shape) < draw(st.floats(0, 1))] = np.nan
    means = np.nanmean(values, axis=(1, 2)) if height * width else np.full(times, np.nan)

    def typed(array: np.ndarray) -> np.ndarray:
        if kind == "str":
            return array.astype(str)
        return array.astype(kind) if kind.startswith("float") else np.nan_to_num(array).astype(kind)

    start = np.datetime64("2000-01-01")
    stamps = start + np.array(draw(st.permutations(range(times))), dtype="timedelta64[D]")
    units = draw(st.sampled_from(["K", "", "degC", "m s-1"]))
    field = xr.DataArray(typed(values), dims=("time", "lat", "lon"), attrs={"units": units})
    series = xr.DataArray(
        rng.normal(size=times).astype("float32"), dims=("time",), attrs={"units": "1"}
    )
    return xr.Dataset(
        {"a": field, "b": xr.DataArray(typed(means), dims=("time",)), "c": series},
        coords={"time": stamps, "lat": np.linspace(-5, 5, height), "lon": np.arange(width)},
    )


@FUZZ
@given(datasets(), st.sampled_from(["table", "fields", "pairs"]))
def test_any_data_is_accepted_or_refused_clearly(dataset, door):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.nc"
        dataset.to_netcdf(path)
        try:
            opened = open_source(str(path))
            if door == "table":
                tabular_data(opened, inputs=["b"], targets=["c"])
            elif door == "fields":
                field_data(opened, inputs=["a"], label_rule_name="rain_intensity")
            else:
                paired_fields(opened, inputs=["a"])
        except EsszooError:
            pass
