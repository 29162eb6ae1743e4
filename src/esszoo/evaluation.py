"""Evaluate a finished run, and compare runs with their baselines and with the physics.

`evaluate_run` rebuilds the run's data from its resolved recipe, loads its checkpoint and
scores it beside the task's baselines. `compare_runs` puts several runs on the same data
in one table; when their targets come from a hand-written physics function, the table
also holds the physics itself (and its cheaper variants) with the time per sample of
every predictor, measured in this process on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from esszoo.checkpoint import load
from esszoo.data.dataset import SplitData, Table
from esszoo.data.tabular import physics_columns
from esszoo.errors import RunError
from esszoo.physics import FUNCTIONS, physics_function
from esszoo.predictor import physics_base
from esszoo.run import (
    build_data,
    build_task,
    print_table,
    run_recipe,
    score_rows,
    seconds_per_sample,
    task_inputs,
    with_units,
    write_csv,
)
from esszoo.tasks.baselines import headline_losses


def evaluate_run(run_dir: str | Path, split: str = "test") -> list[dict[str, Any]]:
    """Scores of a run's model and its baselines on `split`, printed and returned."""
    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    predictor = load(run_dir)
    data = build_data(recipe)
    _check_same_variables(predictor.description, data, run_dir)
    task = build_task(recipe, predictor.net)
    rows, _, _ = score_rows(task, predictor, data, split, model_label=task.label(recipe.model.name))
    print_table(
        rows,
        f"{recipe.name}: {split} split ({len(data.tables[split])} samples)",
        task.printed_scores,
    )
    return rows


def _check_same_variables(description: dict[str, Any], data: SplitData, run_dir: Path) -> None:
    trained = [v["name"] for v in description.get("inputs", [])]
    now = [v.name for v in data.inputs]
    if trained != now:
        raise RunError(
            f"the checkpoint in '{run_dir}' was trained on inputs {trained}, "
            f"but its recipe now gives {now}",
            "restore the run's recipe.yaml or train again",
        )


def compare_runs(run_dirs: list[str | Path], out: str | Path | None = None) -> list[dict]:
    """One table of runs on the same test data, with baselines, physics and timings."""
    if not run_dirs:
        raise RunError("no runs to compare", "give one or more run directories")
    torch.set_grad_enabled(False)
    first = run_recipe(run_dirs[0])
    data = build_data(first)
    rows: list[dict[str, Any]] = []
    test = data.test
    for run_dir in run_dirs:
        recipe = run_recipe(run_dir)
        if recipe.data.model_dump() != first.data.model_dump():
            raise RunError(
                f"run '{run_dir}' was trained on other data than '{run_dirs[0]}'",
                "compare only runs with the same data section",
            )
        predictor = load(run_dir)
        _check_same_variables(predictor.description, data, Path(run_dir))
        task = build_task(recipe, predictor.net)
        label = task.label(recipe.model.name)
        if data.streamed:  # scored a block at a time, not timed
            scored, _, _ = score_rows(task, predictor, data, "test", model_label=label)
            rows.append({"run": recipe.name} | scored[0])
            continue
        inputs = task_inputs(test)
        prediction = task.apply(predictor, test)
        rows.append(
            {"predictor": label, "run": recipe.name}
            | task.score(prediction, test.y, data, test)
            | {"us_per_sample": 1e6 * seconds_per_sample(applied(task, predictor), *inputs)}
        )
    if data.streamed:
        scored, _, _ = score_rows(task, predictor, data, "test")
        rows += [{"run": ""} | row for row in scored[1:]]
    else:
        rows += _baseline_rows(task, data)
    if data.physics:
        rows += _physics_rows(data, task)
    models = [row["predictor"] for row in rows if row["run"]]
    headline_losses(rows, task.headline, models)
    rows = with_units(rows, data)
    write_path = Path(out) if out else None
    if write_path:
        write_csv(rows, write_path)
    title = f"{first.data.source}, test split ({len(test)} samples); us_per_sample on this CPU"
    print_table(rows, title, task.printed_scores)
    return rows


def _baseline_rows(task: Any, data: SplitData) -> list[dict[str, Any]]:
    """The task's baselines scored on the test split; timed for vectors only (timing
    the baselines of fields, DINEOF among them, would cost minutes and say little)."""
    test, rows = data.test, []
    vectors = test.x.dim() == 2
    for name, baseline in task.baselines(data).items():

        def on_inputs(x: torch.Tensor, baseline=baseline) -> torch.Tensor:
            return baseline(replace(test, x=x, y=test.y[: len(x)]))

        timing = {"us_per_sample": 1e6 * seconds_per_sample(on_inputs, test.x)} if vectors else {}
        rows.append(
            {"predictor": f"baseline: {name}", "run": ""}
            | task.score(baseline(test), test.y, data, test)
            | timing
        )
    return rows


def _physics_rows(data: SplitData, task: Any) -> list[dict[str, Any]]:
    """The reference physics and its registered variants with the same output, timed."""
    reference = physics_function(data.physics)
    rows = []
    for function in FUNCTIONS.values():
        if function.outputs != reference.outputs or function.inputs != reference.inputs:
            continue
        columns = physics_columns(function, data.inputs)

        def run(x: torch.Tensor, function=function, columns=columns) -> torch.Tensor:
            # hand-written physics runs in double precision, as written
            return physics_base(function.function, columns, x.double()).float()

        prediction = run(data.test.x)
        label = "physics: reference" if function is reference else f"physics: {function.short}"
        rows.append(
            {"predictor": label, "run": function.name}
            | task.score(prediction, data.test.y, data, data.test)
            | {"us_per_sample": 1e6 * seconds_per_sample(run, data.test.x)}
        )
    return rows


def applied(task: Any, predictor: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """The task's use of `predictor` on a batch of inputs (x, and a mask where there is
    one): what a sample's time is the time of (a generative task's draw)."""

    def apply(x: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
        return task.apply(predictor, Table(x, x, mask=mask[0] if mask else None))

    return apply
