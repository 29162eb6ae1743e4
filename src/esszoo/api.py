"""esszoo from Python, on objects already in memory, as a notebook user works::

    import esszoo
    run = esszoo.train("recipes/emulate_precip.yaml", trainer={"max_epochs": 5}, name="short")
    run.scores                                      # the test scores beside the baselines
    filled = esszoo.predict(run, my_dataset)        # an xarray.Dataset in, one out
    esszoo.evaluate(run, split="val")               # the score table as a DataFrame

The same checks as the command line (variables, units, grid) and the same one-line
errors (`esszoo.EsszooError`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from esszoo.errors import RecipeError, RunError


@dataclass(frozen=True)
class Run:
    """A run directory written by `esszoo.train`."""

    path: Path

    @property
    def scores(self) -> pd.DataFrame:
        """The test scores of the model and its baselines (scores.csv)."""
        scores = self.path / "scores.csv"
        if not scores.is_file():
            raise RunError(f"'{self.path}' holds no scores.csv", "train the run to its end")
        return pd.read_csv(scores, keep_default_na=False, na_values=[""])

    @property
    def model(self) -> Any:
        """The trained model in physical units (`esszoo.load`)."""
        from esszoo.checkpoint import load

        return load(self.path)

    @property
    def recipe(self) -> Any:
        from esszoo.run import run_recipe

        return run_recipe(self.path)

    def __fspath__(self) -> str:
        return str(self.path)


def _merged(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`raw` with `overrides` set into it; sections given as dicts are merged key by key."""
    merged = copy.deepcopy(raw)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def train(
    recipe: str | Path | dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    **overrides: Any,
) -> Run:
    """Train a recipe (a YAML path or a dict), with sections or keys overridden by keyword
    (``trainer={"max_epochs": 5}``, ``name="short"``); return the run."""
    from esszoo.recipe import read_yaml, validate
    from esszoo.training import train_recipe

    if isinstance(recipe, dict):
        raw, where = recipe, "the recipe given"
    elif isinstance(recipe, str | Path):
        raw, where = read_yaml(recipe), str(recipe)
    else:
        raise RecipeError(f"a recipe is a YAML path or a dict, not {type(recipe).__name__}")
    validated = validate(_merged(raw, overrides), where=where)
    return Run(train_recipe(validated, resume=resume, overwrite=overwrite))


def _run_path(run: Run | str | Path) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def predict(run: Run | str | Path, dataset: xr.Dataset, *, regrid: bool = False) -> xr.Dataset:
    """The run's predictions for `dataset`, with its coordinates, in its order of points."""
    from esszoo.checkpoint import load
    from esszoo.prediction import predict_dataset

    if not isinstance(dataset, xr.Dataset):
        raise RunError(
            f"esszoo.predict takes an xarray.Dataset, not {type(dataset).__name__}",
            "wrap a DataArray with .to_dataset(), or open a file with xarray.open_dataset",
        )
    from esszoo.data.variables import honour_valid_range

    return predict_dataset(load(_run_path(run)), honour_valid_range(dataset), regrid=regrid)


def evaluate(run: Run | str | Path, split: str = "test") -> pd.DataFrame:
    """The scores of the run's model and its baselines on `split`, as a table."""
    from esszoo.evaluation import evaluate_run

    if split not in ("train", "val", "test"):
        raise RunError(f"unknown split '{split}'", "choose train, val or test")
    return pd.DataFrame(evaluate_run(_run_path(run), split))
