"""Learned against hand-written physics: time per sample at matched accuracy.

The emulator of recipes/emulate_precip.yaml is trained here (seconds on 2 cores), then
timed on the held-out test hours beside the hand-written scheme at every vertical
resolution from 2 to 40 layers. "Matched accuracy" is the cheapest resolution of the
hand-written scheme whose error against the 40-layer reference is no larger than the
emulator's: the fair price of the physics at the accuracy the network delivers. Physics
runs in float64 as written; the network in float32; both batched over 8192 columns on
the same CPU threads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.common import ROOT, table
from esszoo import metrics
from esszoo.checkpoint import load
from esszoo.physics import mixed_column_precipitation
from esszoo.recipe import load_recipe
from esszoo.run import build_data, seconds_per_sample
from esszoo.training import train

LEVELS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 40)


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        overrides = [f"out_dir={folder}", "trainer.progress_bar=false"]
        run_dir = train(ROOT / "recipes" / "emulate_precip.yaml", overrides)
        emulator = load(run_dir)
    torch.set_grad_enabled(False)
    data = build_data(load_recipe(Path(ROOT / "recipes" / "emulate_precip.yaml")))
    x, truth = data.test.x, data.test.y
    emulator_rmse = metrics.rmse(emulator(x), truth)
    emulator_time = seconds_per_sample(emulator, x, repeats=5)
    rows = [["mlp emulator (float32)", emulator_rmse, emulator_time * 1e6, 1.0]]
    matched = None
    for levels in LEVELS:

        def physics(inputs: torch.Tensor, levels: int = levels) -> torch.Tensor:
            columns = inputs.double()
            return mixed_column_precipitation(
                columns[:, 0], columns[:, 1], columns[:, 2], levels=levels
            )[:, None]

        error = metrics.rmse(physics(x), truth)
        seconds = seconds_per_sample(physics, x, repeats=5)
        rows.append(
            [f"physics, {levels} layers (float64)", error, seconds * 1e6, emulator_time / seconds]
        )
        if matched is None and error <= emulator_rmse:
            matched = (levels, seconds)
    summary = f"Emulator test RMSE {emulator_rmse:.3g} kg m-2. " + (
        f"Matched accuracy: the hand-written scheme needs {matched[0]} layers to be as "
        f"accurate; learned / hand-written time per sample = "
        f"{emulator_time / matched[1]:.2f}."
        if matched
        else "No resolution of the scheme below 40 layers is as accurate as the emulator."
    )
    header = ["predictor", "test RMSE vs 40-layer reference", "us/sample", "learned time / this"]
    return table(header, rows) + "\n\n" + summary


if __name__ == "__main__":
    print(run())
