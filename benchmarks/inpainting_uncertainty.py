"""The inpainting flagship made Bayesian: coverage of its intervals, and whether its
spread is larger where the holes are larger.

recipes/inpaint_ostia_bayes.yaml: the flagship (partial-convolution UNet, Kadow et al.
2020, on OSTIA monthly SST 5S-5N with real gap shapes) with every weight Gaussian (Bayes
by Backprop, local reparameterisation, prior N(0, 1), the KL term at kl_weight 1e-3), 20
epochs at most. 20 draws of each test month under 4 gap patterns, scored on the hidden
points with known truth: CRPS (scoringrules), coverage of the central 50% and 90%
intervals of the draws (20 draws of a calibrated model cover 0.48 and 0.86 on average),
the spread-skill ratio; beside a climatological ensemble (20 training months as draws).
Then the draws' spread and the error of their mean by the hidden point's distance from
the nearest observed point (grid points of 0.25 degrees), and the map of the test case
with the most hidden.
"""

from __future__ import annotations

import csv
import tempfile

from benchmarks.common import ROOT, table
from benchmarks.encoder_decoder_cases import keep_figure
from esszoo.training import train

SCORES = ("crps", "rmse_of_mean", "spread", "coverage_50", "coverage_90", "spread_skill")


def _read(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = train(
            ROOT / "recipes" / "inpaint_ostia_bayes.yaml",
            [f"out_dir={folder}", "trainer.progress_bar=false"],
        )
        drawn = _read(run_dir / "uncertainty.csv")
        scores = _read(run_dir / "scores.csv")
        by_distance = _read(run_dir / "spread_by_distance.csv")
        epochs = len(_read(run_dir / "metrics.csv"))
        figure = keep_figure(run_dir / "spread.png", "inpaint_ostia_bayes_spread")
    probabilistic = table(
        ["predictor", *SCORES], [[r["predictor"], *(float(r[s]) for s in SCORES)] for r in drawn]
    )
    point = table(
        ["predictor", "rmse (K)", "corr", "loses to"],
        [
            [r["predictor"], float(r["rmse"]), float(r["corr"]), r.get("loses_to", "")]
            for r in scores
        ],
    )
    distance = table(
        ["distance to the nearest observation (grid points)", "hidden points", "spread (K)",
         "RMSE of the mean (K)", "spread-skill"],
        [[r["distance"], r["points"], float(r["spread"]), float(r["rmse_of_mean"]),
          float(r["spread_skill"])] for r in by_distance],
    )  # fmt: skip
    return "\n\n".join(
        [
            f"Draws of the test split ({epochs} epochs):",
            probabilistic,
            "The network at its posterior means (its point reconstruction) beside the baselines:",
            point,
            "Spread and error by distance from the nearest observation:",
            distance,
            f"![spread of the Bayesian flagship]({figure.relative_to(ROOT)})",
        ]
    )


if __name__ == "__main__":
    print(run())
