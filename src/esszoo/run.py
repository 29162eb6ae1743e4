"""What training, evaluation and prediction share: run directories, data, tasks, score tables.

A run directory (``runs/NAME/``) holds the resolved ``recipe.yaml``, the checkpoint pair
``model.safetensors`` + ``model.json``, ``metrics.csv`` (loss by epoch), ``scores.csv``
(test scores beside the baselines), the plots, and ``checkpoints/last.ckpt`` to resume.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from esszoo.data.dataset import SplitData, Table
from esszoo.data.fields import field_data, paired_fields
from esszoo.data.inpainting import inpainting_data
from esszoo.data.source import open_source
from esszoo.data.stream import streamed_fields
from esszoo.data.tabular import tabular_data
from esszoo.data.windows import window_data
from esszoo.errors import DataError, RecipeError, RunError
from esszoo.fileio import make_folder
from esszoo.recipe import Recipe, load_recipe
from esszoo.tasks import task_class

RECIPE_FILE = "recipe.yaml"
LOCK_FILE = ".lock"


def build_data(recipe: Recipe) -> SplitData:
    """The recipe's data, split and masked, in physical units, shaped for its task."""
    spec = recipe.data
    dataset = open_source(spec.source)
    in_time = dict(
        split_dim=spec.split.dim, train=spec.split.train, val=spec.split.val, test=spec.split.test
    )
    split = in_time | dict(shuffle=spec.split.shuffle, seed=recipe.trainer.seed)
    kind = task_class(recipe.task.name).data_kind
    if kind == "inpainting":
        if len(spec.inputs) != 1:
            raise RecipeError("inpainting reconstructs one variable: give one name in data.inputs")
        train_on = spec.train_on
        return inpainting_data(
            dataset,
            variable=spec.inputs[0],
            **in_time,
            gap_sources=tuple(spec.gaps.sources),
            train_gaps=spec.gaps.train,
            eval_gaps=spec.gaps.eval,
            seed=recipe.trainer.seed,
            train_on=open_source(train_on.source) if train_on else None,
            train_variable=train_on.variable if train_on else None,
        )
    if spec.stream and (kind != "windows" or spec.label_rule):
        raise RecipeError(
            f"data.stream serves translation (fields to fields), not task '{recipe.task.name}'",
            "set data.stream: false, or select a smaller region or period",
        )
    if kind == "windows":
        from esszoo.registry import model_card

        window = spec.window
        volume = len(model_card(recipe.model.name).example_input) == 5
        if spec.stream:
            return streamed_fields(
                dataset,
                inputs=spec.inputs,
                targets=spec.targets or None,
                window=(window.past, window.future, window.stride) if window else None,
                volume=volume,
                coarsen=spec.coarsen,
                **in_time,
                block=spec.stream_block,
            )
        if window is None and task_class(recipe.task.name).same_time_pairs:
            return paired_fields(
                dataset,
                inputs=spec.inputs,
                targets=spec.targets or None,
                volume=volume,
                coarsen=spec.coarsen,
                **in_time,
            )
        if window is None:
            raise RecipeError(
                f"task '{recipe.task.name}' learns from windows of fields: give data.window",
                "e.g. window: {past: 6, future: 6, stride: 3}",
            )
        return window_data(
            dataset,
            inputs=spec.inputs,
            past=window.past,
            future=window.future,
            stride=window.stride,
            volume=volume,
            point_rule=spec.label_rule,
            coarsen=spec.coarsen,
            **in_time,
        )
    if kind == "fields":
        if spec.physics:
            raise RecipeError("data.physics makes regression targets, not class labels")
        return field_data(
            dataset,
            inputs=spec.inputs,
            targets=spec.targets or None,
            label_rule_name=spec.label_rule,
            coarsen=spec.coarsen,
            **split,
        )
    if spec.label_rule or spec.coarsen:
        raise RecipeError(
            "data.label_rule and data.coarsen apply to fields, not to tables",
            "remove them, or use a task on fields (classification)",
        )
    return tabular_data(
        dataset, inputs=spec.inputs, targets=spec.targets or None, physics=spec.physics, **split
    )


def build_task(recipe: Recipe, net: torch.nn.Module) -> Any:
    return task_class(recipe.task.name)(net, recipe.task, recipe.trainer)


def model_label(recipe: Recipe) -> str:
    """How a run's model is named in tables: its model, and the physics of a hybrid."""
    if recipe.task.residual_of:
        return f"hybrid: {recipe.model.name} + {recipe.task.residual_of}"
    return recipe.model.name


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


@torch.inference_mode()
def predict_in_batches(
    predict: Callable[..., torch.Tensor], *inputs: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """Predictions for all samples of `inputs`, a batch at a time (8192 vectors or 32 fields)."""
    size = batch_size or (8192 if inputs[0].dim() <= 2 else 32)
    count = len(inputs[0])
    return torch.cat([predict(*(t[i : i + size] for t in inputs)) for i in range(0, count, size)])


def seconds_per_sample(
    predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int = 3
) -> float:
    """Best of `repeats` timings of predicting all of `x`, per sample."""
    predict_in_batches(predict, x[:256])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict_in_batches(predict, x)
        best = min(best, time.perf_counter() - start)
    return best / len(x)


def score_rows(
    task: Any,
    predictor: torch.nn.Module,
    data: SplitData,
    split: str = "test",
    model_label: str = "model",
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor], torch.Tensor]:
    """Scores of the model and of the task's baselines on one split, with the predictions
    and the truth to plot (for data streamed from disk: of the split's first block)."""
    if data.streamed:
        return _score_blocks(task, predictor, data, split, model_label)
    table = data.tables[split]
    inputs = task_inputs(table)
    predictor.eval()
    predictions = {model_label: predict_in_batches(predictor, *inputs)}
    with torch.inference_mode():
        for name, baseline in task.baselines(data).items():
            predictions[f"baseline: {name}"] = baseline(table)
    rows = [
        {"predictor": name, "split": split, "samples": len(table)}
        | task.score(prediction, table.y, data, table)
        for name, prediction in predictions.items()
    ]
    return rows, predictions, table.y


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
        block = Table(block.x[keep], block.y[keep])
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
    return rows, *shown


def task_inputs(table: Any) -> tuple[torch.Tensor, ...]:
    """What a predictor of this table is called with: x, and the mask where there is one."""
    return (table.x,) if table.mask is None else (table.x, table.mask)


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """A table of score rows on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    # per-class recalls and the split's name and size stay in scores.csv and the title
    columns = [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if key not in ("split", "samples") and not key.startswith("recall_")
    ]
    for column in columns:
        table.add_column(column, justify="left" if column == "predictor" else "right")
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
