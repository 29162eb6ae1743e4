"""Data larger than memory: translation streamed from a Zarr store a block at a time."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from esszoo.data.source import open_source
from esszoo.data.stream import StreamBatches
from esszoo.errors import DataError, RecipeError
from esszoo.evaluation import evaluate_run
from esszoo.recipe import load_recipe
from esszoo.run import build_data, build_task
from esszoo.training import train
from tests.conftest import write_recipe


@pytest.fixture(scope="module")
def ostia_zarr(tmp_path_factory):
    """Real OSTIA monthly SST (5S-5N, 54 months) as a Zarr store in chunks of 4 months."""
    path = tmp_path_factory.mktemp("stream") / "ostia.zarr"
    dataset = open_source("ostia").load().chunk({"time": 4})
    dataset.to_zarr(path, consolidated=False)
    return path


def recipe_dict(tmp_path, source, **data) -> dict:
    return {
        "name": "stream",
        "model": {"name": "unet", "width": 2, "padding": "earth"},
        "data": {
            "source": str(source),
            "inputs": ["surface_temperature"],
            "window": {"past": 3, "future": 1},
            "stream_block": 4,
            "stream_workers": 0,
        }
        | data,
        "task": {"name": "translation"},
        "trainer": {"max_epochs": 2, "batch_size": 4, "progress_bar": False, "precision": "32"},
        "out_dir": str(tmp_path / "runs"),
    }


def scores(run_dir) -> dict[str, dict[str, float]]:
    with open(run_dir / "scores.csv") as handle:
        return {row.pop("predictor"): row for row in csv.DictReader(handle)}


def test_streamed_data_give_the_statistics_and_baselines_of_data_in_memory(tmp_path, ostia_zarr):
    """The same windows, statistics and baseline scores whether the store is read whole or
    a block of 4 months at a time."""
    recipes = {}
    for stream in (False, True):
        recipe = recipe_dict(tmp_path, ostia_zarr, stream=stream)
        recipe["name"] = f"stream_{stream}"
        recipes[stream] = write_recipe(tmp_path / f"{stream}.yaml", recipe)
    loaded = {s: build_data(load_recipe(path)) for s, path in recipes.items()}
    assert not loaded[False].streamed and loaded[True].streamed
    for split in ("train", "val", "test"):
        assert len(loaded[True].tables[split]) == len(loaded[False].tables[split])
    blocks = list(loaded[True].train.blocks())
    assert len(blocks) > 3 and all(len(b) <= 4 for b in blocks)
    whole = torch.cat([b.x for b in blocks])
    assert torch.equal(whole.nan_to_num(), loaded[False].train.x.nan_to_num())
    tasks = {}
    for stream, data in loaded.items():
        recipe = load_recipe(recipes[stream])
        shape = {"in_channels": 3, "out_channels": 1}
        tasks[stream] = build_task(
            recipe, __import__("esszoo").create_model("unet", width=2, **shape)
        )
        tasks[stream].fit(data)
    for key, value in tasks[False].stats.items():
        torch.testing.assert_close(tasks[True].stats[key], value, rtol=1e-6, atol=1e-6)

    runs = {s: train(recipes[s]) for s in (False, True)}
    memory, streamed = (scores(runs[s]) for s in (False, True))
    baselines = [name for name in memory if name.startswith("baseline: ")]
    assert len(baselines) == 4 and set(baselines) == {n for n in streamed if n != "unet"}
    for name in baselines:
        for metric in ("rmse", "mae", "bias", "corr"):
            assert float(streamed[name][metric]) == pytest.approx(
                float(memory[name][metric]), rel=1e-6, abs=1e-6
            )
    assert streamed["unet"]["samples"] == memory["unet"]["samples"]
    # the network sees the same samples in another order: the same skill, not the same bits
    assert float(streamed["unet"]["rmse"]) == pytest.approx(float(memory["unet"]["rmse"]), rel=0.05)
    again = {row["predictor"]: row for row in evaluate_run(runs[True])}  # block by block too
    assert again["unet"]["rmse"] == pytest.approx(float(streamed["unet"]["rmse"]), rel=1e-6)


def test_many_netcdf_files_stream_like_one_store(tmp_path, ostia_zarr):
    dataset = open_source("ostia").load()
    for year, part in dataset.groupby("time.year"):
        part.to_netcdf(tmp_path / f"ostia_{year}.nc")
    pattern = recipe_dict(tmp_path, tmp_path / "ostia_*.nc", stream=True)
    store = recipe_dict(tmp_path, ostia_zarr, stream=True)
    many, one = (
        build_data(load_recipe(write_recipe(tmp_path / f"{n}.yaml", r)))
        for n, r in (("many", pattern), ("one", store))
    )
    assert many.streamed and len(many.test) == len(one.test)
    for a, b in zip(many.test.blocks(), one.test.blocks(), strict=True):
        assert torch.equal(a.y.nan_to_num(), b.y.nan_to_num())


def test_stream_batches_show_every_sample_once_per_epoch_in_a_seeded_order(
    tmp_path, ostia_zarr, monkeypatch
):
    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", recipe_dict(tmp_path, ostia_zarr, stream=True))
    )
    data = build_data(recipe)

    def times(batches):  # each sample is known by its first input value at a sea point
        return [float(v) for batch in batches for v in batch["x"][:, 0, 9, 200]]

    def make(**options):
        return StreamBatches(data.train, lambda t: {"x": t.x}, 4, workers=0, **options)

    ordered = times(make())
    first = make(shuffle=True, seed=1)
    epoch0 = times(first)
    first.set_epoch(1)
    epoch1 = times(first)
    assert sorted(epoch0) == sorted(ordered) == sorted(epoch1)
    assert epoch0 != ordered and epoch0 != epoch1
    assert times(make(shuffle=True, seed=1)) == epoch0  # the same seed and epoch: same order
    # two processes (DDP) take every other block, wrapped round so both get as many batches
    shards = []
    for rank in range(2):
        monkeypatch.setattr("esszoo.data.stream.process_world", lambda rank=rank: (2, rank))
        shards.append(times(make(shuffle=True, seed=1)))
        assert len(list(make(shuffle=True, seed=1))) == len(make(shuffle=True, seed=1))
    assert set(shards[0]) | set(shards[1]) == set(ordered)
    assert len(set(shards[0]) & set(shards[1])) <= 4  # at most one block, seen twice


def test_worker_processes_read_the_blocks(tmp_path, ostia_zarr):
    """Spawned workers (no state of the store's readers shared) give the batches the
    main process gives."""
    recipe = load_recipe(
        write_recipe(tmp_path / "r.yaml", recipe_dict(tmp_path, ostia_zarr, stream=True))
    )
    data = build_data(recipe)
    task = build_task(
        recipe, __import__("esszoo").create_model("unet", width=2, in_channels=3, out_channels=1)
    )
    task.fit(data)
    transform = task.transform(data)
    here = list(StreamBatches(data.val, transform, 4, workers=0))
    there = list(StreamBatches(data.val, transform, 4, workers=2))
    assert len(here) == len(there) > 1
    for a, b in zip(here, there, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key])


def test_streaming_is_for_translation(tmp_path, ostia_zarr):
    recipe = recipe_dict(tmp_path, ostia_zarr, stream=True)
    recipe["task"] = {"name": "segmentation"}
    recipe["data"]["label_rule"] = "rain_intensity"
    with pytest.raises(RecipeError, match="'data.stream' .* option of the data of translation"):
        load_recipe(write_recipe(tmp_path / "seg.yaml", recipe))
    recipe = recipe_dict(tmp_path, ostia_zarr, stream=True)
    del recipe["data"]["window"]
    with pytest.raises(DataError, match="need target variables or a window"):
        build_data(load_recipe(write_recipe(tmp_path / "ae.yaml", recipe)))


def large_store(path, steps: int, height: int = 256, width: int = 512) -> int:
    """A Zarr store of two global fields (`sst` and `skin`, a linear function of it) over
    `steps` times, written chunk by chunk so that it is never in memory; its bytes."""
    import dask.array as da
    import numpy as np
    import pandas as pd
    import xarray as xr

    def sst(block, block_info=None):
        (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        t, y, x = np.ogrid[t0:t1, y0:y1, x0:x1]
        waves = 2 * np.sin(2 * np.pi * (x / width + t / 97.0))
        return (280 + 10 * np.cos(np.pi * (y / height - 0.5)) + waves).astype(np.float32)

    shape, chunks = (steps, height, width), (8, height, width)
    field = da.zeros(shape, chunks=chunks, dtype=np.float32).map_blocks(sst, dtype=np.float32)
    dataset = xr.Dataset(
        {
            "sst": (("time", "lat", "lon"), field, {"units": "K"}),
            "skin": (("time", "lat", "lon"), 0.5 * field + 150, {"units": "K"}),
        },
        coords={
            "time": pd.date_range("2000-01-01", periods=steps, freq="6h"),
            "lat": np.linspace(-89.6, 89.6, height),
            "lon": np.linspace(0, 359.3, width),
        },
    )
    dataset.to_zarr(path, consolidated=False)
    return dataset.nbytes


def test_training_on_a_store_three_times_a_memory_cap_stays_under_it(tmp_path):
    """A store of 3.1 GiB of values trains, validates and is scored by a process whose peak
    resident memory stays under 1 GiB (the interpreter with torch and Lightning alone takes
    about 450 MB). Blocks are read in the training process (stream_workers: 0), so that
    one process holds everything measured: spawned workers would be processes of their own."""
    cap = 2**30
    store = tmp_path / "large.zarr"
    assert large_store(store, steps=3200) > 3 * cap
    recipe = {
        "name": "large",
        "model": {"name": "unet", "width": 1},
        "data": {
            "source": str(store),
            "inputs": ["sst"],
            "targets": ["skin"],
            "stream": True,
            "stream_block": 8,
            "stream_workers": 0,
        },
        "task": {"name": "translation"},
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False, "precision": "32"},
        "out_dir": str(tmp_path / "runs"),
    }
    path = write_recipe(tmp_path / "large.yaml", recipe)
    # a parent of its own, so that the peak is the training process's and nobody else's
    measure = (
        "import resource, subprocess, sys; "
        f"subprocess.run([sys.executable, '-m', 'esszoo', 'train', '{path}'], check=True, "
        "stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure], capture_output=True, text=True, check=True
    )
    peak = int(result.stdout.split()[-1])
    assert peak < cap, f"peak resident memory {peak / 2**20:.0f} MiB"
    rows = scores(tmp_path / "runs" / "large")
    assert int(rows["unet"]["samples"]) == 480  # the test split: 15% of 3200 times
    # skin is linear in sst, at every point alike
    assert float(rows["baseline: linear regression (pooled)"]["rmse"]) < 1e-3
    assert float(rows["baseline: linear regression (per point)"]["rmse"]) < 1e-3


def test_a_block_with_no_valid_value_is_an_outage_not_an_error(tmp_path):
    """Months 8-15 missing everywhere (a satellite outage) fill whole blocks of the store:
    streaming reads them, trains around them (no input: no loss) and scores without them."""
    dataset = open_source("ostia").load()
    dataset["surface_temperature"][8:16] = float("nan")
    dataset.chunk({"time": 4}).to_zarr(tmp_path / "outage.zarr", consolidated=False)
    recipe = recipe_dict(tmp_path, tmp_path / "outage.zarr", stream=True)
    recipe["trainer"]["max_epochs"] = 1
    run_dir = train(write_recipe(tmp_path / "outage.yaml", recipe))
    rows = scores(run_dir)
    assert all(float(row["rmse"]) > 0 for row in rows.values())


def test_a_training_split_without_any_value_is_one_clear_error(tmp_path):
    dataset = open_source("ostia").load()
    dataset["surface_temperature"][:40] = float("nan")  # the training months (0.7 x 54)
    dataset.chunk({"time": 4}).to_zarr(tmp_path / "blank.zarr", consolidated=False)
    recipe = write_recipe(
        tmp_path / "b.yaml", recipe_dict(tmp_path, tmp_path / "blank.zarr", stream=True)
    )
    with pytest.raises(DataError, match="training split holds no valid value"):
        train(recipe)
    assert not (tmp_path / "runs" / "stream").exists()  # nothing left behind


@pytest.mark.parametrize("stream", [False, True])
def test_coarsening_a_dimension_the_fields_lack_is_one_clear_error(tmp_path, ostia_zarr, stream):
    recipe = recipe_dict(tmp_path, ostia_zarr, stream=stream, coarsen={"level": 2})
    with pytest.raises(DataError, match="not grid dimensions"):
        build_data(load_recipe(write_recipe(tmp_path / "c.yaml", recipe)))
