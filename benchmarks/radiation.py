"""RRTMG emulated: accuracy on held-out runs, time per column against RRTMG, and online.

The emulators of recipes/emulate_rrtmg_lw.yaml and emulate_rrtmg_sw.yaml (the MLP) and
the same recipes with `column_rnn` are trained here on the `rrtmg_columns` data (climt's
radiative-convective columns; held-out test runs: 15% of the 144 independent runs).
Scores are in physical units over every level of the test columns; "spread" is the
standard deviation of RRTMG's own heating rates over those columns and levels, the
yardstick of a small error. Energy: the column integral of the predicted heating against
the predicted net flux into the atmosphere (RRTMG closes it to 1e-4 W m-2).

Time per column, on the same CPU threads in one run: RRTMG as climt calls it (the
component's call on a prepared state, its Python wrapper included) against the emulator
in physical units: eager PyTorch, its TorchScript export and ONNX Runtime, at batch 1
and 4096. The median of 5 calls (50 at batch 1).

Online: climt's column model with both emulators in RRTMG's place (`esszoo.coupling`,
through the TorchScript files), side by side with RRTMG from the same start for 100
days, on 8 column climates drawn afresh (never seen in training).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, median_seconds, table
from esszoo.checkpoint import load
from esszoo.coupling import couple
from esszoo.export import export_run
from esszoo.recipe import load_recipe
from esszoo.run import build_data
from esszoo.training import train

RESULTS = ROOT / "benchmarks" / "results"

# What the papers report, each for its own configuration (abstract-level figures, as read)
PUBLISHED = [
    [
        "Krasnopolsky et al. 2005, MWR",
        "LW",
        "NCAR CAM, NN emulation; parallel 10-year runs",
        "in the paper body",
        "50-80x the original scheme",
    ],
    [
        "Krasnopolsky et al. 2010, MWR",
        "LW, SW",
        "NCEP CFS, decadal runs",
        "in the paper body",
        "LW 16x on average (SW figure not read)",
    ],
    [
        "Ukkonen et al. 2020, JAMES",
        "LW, SW",
        "clear sky; NNs for RRTMGP gas optics only",
        "< 0.1 K/day vs line-by-line; TOA forcing < 0.5 W m-2",
        "fluxes LW 3.5x, SW 1.8x (Intel CPU)",
    ],
    [
        "Liu, Caballero & Monteiro 2020, GMD (RadNet)",
        "LW",
        "MLP/CNN vs a reference library",
        "< 0.1 K/day across levels",
        "11x CPU, 370x GPU",
    ],
    [
        "Ukkonen 2022, JAMES",
        "SW",
        "bidirectional RNN, whole scheme, a year of global data",
        "0.16 K/day RMSE; fluxes < 1%",
        "4x CPU",
    ],
    [
        "Lagerquist et al. (GFSv16 RRTM follow-up of 2021)",
        "SW, LW",
        "U-net++, global GFS",
        "SW 0.14, LW 0.22 K/day RMSE",
        "SW 7510x, LW 90x",
    ],
]


def _train(folder: str, band: str, model: str) -> Path:
    recipe = ROOT / "recipes" / f"emulate_rrtmg_{band}.yaml"
    overrides = [f"out_dir={folder}", "trainer.progress_bar=false", f"name={band}_{model}"]
    if model == "column_rnn":
        text = recipe.read_text().replace(
            "  name: mlp\n  depth: 4\n  width: 256\n  activation: gelu\n", "  name: column_rnn\n"
        )
        recipe = Path(folder) / f"{band}_rnn.yaml"
        recipe.write_text(text)
    return train(recipe, overrides)


def _accuracy(run_dir: Path) -> dict[str, float]:
    import csv

    with open(run_dir / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {key: float(value) for key, value in rows[0].items() if key.endswith(("rmse", "bias"))}


def _times(run_dir: Path, band: str) -> list[list[object]]:
    """Time per column of RRTMG and of the emulator's three forms, at batch 1 and 4096."""
    import onnxruntime

    from esszoo.data.source import open_source
    from esszoo.physics.radiation import LONGWAVE, SHORTWAVE, _component, check_columns

    spec = LONGWAVE if band == "lw" else SHORTWAVE
    recipe = load_recipe(run_dir / "recipe.yaml")
    x = build_data(recipe).test.x
    x = torch.cat([x] * (4096 // len(x) + 1))[:4096]  # the test columns, 4096 of them
    columns = open_source(recipe.data.source).isel(run=slice(0, 30))
    columns = columns.stack(column=("run", "time", "perturbation"))
    columns = columns.drop_vars(["column", "run", "time", "perturbation"])
    values = check_columns(columns.transpose("column", ...), spec.inputs)
    forms = {
        "eager": load(run_dir).eval(),
        "TorchScript": torch.jit.load(str(export_run(run_dir, "torchscript")[0])),
        "ONNX Runtime": onnxruntime.InferenceSession(
            str(export_run(run_dir, "onnx")[0]), providers=["CPUExecutionProvider"]
        ),
    }
    component = _component("longwave" if band == "lw" else "shortwave")
    rows = []
    for batch in (1, 4096):
        rows += _time_batch(
            component, {k: v[:batch] for k, v in values.items()}, x[:batch].contiguous(), forms
        )
    return rows


def _time_batch(component, values: dict, inputs: torch.Tensor, forms: dict) -> list[list]:  # noqa: ANN001
    from esszoo.physics.radiation import _climt_state

    batch = len(inputs)
    repeats = 50 if batch == 1 else 5
    state = _climt_state(component, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rrtmg = median_seconds(lambda: component(state), repeats=repeats) / batch
    rows = [[batch, "RRTMG (climt)", rrtmg * 1e6, 1.0]]
    for label, form in forms.items():
        if label == "ONNX Runtime":
            feed = {form.get_inputs()[0].name: inputs.numpy()}
            call = functools.partial(form.run, None, feed)
        else:
            call = functools.partial(form, inputs)
        with torch.no_grad():
            seconds = median_seconds(call, repeats=repeats) / batch
        rows.append([batch, label, seconds * 1e6, rrtmg / seconds])
    return rows


def run() -> str:
    torch.set_num_threads(torch.get_num_threads())
    parts = []
    with tempfile.TemporaryDirectory() as folder:
        runs = {
            (band, model): _train(folder, band, model)
            for band in ("lw", "sw")
            for model in ("mlp", "column_rnn")
        }
        rows = []
        for (band, model), run_dir in runs.items():
            scores = _accuracy(run_dir)
            data = build_data(load_recipe(run_dir / "recipe.yaml"))
            heating = data.targets[0]
            spread = float(data.test.y[:, : heating.levels].double().std())
            rows.append(
                [
                    band.upper(),
                    model,
                    sum(p.numel() for p in load(run_dir).net.parameters()),
                    scores["profile_rmse"],
                    scores["profile_bias"],
                    spread,
                    scores["flux_rmse"],
                    scores["flux_bias"],
                    scores["energy_rmse"],
                ]
            )
        header = [
            "band",
            "model",
            "parameters",
            "heating RMSE (K/day)",
            "heating bias (K/day)",
            "RRTMG heating spread (K/day)",
            "flux RMSE (W m-2)",
            "flux bias (W m-2)",
            "energy residual RMSE (W m-2)",
        ]
        parts.append("Accuracy on the held-out runs:\n\n" + table(header, rows))
        parts.append(
            "Beside the papers (their data, schemes and machines, not ours):\n\n"
            + table(["paper", "band", "configuration", "heating-rate error", "speed-up"], PUBLISHED)
        )
        timing = []
        for (band, model), run_dir in runs.items():
            for row in _times(run_dir, band):
                if model == "mlp" or row[1] != "RRTMG (climt)":
                    label = row[1] if row[1].startswith("RRTMG") else f"{model}, {row[1]}"
                    timing.append([band.upper(), row[0], label, *row[2:]])
        timing.sort(key=lambda row: (row[0], row[1]))
        header = ["band", "batch", "predictor", "us per column", "RRTMG time / this"]
        parts.append("Time per column:\n\n" + table(header, timing))
        RESULTS.mkdir(exist_ok=True)
        for model in ("mlp", "column_rnn"):
            online = couple(
                [runs[("lw", model)], runs[("sw", model)]],
                days=100,
                columns=8,
                out=Path(folder) / f"online_{model}",
                log=lambda message: None,
            )
            shutil.copy(online / "online.png", RESULTS / f"radiation_online_{model}.png")
            drift = (online / "online_drift.csv").read_text().strip().splitlines()
            cost = (online / "online_cost.csv").read_text().strip().splitlines()
            parts.append(
                f"Online, both {model} emulators in RRTMG's place for 100 days (emulator "
                "minus RRTMG, daily means over 8 unseen columns):\n\n"
                + _csv_table(drift)
                + "\n\n"
                + _csv_table(cost)
                + f"\n\n![online, {model}](benchmarks/results/radiation_online_{model}.png)"
            )
    return "\n\n".join(parts)


def _csv_table(lines: list[str]) -> str:
    header = lines[0].split(",")
    rows = [[_number(v) for v in line.split(",")] for line in lines[1:]]
    return table(header, rows)


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


if __name__ == "__main__":
    np.seterr(all="ignore")
    print(run())
