"""Radar scenes generated from noise: a VAE and a DCGAN against real held-out scenes.

Recipes recipes/generate_radar_vae.yaml and recipes/generate_radar_dcgan.yaml, trained
here as they are: DWD RADOLAN 5-minute rainfall at 4 km (47 x 57 points), 10-16 May 2018
for training, 17-18 May to choose the checkpoint, 19-20 May as the real scenes the draws
are judged against (one draw per test scene). Scores in the data's units (mm per 5
minutes): the Wasserstein-1 distance between the value distributions of the draws and of
the test scenes (w1), the mean absolute log10 ratio of their mean radially averaged power
spectra (spectrum error: 0.3 is a factor of 2 at a typical wavenumber), the bias of the
mean and the ratio of the standard deviations. Beside them: real training scenes drawn at
random (what a perfect generator of these days would score: the days differ), and
Gaussian random fields of the training scenes' spectrum with their values matched to the
training distribution (pysteps' STEPS noise). The power of the draws at the small scales
(8 and 16 km) over the test scenes' says whether a decoder is fuzzy.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, table
from benchmarks.encoder_decoder_cases import keep_figure
from esszoo import load
from esszoo.recipe import load_recipe
from esszoo.run import build_data
from esszoo.tasks.generation import GenerationOptions, draw
from esszoo.training import train
from esszoo.verification import power_spectrum

RECIPES = ("generate_radar_vae", "generate_radar_dcgan")
COLUMNS = ("w1", "spectrum_error", "mean_bias", "std_ratio")
WAVELENGTHS_KM = (8, 16, 32, 64)


def run() -> str:
    sections, rows, powers = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for number, name in enumerate(RECIPES):
            run_dir = train(
                ROOT / "recipes" / f"{name}.yaml",
                [f"out_dir={folder}", "trainer.progress_bar=false"],
            )
            with open(run_dir / "scores.csv") as handle:
                scored = list(csv.DictReader(handle))
            with open(run_dir / "metrics.csv") as handle:
                epochs = len(list(csv.DictReader(handle)))
            for row in scored if number == 0 else scored[:1]:  # the baselines once
                label = row["predictor"] + (f" ({epochs} epochs)" if row is scored[0] else "")
                rows.append([label, *(float(row[c]) for c in COLUMNS)])
            powers.append(small_scales(run_dir, name))
            figure = keep_figure(run_dir / "samples.png", name)
            sections.append(f"![{name}: real and generated scenes]({figure.relative_to(ROOT)})")
    head = table(["generator", *COLUMNS], rows)
    spectra = table(["generator", *(f"power at {w} km / real" for w in WAVELENGTHS_KM)], powers)
    return "\n\n".join([head, spectra, *sections])


def small_scales(run_dir: Path, name: str) -> list[object]:
    """The draws' mean power over the test scenes', at a few wavelengths."""
    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml", [])
    data = build_data(recipe)
    test = data.test.x[:, 0].double().numpy()
    predictor = load(run_dir)
    spec = GenerationOptions(**predictor.description["recipe"]["task"])
    drawn = draw(predictor, len(test), test.shape[-2:], spec, seed=0)[:, 0].double().numpy()
    known = np.isfinite(test)
    spacing = data.grid.spacing_km()
    real, wavelengths = power_spectrum(np.where(known, test, 0), spacing)
    fake, _ = power_spectrum(np.where(known, drawn, 0), spacing)
    ratio = fake / real
    at = [float(np.interp(w, wavelengths[::-1], ratio[::-1])) for w in WAVELENGTHS_KM]
    return [name.removeprefix("generate_radar_"), *at]


if __name__ == "__main__":
    print(run())
