"""Shared fixtures: real TMY3 data (from the catalog), tiny recipes and one trained run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tqdm
import xarray as xr
import yaml

from esszoo.data.source import open_source

# pytest-xdist runs one process per core: more than one thread in each oversubscribes the
# cores, and torch's thread pools then spin against each other (measured: 10x slower steps)
# (runs take their threads from OMP_NUM_THREADS too, esszoo.threads; so do subprocesses)
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"

# no tqdm monitor thread: a thread that wakes while a test reads NetCDF may collect (close)
# a file the main thread has open again, which netCDF-C, not thread-safe, reports as an
# HDF error (seen once in CI)
tqdm.tqdm.monitor_interval = 0


@pytest.fixture(scope="session")
def tmy3() -> xr.Dataset:
    return open_source("tmy3").load()


def tiny_recipe_dict(out_dir: Path, **changes) -> dict:
    recipe = {
        "name": "tiny",
        "model": {"name": "mlp", "depth": 2, "width": 32},
        "data": {
            "source": "tmy3",
            "inputs": ["tas", "ps", "huss"],
            "physics": "mixed_column_precipitation",
        },
        "trainer": {
            "max_epochs": 3,
            "batch_size": 256,
            "lr": 3e-3,
            "progress_bar": False,
            "precision": "32",
        },
        "out_dir": str(out_dir),
    }
    for key, value in changes.items():
        node = recipe
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "tiny.yaml", tiny_recipe_dict(tmp_path / "runs"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small emulator, trained once per test process, for the tests that read a run."""
    from esszoo.training import train

    folder = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(folder / "tiny.yaml", tiny_recipe_dict(folder / "runs"))
    return train(recipe)


@pytest.fixture
def station_file(tmp_path: Path, tmy3: xr.Dataset) -> Path:
    """Two weeks of real TMY3 hours as NetCDF, with the emulator's inputs."""
    path = tmp_path / "stations.nc"
    tmy3[["tas", "ps", "huss"]].isel(time=slice(0, 336)).to_netcdf(path)
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run `esszoo ARGS` in this process; return (exit status, stdout, stderr)."""
    from esszoo.cli import main

    argv = sys.argv
    sys.argv = ["esszoo", *map(str, args)]
    try:
        main()
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def nan_like(array: xr.DataArray) -> xr.DataArray:
    return xr.full_like(array, np.nan)
