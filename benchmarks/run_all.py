"""Run the benchmarks and write BENCHMARKS.md (`make bench`).

`python -m benchmarks.run_all` runs every section; `python -m benchmarks.run_all
cnn_train_step` reruns one. Each section's latest result is kept in benchmarks/results/
(with the machine and commit it ran on), and BENCHMARKS.md is composed from all of them.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import subprocess
import sys
import warnings

import torch

from benchmarks.common import ROOT, machine

SECTIONS = {
    "train_step": "Training step: esszoo over a hand-written PyTorch loop, batch 64 to 4096 "
    "(goal at most 1.05)",
    "physics_speed": "Learned over hand-written physics, time per sample at matched accuracy",
    "precision": "Precision: fp32 against bf16 autocast for the emulator",
    "cli_speed": "Command line start-up",
    "radar_scenes": "Classification of real radar scenes against the majority class",
    "cnn_train_step": "CNN training steps: overhead (goal at most 1.03), FLOP/s (goal at least "
    "40% of the bf16 conv peak), defaults over naive fp32 eager (goal at least 1.7x)",
    "unet": "UNet: training step overhead (goal at most 1.03), FLOP/s (goal at least 60% of the "
    "bf16 conv peak), memory on global grids",
    "encoder_decoder_cases": "Inpainting, segmentation and volume-to-volume on real data",
    "stream_loader": "Data left on disk: loader throughput over training consumption (goal at "
    "least 3)",
    "forecasting": "Forecasting real series: sequence models by lead, a peer library, pretraining",
    "radiation": "RRTMG emulated: accuracy, time per column against RRTMG, 100 days online",
    "radiation_remedies": "RRTMG emulators against online drift: the grey-radiation hybrid and "
    "training on their own online states",
    "predict_speed": "Predictions: esszoo predict over a hand-written no_grad loop (goal at most "
    "1.05), exported forms against eager",
    "threads": "Sharing a machine: one and two trainings at once (goal: two cost about twice one)",
    "neural_ode": "Neural ODEs: ODE-Net against its ResNet on MNIST-5k (Chen et al. 2018)",
    "irregular_series": "Irregular series: a latent ODE on Nino 1+2 with hidden months, against "
    "the GRU told the gaps and linear interpolation (Rubanova et al. 2019)",
    "uncertainty": "Uncertainty of the emulator: MC dropout, Bayes by Backprop and a deep "
    "ensemble against a climatological ensemble",
    "inpainting_uncertainty": "Uncertainty of the inpainting flagship: Bayes by Backprop's "
    "coverage, and its spread by distance from the observations",
    "detection": "Detection of rain cells: DETR from scratch and from the zoo's radar-scene "
    "classifier, against persistence",
    "search": "Architecture search: Optuna, NAS with RL, DARTS and ENAS against random search "
    "on radar scenes, and a search of the flagship within 30 minutes",
    "nowcasting": "Radar nowcasts by lead time: UNet3D against persistence, pysteps' "
    "extrapolation and its STEPS ensemble (CSI, FSS, CRPS, rank histogram, spectra)",
    "generation": "Radar scenes generated from noise: a VAE and a DCGAN against real held-out "
    "scenes and pysteps' spectral noise",
    "gpu": "One GPU: the ResNet-50 training step and the inpainting flagship",
}
RESULTS = ROOT / "benchmarks" / "results"


def run_section(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    if getattr(module, "NEEDS_CUDA", False) and not torch.cuda.is_available():
        print(f"skipped (no GPU here; the last result is kept): {SECTIONS[name]}")
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip() or os.environ.get("ESSZOO_COMMIT", "unknown")
    method = (module.__doc__ or "").strip().split("\n\n", 1)[-1]
    stamp = f"Measured {dt.date.today()} at commit {commit} on: {machine()}."
    text = "\n\n".join([f"## {SECTIONS[name]}", stamp, method, module.run()])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text + "\n")


def compose() -> None:
    parts = [
        "# Benchmarks",
        "Ratios are taken within one run on one machine; each section names its machine and "
        "commit. Regenerate with `make bench` (or `python -m benchmarks.run_all SECTION`).",
    ]
    parts += [
        (RESULTS / f"{name}.md").read_text().strip()
        for name in SECTIONS
        if (RESULTS / f"{name}.md").is_file()
    ]
    (ROOT / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n")


def main(names: list[str]) -> None:
    warnings.filterwarnings("ignore")
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        sys.exit(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    for name in names or list(SECTIONS):
        print(f"running: {SECTIONS[name]}", flush=True)
        run_section(name)
        compose()
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
