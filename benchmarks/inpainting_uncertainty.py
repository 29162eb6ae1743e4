"""The inpainting flagship made Bayesian: coverage of its intervals, and whether its
spread is larger where the holes are larger.

recipes/inpaint_ostia_bayes.yaml: the flagship (partial-convolution UNet, Kadow et al.
2020, on OSTIA monthly SST 5S-5N with real gap shapes) with every weight Gaussian (Bayes
by Backprop, local reparameterisation, prior N(0, 1)), 20 epochs at most, with the KL term
tempered (kl_weight 1e-3, the recipe's) and ten times stronger (1e-2). 20 draws of each
test month under 4 gap patterns, scored on the hidden points with known truth: CRPS
(scoringrules), coverage of the central 50% and 90% intervals of the draws (20 draws of a
calibrated model cover 0.48 and 0.86 on average), the spread-skill ratio; beside a
climatological ensemble (20 training months as draws). Then the draws' spread and the
error of their mean by the hidden point's distance from the nearest observed point (grid
points of 0.25 degrees), and the map of the test case with the most hidden.
"""

from __future__ import annotations

import csv
import tempfile

from benchmarks.common import ROOT, table
from benchmarks.encoder_decoder_cases import keep_figure
from esszoo.training import train

KL_WEIGHTS = (1e-3, 1e-2)
SCORES = ("crps", "rmse_of_mean", "spread", "coverage_50", "coverage_90", "spread_skill")


def _read(path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def run() -> str:
    probabilistic, point, distance, figures = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for weight in KL_WEIGHTS:
            run_dir = train(
                ROOT / "recipes" / "inpaint_ostia_bayes.yaml",
                [
                    f"out_dir={folder}",
                    f"name=bayes_kl{weight:g}",
                    f"task.kl_weight={weight}",
                    "trainer.progress_bar=false",
                ],
            )
            label = f"kl_weight {weight:g}"
            drawn = _read(run_dir / "uncertainty.csv")
            epochs = len(_read(run_dir / "metrics.csv"))
            model, climate = drawn
            probabilistic.append([f"pconv_unet, {label} ({epochs} epochs)",
                                  *(float(model[s]) for s in SCORES)])  # fmt: skip
            scores = _read(run_dir / "scores.csv")
            point.append([f"pconv_unet, {label}", float(scores[0]["rmse"]),
                          float(scores[0]["corr"]), scores[0].get("loses_to", "")])  # fmt: skip
            distance += [
                [label, r["distance"], r["points"], float(r["spread"]), float(r["rmse_of_mean"]),
                 float(r["spread_skill"])]
                for r in _read(run_dir / "spread_by_distance.csv")
            ]  # fmt: skip
            figure = keep_figure(run_dir / "spread.png", f"inpaint_ostia_bayes_kl{weight:g}")
            figures.append(f"![spread, {label}]({figure.relative_to(ROOT)})")
        probabilistic.append([climate["predictor"], *(float(climate[s]) for s in SCORES)])
        point += [[r["predictor"], float(r["rmse"]), float(r["corr"]), ""] for r in scores[1:]]
    return "\n\n".join(
        [
            "Draws of the test split:",
            table(["predictor", *SCORES], probabilistic),
            "The networks at their posterior means (their point reconstructions) beside the "
            "baselines:",
            table(["predictor", "rmse (K)", "corr", "loses to"], point),
            "Spread and error by distance from the nearest observation:",
            table(
                [
                    "run",
                    "distance to the nearest observation (grid points)",
                    "hidden points",
                    "spread (K)",
                    "RMSE of the mean (K)",
                    "spread-skill",
                ],
                distance,
            ),  # fmt: skip
            *figures,
        ]
    )


if __name__ == "__main__":
    print(run())
