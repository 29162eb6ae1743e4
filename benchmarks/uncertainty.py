"""Uncertainty of the emulator: MC dropout, Bayes by Backprop and a deep ensemble against
a climatological ensemble, coverage against the nominal 50% and 90%.

The emulator of recipes/emulate_precip.yaml (an MLP, 4 x 128, on the real TMY3 hours of
two stations; the target is the precipitation of a hand-written condensation scheme),
trained with uncertainty: recipes/emulate_precip_mc_dropout.yaml (dropout 0.1, on at
prediction), recipes/emulate_precip_bayes.yaml (every weight Gaussian, prior N(0, 1),
local reparameterisation) with the KL term at full weight and tempered (task.kl_weight 1
and 0.01), and a deep ensemble of the plain recipe (5 members, seeds 0 to 4). 50 draws of
each test prediction (the last 15% of the hours; the ensemble: a draw per member),
scored with CRPS (scoringrules), the share of the truth inside the central 50% and 90%
intervals of the draws (n draws of a calibrated model cover level x (n - 1) / (n + 1) on
average: 0.48 and 0.86 for 50 draws, 0.33 and 0.60 for 5 members) and the spread-skill
ratio (1: calibrated; below 1: over-confident). The baseline is a climatological
ensemble: 50 training targets as draws for every test hour.
"""

from __future__ import annotations

import csv
import tempfile

from benchmarks.common import ROOT, table
from esszoo.training import train

RUNS = (
    ("MC dropout (p = 0.1)", "emulate_precip_mc_dropout.yaml", []),
    ("Bayes by Backprop, kl_weight 1", "emulate_precip_bayes.yaml", []),
    ("Bayes by Backprop, kl_weight 0.01", "emulate_precip_bayes.yaml", ["task.kl_weight=0.01"]),
    (
        "deep ensemble, 5 members",
        "emulate_precip.yaml",
        ["uncertainty.method=ensemble", "uncertainty.members=5"],
    ),
)
SCORES = ("crps", "rmse_of_mean", "spread", "coverage_50", "coverage_90", "spread_skill")


def _read(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def run() -> str:
    rows, climate_rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        for label, recipe, overrides in RUNS:
            run_dir = train(
                ROOT / "recipes" / recipe,
                [f"out_dir={folder}", "trainer.progress_bar=false", *overrides],
                overwrite=True,
            )
            model, climate = _read(run_dir / "uncertainty.csv")
            climate_rows.append(climate)
            (deterministic, *_) = _read(run_dir / "scores.csv")
            epochs = len(_read(run_dir / "metrics.csv"))
            rows.append(
                [label, *(float(model[s]) for s in SCORES), float(deterministic["rmse"]), epochs]
            )
        climate = climate_rows[0]  # 50 draws
        rows.append(
            ["climatological ensemble, 50 draws", *(float(climate[s]) for s in SCORES), "", ""]
        )
    header = [
        "predictor",
        "CRPS (kg m-2)",
        "RMSE of the mean (kg m-2)",
        "spread (kg m-2)",
        "coverage of 50%",
        "coverage of 90%",
        "spread-skill",
        "RMSE of the posterior-mean network (kg m-2)",
        "epochs",
    ]
    return table(header, rows)


if __name__ == "__main__":
    print(run())
