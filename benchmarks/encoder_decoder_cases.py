"""Encoder-decoders on real data, each beside its baselines (test split scores).

Every table holds the baselines of its task (the training climatology among them; for
translation, linear regressions pooled over the points and fitted at each point) and
names, for the model, the baselines that beat it on the task's headline score.

- Inpainting (the flagship, recipes/inpaint_ostia.yaml): OSTIA monthly SST 5S-5N with
  real gap patterns (NEMO coasts, SEVIRI cold clouds) laid over the ocean; scores on the
  hidden points of the last 8 months (each under 4 patterns) in K; the error of the
  area-weighted mean of the completed field.
- Transfer (recipes/inpaint_ostia_from_nemo.yaml): the same, trained on NEMO model output.
- Segmentation (recipes/radar_intensity_unet.yaml): rain intensity classes 30 minutes
  ahead from 15 minutes of DWD radar; pixel accuracy and mean IoU.
- Volume to volume (recipes/radar_nowcast_unet3d.yaml): the next 30 minutes of radar
  rainfall from the last 30, UNet3D (D3M); RMSE in mm per 5 minutes.
- Compression (recipes/compress_ostia_autoencoder.yaml): OSTIA SST months through a
  convolutional autoencoder's code of 14 numbers, against 14 EOFs; RMSE in K.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from PIL import Image

from benchmarks.common import ROOT, table
from esszoo.training import train

FIGURES = ROOT / "benchmarks" / "results" / "figures"

CASES = {
    "inpaint_ostia": ("rmse", "corr", "area_mean_err"),
    "inpaint_ostia_from_nemo": ("rmse", "corr", "area_mean_err"),
    "radar_intensity_unet": ("pixel_acc", "miou", "iou_heavy"),
    "radar_nowcast_unet3d": ("rmse", "mae", "corr"),
    "compress_ostia_autoencoder": ("rmse", "mae", "corr"),
}


def run() -> str:
    sections = []
    with tempfile.TemporaryDirectory() as folder:
        for name, columns in CASES.items():
            run_dir = train(
                ROOT / "recipes" / f"{name}.yaml",
                [f"out_dir={folder}", "trainer.progress_bar=false"],
            )
            with open(run_dir / "scores.csv") as handle:
                rows = list(csv.DictReader(handle))
            with open(run_dir / "metrics.csv") as handle:
                epochs = len(list(csv.DictReader(handle)))
            body = [
                [row["predictor"], *(float(row[c]) for c in columns), row.get("loses_to", "")]
                for row in rows
            ]
            figure = keep_figure(panel(run_dir), name)
            sections.append(
                f"{name} ({epochs} epochs, {rows[0]['samples']} test samples)\n\n"
                + table(["predictor", *columns, "loses to"], body)
                + f"\n\n![{name}: test cases]({figure.relative_to(ROOT)})"
            )
    return "\n\n".join(sections)


def panel(run_dir: Path) -> Path:
    """The run's map panel (every plot but the loss curve)."""
    return next(p for p in sorted(run_dir.glob("*.png")) if p.name != "loss_curve.png")


def keep_figure(path: Path, name: str) -> Path:
    """A copy small enough for the repository: half size, 256 colours."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    image = Image.open(path).convert("RGB")
    image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
    target = FIGURES / f"{name}.png"
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
    return target


if __name__ == "__main__":
    print(run())
