"""Earth classification on real radar scenes: LeNet-5, ResNet-18 and DenseNet-121 against
the majority-class baseline (a calendar-month climatology would be the same: the scenes
are all of May).

Data: DWD RADOLAN 5-minute rainfall, 10-20 May 2018, each scene labelled dry, stratiform or
convective by esszoo.data.labels.rain_category at 1 km, shown to the models at 2 km
(95 x 114). Split by days: 10-16 May train (2016 scenes), 17-18 validation, 19-20 test
(576 scenes). Recipes recipes/radar_scenes_{lenet5,resnet18,densenet121}.yaml, trained
here with their own settings (balanced class weights, early stopping on the validation
loss); the scores are on the test days.
"""

from __future__ import annotations

import csv
import tempfile

from benchmarks.common import ROOT, table
from esszoo.training import train

MODELS = ("lenet5", "resnet18", "densenet121")


def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in MODELS:
            recipe = ROOT / "recipes" / f"radar_scenes_{name}.yaml"
            run_dir = train(recipe, [f"out_dir={folder}", "trainer.progress_bar=false"])
            with open(run_dir / "scores.csv") as handle:
                scores = list(csv.DictReader(handle))
            with open(run_dir / "metrics.csv") as handle:
                history = list(csv.DictReader(handle))
            model, *baselines = scores
            rows.append(_row(model, len(history), float(history[-1]["seconds"])))
        rows += [_row(baseline, 0, 0.0) for baseline in baselines]
    header = [
        "predictor",
        "accuracy",
        "balanced accuracy",
        "recall dry",
        "recall stratiform",
        "recall convective",
        "epochs",
        "training s",
        "loses to",
    ]
    return table(header, rows)


def _row(scores: dict[str, str], epochs: int, seconds: float) -> list[object]:
    return [
        scores["predictor"],
        float(scores["accuracy"]),
        float(scores["balanced_acc"]),
        float(scores["recall_dry"]),
        float(scores["recall_stratiform"]),
        float(scores["recall_convective"]),
        epochs or "",
        f"{seconds:.0f}" if epochs else "",
        scores.get("loses_to", ""),
    ]


if __name__ == "__main__":
    print(run())
