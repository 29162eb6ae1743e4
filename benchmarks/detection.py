"""Detection of rain cells 15 minutes ahead: DETR from scratch and from the zoo's radar-scene
classifier, against the persistence of the cells in sight.

Data: DWD RADOLAN 5-minute rainfall, 10-20 May 2018, at 2 km (95 x 114); the last 3 frames
in, and out the rain cells of the frame 15 minutes after the last one (a frame no model
sees), by the documented rule esszoo.data.objects.rain_cells: 8-connected regions of
moderate rain or more (at least 2.5 mm/h) of at least 9 points (36 km2). A window every
15 minutes; split by days: 10-16 May train (672 windows), 17-18 validation, 19-20 test
(191 windows, 2.8 cells each on average). Baseline: persistence, the cells that the same
rule finds in the last input frame, each with score 1 (the rule applied to what the model
sees, not the answer). Scores by pycocotools' COCO evaluation: mAP over IoU 0.5:0.95, at
0.5 and 0.75, recall with at most 100 detections, and the mean absolute error of the count
of cells found with a score of at least 0.5.

DETR (recipes/radar_cells_detr.yaml): ResNet-18 of width 64 with the last stage dilated
(DC5, a 6 x 8 map), 3 + 3 Transformer layers of d 128, 8 heads, feed-forward 512, AdamW at
1e-4, weight decay 1e-4, gradients clipped at 0.1, the paper's Hungarian loss (1, 5, 2; no
object 0.1) with auxiliary losses. What is tried to make it learn, each a row: from
scratch (live batch norms, nothing frozen); the backbone taken from the zoo's ResNet-18
radar-scene classifier (recipes/radar_scenes_resnet18.yaml, trained here first on the same
training days) through `init_from`, its kernel shared among the three frames, with the
paper's frozen batch norm and frozen stem and first stage; and the same with fewer
queries. 15 epochs each (630 optimizer steps; the paper trains for 500 epochs of COCO).
Early stopping on the validation loss (patience 10) may end a run before its last epoch.
The mAP of each model on its own training days says whether it fits what it was shown.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, table
from esszoo.evaluation import evaluate_run
from esszoo.training import train

RECIPE = ROOT / "recipes" / "radar_cells_detr.yaml"
FIGURES = ROOT / "benchmarks" / "results" / "figures"
EPOCHS = 15
PRETRAINED = ["model.frozen_batch_norm=true", "model.frozen_stages=1"]
CASES = (
    ("from scratch, 30 queries", [], EPOCHS),
    ("backbone from the radar-scene classifier, 30 queries", PRETRAINED, EPOCHS),
    ("backbone from the classifier, 10 queries", [*PRETRAINED, "model.queries=10"], EPOCHS),
)
SCORES = ("map", "map_50", "map_75", "mar_100", "count_mae")


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "scores.csv") as handle:
        return list(csv.DictReader(handle))


def run() -> str:
    rows = []
    FIGURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        common = [f"out_dir={folder}", "trainer.progress_bar=false"]
        classifier = train(ROOT / "recipes" / "radar_scenes_resnet18.yaml", common)
        for number, (label, changes, epochs) in enumerate(CASES, start=1):
            start = [f"init_from={classifier}"] if changes else []
            name = f"name=radar_cells_detr_{number}"
            run_dir = train(
                RECIPE, [*common, name, f"trainer.max_epochs={epochs}", *start, *changes]
            )
            model, *baselines = _rows(run_dir)
            with open(run_dir / "metrics.csv") as handle:
                history = list(csv.DictReader(handle))
            fitted = evaluate_run(run_dir, "train")[0]
            rows.append(
                [f"DETR, {label}"]
                + [float(model[s]) for s in SCORES]
                + [float(fitted["map"]), len(history), round(float(history[-1]["seconds"]))]
            )
            for case in sorted(run_dir.glob("detections*.png"))[:2]:
                shutil.copy(case, FIGURES / f"radar_cells_detr_{number}_{case.name}")
        for baseline in baselines:
            rows.append([baseline["predictor"]] + [float(baseline[s]) for s in SCORES] + ["", 0, 0])
    header = [
        "predictor",
        "mAP",
        "mAP@0.5",
        "mAP@0.75",
        "recall@100",
        "count MAE",
        "mAP on training days",
        "epochs",
        "training s",
    ]
    figures = (
        "Overlays of the two busiest test cases of each run (the last input frame, the true "
        "cells 15 minutes later black and dashed, DETR's cells of score >= 0.5 and persistence's): "
        "benchmarks/results/figures/radar_cells_detr_N_detections*.png, N the row."
    )
    return table(header, rows) + "\n\n" + figures
