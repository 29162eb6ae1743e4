"""Radar nowcasts by lead time against the references of the field: Eulerian persistence,
pysteps' extrapolation along the observed motion and its STEPS ensemble.

Data and model: recipes/radar_nowcast_unet3d.yaml (DWD RADOLAN 5-minute rainfall, 10-20
May 2018, at 4 km; 6 frames in, the next 6 out; trained on 10-16 May, validated on 17-18,
tested on the windows of 19-20 May), trained here with the recipe's settings. The MSE
UNet3D beside persistence (the last frame), extrapolation (pysteps: Lucas-Kanade motion of
the last 3 frames, semi-Lagrangian advection) and STEPS (pysteps: 20 members, a cascade
of 4 scales, AR(2), nonparametric noise, perturbed motion), all on the same test windows.

Scores by lead time, in rain rates (mm/h, 12 times the 5-minute sums), from pysteps'
verification module (`esszoo.verification`): CSI at 0.5, 2 and 5 mm/h; FSS at 1 mm/h over
windows of 4, 16 and 32 km; CRPS (for a single forecast the CRPS is its mean absolute
error, so every row is comparable); the rank histogram of STEPS; and the radially averaged
power spectra of the fields at 30 minutes against the observed spectrum.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, table
from esszoo import load, verification
from esszoo.predictor import predict_in_batches
from esszoo.recipe import load_recipe
from esszoo.run import build_data
from esszoo.tasks.extrapolation import motion_nowcasts
from esszoo.tasks.translation import persistence
from esszoo.training import train

RECIPE = ROOT / "recipes" / "radar_nowcast_unet3d.yaml"
FIGURES = ROOT / "benchmarks" / "results" / "figures"
THRESHOLDS = [0.5, 2.0, 5.0]  # mm/h
FSS_THRESHOLD = 1.0  # mm/h
SCALES_KM = [4, 16, 32]
MEMBERS = 20
WAVELENGTHS_KM = [8, 16, 32, 64]  # where the spectra are compared


def forecasts(run_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, object]:
    """Every forecast of the test windows and the observations, in mm/h (N, T, H, W); the
    STEPS members (N, M, T, H, W); the data."""
    recipe = load_recipe(RECIPE, [])
    data = build_data(recipe)
    test = data.test
    nowcasts = motion_nowcasts(data, MEMBERS, seed=0)
    factor = nowcasts.factor

    def rates(t: torch.Tensor) -> np.ndarray:
        t = t[:, 0] if t.dim() == 5 else t
        return t.double().numpy() * factor

    predictor = load(run_dir).eval()
    members = nowcasts.ensemble(test.x).double().numpy() * factor
    found = {
        "persistence": rates(persistence(test)),
        "extrapolation (pysteps)": rates(nowcasts.extrapolation(test.x)),
        "STEPS (pysteps), one member": members[:, 0],
        f"STEPS (pysteps), mean of {MEMBERS}": members.mean(1),
        "UNet3D (MSE)": rates(predict_in_batches(predictor, test.x)),
    }
    return found, rates(test.y), members, data


def lead_rows(scores: dict[str, np.ndarray]) -> list[list[object]]:
    return [[name, *values] for name, values in scores.items()]


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = train(RECIPE, [f"out_dir={folder}", "trainer.progress_bar=false"])
        found, observed, members, data = forecasts(run_dir)
    leads = [f"{5 * (k + 1)} min" for k in range(observed.shape[1])]
    spacing = data.grid.spacing_km()
    sections = [f"{len(observed)} test windows, grid spacing {spacing:.1f} km."]
    categorical = {
        name: verification.categorical(f, observed, THRESHOLDS) for name, f in found.items()
    }
    for i, threshold in enumerate(THRESHOLDS):
        rows = [[name, *scores["CSI"][i]] for name, scores in categorical.items()]
        sections.append(f"CSI at {threshold:g} mm/h\n\n" + table(["forecast", *leads], rows))
    scales = [max(1, round(km / spacing)) for km in SCALES_KM]
    fss = {
        n: verification.fractions_skill(f, observed, [FSS_THRESHOLD], scales)
        for n, f in found.items()
    }
    for j, km in enumerate(SCALES_KM):
        rows = [[name, *values[0, j]] for name, values in fss.items()]
        sections.append(
            f"FSS at {FSS_THRESHOLD:g} mm/h, windows of about {km} km ({scales[j]} x "
            f"{scales[j]} points of {spacing:.1f} km)\n\n" + table(["forecast", *leads], rows)
        )
    crps, ranks = verification.ensemble(members, observed, threshold=0.1)
    rows = [[name, *np.nanmean(np.abs(f - observed), axis=(0, 2, 3))] for name, f in found.items()]
    rows.append([f"STEPS (pysteps), {MEMBERS} members: CRPS", *crps])
    sections.append(
        "CRPS, mm/h (a single forecast's CRPS is its mean absolute error)\n\n"
        + table(["forecast", *leads], rows)
    )
    sections.append(
        f"Rank histogram of STEPS's {MEMBERS} members (all leads, points where the observation "
        f"or a member reaches 0.1 mm/h): lowest rank {ranks[0]:.3f}, highest {ranks[-1]:.3f}, "
        f"flat would be {1 / len(ranks):.3f} each."
    )
    spectra = spectra_rows(found, observed, spacing)
    sections.append(
        "Power at 30 minutes over the observed power, by wavelength (1: the observed "
        "variance at that scale; below 1: blur)\n\n"
        + table(["forecast", *(f"{w} km" for w in WAVELENGTHS_KM)], spectra)
    )
    figure = plot(categorical, fss, ranks, found, observed, spacing, leads)
    sections.append(f"![nowcasts by lead time]({figure.relative_to(ROOT)})")
    return "\n\n".join(sections)


def spectra_rows(found: dict[str, np.ndarray], observed: np.ndarray, spacing: float) -> list:
    last = np.isfinite(observed[:, -1])
    truth, wavelengths = verification.power_spectrum(np.where(last, observed[:, -1], 0), spacing)
    rows = []
    for name, field in found.items():
        power, _ = verification.power_spectrum(np.where(last, field[:, -1], 0), spacing)
        ratio = power / truth
        rows.append(
            [name, *(float(np.interp(w, wavelengths[::-1], ratio[::-1])) for w in WAVELENGTHS_KM)]
        )
    return rows


def plot(categorical, fss, ranks, found, observed, spacing, leads) -> Path:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 4, figsize=(18, 4))
    minutes = [5 * (k + 1) for k in range(len(leads))]
    for name, scores in categorical.items():
        axes[0].plot(minutes, scores["CSI"][1], marker="o", label=name)
    axes[0].set(title="CSI at 2 mm/h", xlabel="lead time (min)")
    for name, values in fss.items():
        axes[1].plot(minutes, values[0, 1], marker="o", label=name)
    axes[1].set(title=f"FSS at 1 mm/h, {SCALES_KM[1]} km", xlabel="lead time (min)")
    axes[0].legend(fontsize=7)
    last = np.isfinite(observed[:, -1])
    truth, wavelengths = verification.power_spectrum(np.where(last, observed[:, -1], 0), spacing)
    axes[2].loglog(wavelengths, truth, color="black", label="observed")
    for name, field in found.items():
        power, _ = verification.power_spectrum(np.where(last, field[:, -1], 0), spacing)
        axes[2].loglog(wavelengths, power, label=name)
    axes[2].invert_xaxis()
    axes[2].set(title="power spectrum at 30 min", xlabel="wavelength (km)")
    axes[3].bar(range(len(ranks)), ranks)
    axes[3].axhline(1 / len(ranks), color="black", linestyle="--")
    axes[3].set(title=f"rank histogram, STEPS ({MEMBERS} members)", xlabel="rank")
    figure.tight_layout()
    target = FIGURES / "nowcasting.png"
    figure.savefig(target, dpi=80)
    plt.close(figure)
    return target


if __name__ == "__main__":
    print(run())
