"""Architecture search on real radar scenes: Optuna, NAS with RL, DARTS and ENAS against
random search at equal budget, and a search of the inpainting flagship within 30 minutes.

Task: recipes/radar_scenes_*.yaml at 8 km (DWD RADOLAN 5-minute rainfall, 10-20 May 2018,
block means of 8 x 8 km, 23 x 28 points), each scene dry, stratiform or convective by the
documented rule esszoo.data.labels.rain_category; split by days: 10-16 May train (2,016
scenes), 17-18 validation, 19-20 test. Every network is trained alike: AdamW at the
searched or the recipe's rate, batch 64, 6 epochs, class weights balanced. The searches
see the validation split only; the test accuracy is the best architecture's, retrained or
as its trial left it, and the majority class scores 0.48 on the test days.

Zoo searches, equal trials: the space {model.name: resnet18, darts (5 cells of DARTS_V2)
or nas_cnn (a chain of six 3x3 convolutions); model.width 8, 16 or 32 where the model
takes it; trainer.lr 3e-4, 1e-3 or 3e-3}, 6 trials each, by random search, Optuna's TPE
(median pruning for both) and NAS with RL (children_per_step 2); and NAS with RL in its
paper's own space (4 layers, each a filter height and width of 1, 3, 5 or 7, 8 to 32
filters where the paper has 24 to 64, and the earlier layers it reads) against uniform
draws of that space.

Cell searches, equal wall time: DARTS (first order, with and without P-DARTS's skip cap,
which changes only the derivation of the same search; DARTS-'s auxiliary skip; second
order) and ENAS (10 controller steps of 5 samples after each epoch) on a supernet of 5
cells of 4 channels for 6 epochs, the cells found retrained as a darts network of 5 cells
of 8 channels; against cells drawn uniformly from the same space and retrained alike (the
random-search baseline of Li & Talwalkar 2019), as many as fit in the first-order DARTS
search's time. The share of skip connections in the found cells is the collapse DARTS is
known for.

The demo task: recipes/search_inpaint_ostia.yaml, Optuna over the flagship's width and
depth and learning rate, 8-epoch trials started for 25 minutes (`--timeout 1500`), so that
the last ends within 30: trials, their states, the best one's validation loss and its test
RMSE (the flagship itself, 20 epochs of width 32, scores 0.54-0.55 K).
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path

import torch
import yaml

from benchmarks.common import ROOT, table
from esszoo.automl.cells import retrain_recipe
from esszoo.automl.darts import derive
from esszoo.automl.search import best_validation_loss, search
from esszoo.layers.nas import PRIMITIVES
from esszoo.models.nas.darts import Genotype
from esszoo.training import train_recipe

TRIALS = 6
EPOCHS = 6
SCENES = {
    "name": "scenes",
    "model": {"name": "darts", "width": 8, "cells": 5},
    "data": {
        "source": "radolan",
        "inputs": ["rainfall_amount"],
        "label_rule": "rain_category",
        "coarsen": {"y": 8, "x": 8},
        "split": {
            "dim": "time",
            "train": ["2018-05-10", "2018-05-16T23:55"],
            "val": ["2018-05-17", "2018-05-18T23:55"],
            "test": ["2018-05-19", "2018-05-20T23:55"],
        },
    },
    "task": {"name": "classification", "class_weights": "balanced"},
    "trainer": {
        "max_epochs": EPOCHS,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "seed": 0,
        "progress_bar": False,
    },
}
ZOO_SPACE = {
    "model.name": ["resnet18", "darts", "nas_cnn"],
    "model.width": [8, 16, 32],
    "trainer.lr": [3e-4, 1e-3, 3e-3],
}
LAYERS = {"count": 4, "filters": [8, 16, 24, 32]}  # the paper: from 6 layers, 24 to 64 filters
SUPERNET = {"width": 4, "cells": 5, "order": 1, "controller_steps": 10, "aggregate": 5}
DEMO_TIMEOUT = 25 * 60  # trials start for 25 minutes; the last ends before 30


def _write(folder: Path, name: str, recipe: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe | {"name": name, "out_dir": str(folder)}))
    return path


def _test_accuracy(run_dir: str | Path) -> float:
    with open(Path(run_dir) / "scores.csv") as handle:
        return float(next(csv.DictReader(handle))["accuracy"])


def _architecture(row: dict) -> str:
    keys = [k for k in row if k.startswith(("model.", "trainer.")) and row[k] not in ("", None)]
    shown = {k: f"{row[k]:.3g}" if isinstance(row[k], float) else row[k] for k in keys}
    return ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in shown.items())


def _cells(genotype: Genotype) -> str:
    normal = [op for op, _ in genotype.normal]
    return " ".join(sorted(normal, key=PRIMITIVES.index))


def _skips(genotype: Genotype) -> str:
    """Skip connections among the normal cell's 8 operations, and among both cells' 16."""
    normal = sum(op == "skip_connect" for op, _ in genotype.normal)
    return f"{normal}/8, {genotype.skip_share():.0%} of both"


def zoo_rows(folder: Path) -> list[list]:
    rows = []
    for method in ("random", "optuna", "nas-rl"):
        recipe = SCENES | {"search": {"space": ZOO_SPACE, "children_per_step": 2}}
        path = _write(folder, f"zoo_{method.replace('-', '_')}", recipe)
        started = time.perf_counter()
        found = search(path, method=method, budget=TRIALS)
        seconds = time.perf_counter() - started
        done = [r for r in found if r["state"] == "complete"]
        best = min(done, key=lambda r: r["val_loss"])
        rows.append(
            [
                method,
                len(found),
                _architecture(best),
                float(best["val_loss"]),
                _test_accuracy(best["run"]),
                round(seconds),
            ]
        )
    return rows


def layer_rows(folder: Path) -> list[list]:
    """NAS with RL in its paper's space against uniform draws of the same space."""
    from esszoo.automl.nas_rl import describe
    from esszoo.automl.search import trial_recipe
    from esszoo.options import LayerSearchOptions

    rows = []
    recipe = SCENES | {"search": {"layers": LAYERS, "children_per_step": 2}}
    started = time.perf_counter()
    found = search(_write(folder, "layers_nas_rl", recipe), method="nas-rl", budget=TRIALS)
    best = min(found, key=lambda r: r["val_loss"])
    rows.append(
        [
            "nas-rl, the paper's layer space",
            len(found),
            best["model.layers"],
            float(best["val_loss"]),
            _test_accuracy(best["run"]),
            round(time.perf_counter() - started),
        ]
    )
    options, rng = LayerSearchOptions(**LAYERS), random.Random(0)
    started, best = time.perf_counter(), None
    for number in range(TRIALS):
        layers = [
            {
                "height": rng.choice(options.heights),
                "width": rng.choice(options.widths),
                "filters": rng.choice(options.filters),
                "inputs": [j for j in range(i) if rng.random() < 0.5],
            }
            for i in range(options.count)
        ]
        values = {"model.name": "nas_cnn", "model.layers": layers}
        run_dir = train_recipe(trial_recipe(SCENES, values, folder / "layers_random", number))
        loss = best_validation_loss(run_dir)
        if best is None or loss < best[0]:
            best = (loss, layers, run_dir)
    rows.append(
        [
            "random, the paper's layer space",
            TRIALS,
            describe(best[1]),
            best[0],
            _test_accuracy(best[2]),
            round(time.perf_counter() - started),
        ]
    )
    return rows


def random_genotype(rng: random.Random) -> Genotype:
    ops = [p for p in PRIMITIVES if p != "none"]

    def cell():
        return tuple((rng.choice(ops), s) for n in range(4) for s in rng.sample(range(2 + n), 2))

    concat = (2, 3, 4, 5)
    return Genotype(normal=cell(), normal_concat=concat, reduce=cell(), reduce_concat=concat)


def _retrain(folder: Path, name: str, genotype: Genotype) -> Path:
    run = retrain_recipe(SCENES, genotype, folder / name)
    return train_recipe(run, overwrite=True)


def cell_rows(folder: Path) -> list[list]:
    rows = []
    first_order_seconds = None
    cases = (
        ("DARTS, first order", "darts", {}),
        ("DARTS, first order, auxiliary skip (DARTS-)", "darts", {"remedy": "auxiliary_skip"}),
        ("DARTS, second order", "darts", {"order": 2}),
        ("ENAS", "enas", {}),
    )
    for label, method, changes in cases:
        recipe = SCENES | {"search": {"cells": SUPERNET | changes}}
        name = f"cells_{len(rows)}"
        started = time.perf_counter()
        found = search(_write(folder, name, recipe), method=method, budget=EPOCHS)
        seconds = time.perf_counter() - started
        retrained = found[-1]
        genotype = Genotype.of(
            yaml.safe_load((folder / f"{name}-search" / "genotype.json").read_text())
        )
        rows.append(
            [
                label,
                f"{EPOCHS} epochs",
                _cells(genotype),
                float(retrained["val_loss"]),
                _test_accuracy(retrained["run"]),
                round(seconds),
                _skips(genotype),
            ]
        )
        if first_order_seconds is None:
            first_order_seconds = seconds
            alpha = torch.load(folder / f"{name}-search" / "alpha.pt", weights_only=True)
            capped = Genotype(
                normal=derive(alpha["normal"], skip_cap=2),
                normal_concat=genotype.normal_concat,
                reduce=genotype.reduce,
                reduce_concat=genotype.reduce_concat,
            )
            began = time.perf_counter()
            run_dir = _retrain(folder, "capped", capped)
            rows.append(
                [
                    "DARTS, first order, skip cap (P-DARTS): the same search",
                    f"{EPOCHS} epochs",
                    _cells(capped),
                    best_validation_loss(run_dir),
                    _test_accuracy(run_dir),
                    round(seconds - found[-1]["seconds"] + found[-2]["seconds"])
                    + round(time.perf_counter() - began),
                    _skips(capped),
                ]
            )
    rng = random.Random(0)
    started, drawn, best = time.perf_counter(), 0, None
    while drawn == 0 or time.perf_counter() - started < first_order_seconds:
        genotype = random_genotype(rng)
        run_dir = _retrain(folder, f"random_{drawn}", genotype)
        drawn += 1
        loss = best_validation_loss(run_dir)
        if best is None or loss < best[0]:
            best = (loss, genotype, run_dir)
    rows.append(
        [
            "random cells, retrained (equal wall time)",
            f"{drawn} cells",
            _cells(best[1]),
            best[0],
            _test_accuracy(best[2]),
            round(time.perf_counter() - started),
            _skips(best[1]),
        ]
    )
    return rows


def demo_rows(folder: Path, overrides: tuple[str, ...] = ()) -> list[list]:
    recipe = ROOT / "recipes" / "search_inpaint_ostia.yaml"
    started = time.perf_counter()
    changes = [f"out_dir={folder}", *overrides]
    found = search(recipe, changes, budget=20, timeout=DEMO_TIMEOUT)
    seconds = time.perf_counter() - started
    done = [r for r in found if r["state"] == "complete"]
    best = min(done, key=lambda r: r["val_loss"])
    with open(Path(best["run"]) / "scores.csv") as handle:
        rmse = float(next(csv.DictReader(handle))["rmse"])
    states = ", ".join(f"{sum(r['state'] == s for r in found)} {s}" for s in ("complete", "pruned"))
    return [
        [len(found), states, _architecture(best), float(best["val_loss"]), rmse, round(seconds)]
    ]


def run() -> str:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        zoo = zoo_rows(folder) + layer_rows(folder)
        cells = cell_rows(folder)
        demo = demo_rows(folder)
    parts = [
        "Zoo searches on radar scenes, equal trials:",
        table(["method", "trials", "best found", "val loss", "test accuracy", "seconds"], zoo),
        "Cell searches on radar scenes, the found cells retrained; random cells at equal time:",
        table(
            [
                "method",
                "budget",
                "normal cell's operations",
                "val loss (retrained)",
                "test accuracy",
                "seconds (search and retraining)",
                "skips (normal cell)",
            ],
            cells,
        ),
        "The demo task (recipes/search_inpaint_ostia.yaml, trials started for 25 minutes):",
        table(["trials", "states", "best found", "val loss", "test RMSE (K)", "seconds"], demo),
    ]
    return "\n\n".join(parts)
