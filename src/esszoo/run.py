"""What training, evaluation and prediction share: run directories, data, tasks, score tables.

A run directory (``runs/NAME/``) holds the resolved ``recipe.yaml``, the checkpoint pair
``model.safetensors`` + ``model.json``, ``metrics.csv`` (loss by epoch), ``scores.csv``
(test scores beside the baselines), the plots, and ``checkpoints/last.ckpt`` to resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from esszoo.data.coords import require_time_dim
from esszoo.data.dataset import SplitData, Table
from esszoo.data.kinds import DataContext, kind_of
from esszoo.data.source import open_source
from esszoo.errors import DataError, RecipeError, RunError
from esszoo.fileio import make_folder
from esszoo.predictor import predict_in_batches
from esszoo.recipe import Recipe, load_recipe
from esszoo.tasks import task_class
from esszoo.tasks.baselines import headline_losses
from esszoo.units import converter

RECIPE_FILE = "recipe.yaml"
LOCK_FILE = ".lock"


def build_data(recipe: Recipe) -> SplitData:
    """The recipe's data, split and masked, in physical units, shaped for its task: built
    by the data kind whose options the recipe's data section holds."""
    from esszoo.registry import model_card

    volume = len(model_card(recipe.model.name).example_input) == 5
    context = DataContext(seed=recipe.trainer.seed, volume=volume)
    dataset = open_source(recipe.data.source)
    options = recipe.data
    if options.split.dim is None:  # the data's time axis, found by its CF attributes
        split = options.split.model_copy(update={"dim": require_time_dim(dataset)})
        options = options.model_copy(update={"split": split})
    data = kind_of(options).build(dataset, options, context)
    return with_bounds(data, options.bounds)


def with_bounds(data: SplitData, bounds: dict[str, Any]) -> SplitData:
    """`data` whose target variables carry the recipe's bounds (converted to their units),
    where it gives some; else they keep their CF valid range."""
    unknown = sorted(set(bounds) - {v.name for v in data.targets})
    if unknown:
        raise RecipeError(
            f"data.bounds names {unknown}, not target variables {[v.name for v in data.targets]}",
            "give bounds of the variables the model predicts",
        )
    targets = []
    for variable in data.targets:
        bound = bounds.get(variable.name)
        if bound is None:
            targets.append(variable)
            continue
        convert = converter(bound.units, variable.units, variable.name) if bound.units else None
        low, high = (
            None if v is None else float(convert(np.float64(v)) if convert else v)
            for v in (bound.min, bound.max)
        )
        targets.append(dataclasses.replace(variable, valid_min=low, valid_max=high))
    return dataclasses.replace(data, targets=targets)


def build_task(recipe: Recipe, net: torch.nn.Module) -> Any:
    return task_class(recipe.task.name)(net, recipe.task, recipe.trainer)


def run_recipe(run_dir: str | Path) -> Recipe:
    """The resolved recipe a run was trained with."""
    path = Path(run_dir) / RECIPE_FILE
    if not path.is_file():
        raise RunError(
            f"'{run_dir}' is not a run directory (no {RECIPE_FILE})",
            "give a directory written by `esszoo train`, e.g. runs/emulate_precip",
        )
    return load_recipe(path)


class RunLock:
    """Refuse a second process writing to the same run directory."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE

    def __enter__(self) -> RunLock:
        make_folder(self.path.parent)
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(owner):
                    raise RunError(
                        f"run directory '{self.path.parent}' is in use by process {owner}",
                        "wait for it to finish, or train under another name (name=...)",
                    ) from None
                self.path.unlink(missing_ok=True)  # left by a process that died
                continue
            with os.fdopen(handle, "w") as lock:
                lock.write(str(os.getpid()))
            return self
        raise RunError(f"cannot lock run directory '{self.path.parent}'")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a run that failed before writing anything
            self.path.parent.rmdir()  # leaves no empty folder behind (rmdir: only if empty)

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def seconds_per_sample(
    predict: Callable[..., torch.Tensor], *inputs: torch.Tensor, repeats: int = 3
) -> float:
    """Best of `repeats` timings of predicting all samples of `inputs`, per sample."""
    predict_in_batches(predict, *(t[:256] for t in inputs))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict_in_batches(predict, *inputs)
        best = min(best, time.perf_counter() - start)
    return best / len(inputs[0])


_SHARED_BASELINES: dict[str, dict[str, torch.Tensor]] | None = None


@contextlib.contextmanager
def shared_baselines() -> Iterator[None]:
    """Within it, the baselines' predictions of a split are made once for each data, task
    and seed, not once per run: the trials of a search share them (DINEOF, say, takes a
    minute on the flagship's test split)."""
    global _SHARED_BASELINES
    previous, _SHARED_BASELINES = _SHARED_BASELINES, {}
    try:
        yield
    finally:
        _SHARED_BASELINES = previous


def score_rows(
    task: Any,
    predictor: torch.nn.Module,
    data: SplitData,
    split: str = "test",
    model_label: str = "model",
    same_baselines: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor], torch.Tensor]:
    """Scores of the model and of the task's baselines on one split, with the predictions
    and the truth to plot (for data streamed from disk: of the split's first block).
    `same_baselines`: a key of what the baselines depend on, under which `shared_baselines`
    keeps their predictions."""
    if data.streamed:
        return _score_blocks(task, predictor, data, split, model_label)
    table = data.tables[split]
    predictor.eval()
    predictions = {model_label: task.apply(predictor, table)}
    key = f"{same_baselines}/{split}" if same_baselines else None
    if key and _SHARED_BASELINES is not None and key in _SHARED_BASELINES:
        print(f"the baselines' {split} predictions of an earlier run of the same data are used")
        predictions |= _SHARED_BASELINES[key]
        return _scored(task, predictions, data, table, split, model_label)
    baselines = task.baselines(data)
    if table.x.dim() > 2:  # baselines of fields may take a while: say what is running
        print(f"scoring the baselines on the {split} split: {', '.join(baselines)}", flush=True)
    with torch.inference_mode():
        for name, baseline in baselines.items():
            started = time.perf_counter()
            predictions[f"baseline: {name}"] = baseline(table)
            if time.perf_counter() - started > 3:
                print(f"  {name}: {time.perf_counter() - started:.0f} s", flush=True)
    if key and _SHARED_BASELINES is not None:
        _SHARED_BASELINES[key] = {k: v for k, v in predictions.items() if k != model_label}
    return _scored(task, predictions, data, table, split, model_label)


def _scored(
    task: Any,
    predictions: dict[str, torch.Tensor],
    data: SplitData,
    table: Any,
    split: str,
    model_label: str,
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor], torch.Tensor]:
    rows = [
        {"predictor": name, "split": split, "samples": len(table)}
        | task.score(prediction, table.y, data, table)
        for name, prediction in predictions.items()
    ]
    headline_losses(rows, task.headline, [model_label])
    return with_units(rows, data), predictions, table.y


def _score_blocks(
    task: Any, predictor: torch.nn.Module, data: SplitData, split: str, model_label: str
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor], torch.Tensor]:
    """`score_rows` a block at a time: scores accumulate, memory holds one block. Samples
    whose inputs are all missing are left out, as they are from data held in memory."""
    predictor.eval()
    baselines = {f"baseline: {n}": b for n, b in task.baselines(data).items()}
    scores = {name: task.scorer(data) for name in [model_label, *baselines]}
    shown, samples = None, 0
    for block in data.tables[split].blocks():
        keep = torch.isfinite(block.x).flatten(1).any(1)
        kept = keep.numpy()
        block = Table(
            block.x[keep], block.y[keep], coords={k: v[kept] for k, v in block.coords.items()}
        )
        if not len(block):
            continue
        samples += len(block)
        predictions = {model_label: predict_in_batches(predictor, block.x)}
        with torch.inference_mode():
            predictions |= {name: baseline(block) for name, baseline in baselines.items()}
        for name, prediction in predictions.items():
            scores[name].add(prediction, block.y)
        if shown is None:
            shown = (predictions, block.y)
    if shown is None:
        raise DataError(f"the {split} split has no sample with any input value")
    rows = [
        {"predictor": name, "split": split, "samples": samples} | total.result()
        for name, total in scores.items()
    ]
    headline_losses(rows, task.headline, [model_label])
    return with_units(rows, data), *shown


# scores in the targets' units
UNIT_SCORES = ("rmse", "mae", "bias", "area_mean_err", "crps", "rmse_of_mean", "spread")


def with_units(rows: list[dict[str, Any]], data: SplitData) -> list[dict[str, Any]]:
    """Score rows with the units of their rmse, mae, bias ... (the targets' units)."""
    units = ", ".join(dict.fromkeys(v.units for v in data.targets if v.units))
    if data.classes or not units:
        return rows
    return [row | {"units": units} for row in rows]


def task_inputs(table: Any) -> tuple[torch.Tensor, ...]:
    """What a predictor of this table is called with: x, and the mask where there is one."""
    return (table.x,) if table.mask is None else (table.x, table.mask)


def print_table(
    rows: list[dict[str, Any]], title: str, scores: tuple[str, ...] | None = None
) -> None:
    """A table of score rows on the terminal; only `scores` (and the predictor, run and
    verdict columns) where a task names the few that fit a terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    # per-class recalls and the split's name and size stay in scores.csv and the title
    columns = [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if key not in ("split", "samples", "units")
        and not key.startswith("recall_")
        and (scores is None or key in ("run", "predictor", "us_per_sample", "loses_to", *scores))
    ]
    units = next((row["units"] for row in rows if row.get("units")), "")
    for column in columns:
        header = f"{column} ({units})" if units and column in UNIT_SCORES else column
        table.add_column(header, justify="left" if column == "predictor" else "right")
    for row in rows:
        table.add_row(*[_format(row.get(column)) for column in columns])
    Console(width=160).print(table)


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows of scores as CSV, written atomically."""
    import csv
    import io

    from esszoo.fileio import write_text

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())
