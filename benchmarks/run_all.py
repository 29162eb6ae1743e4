"""Run every benchmark and write BENCHMARKS.md (`make bench`)."""

from __future__ import annotations

import datetime as dt
import subprocess
import warnings

from benchmarks import (
    cli_speed,
    cnn_train_step,
    physics_speed,
    precision,
    radar_scenes,
    train_step,
)
from benchmarks.common import ROOT, machine

SECTIONS = (
    (
        "Training step: esszoo over a hand-written PyTorch loop (goal at most 1.10)",
        train_step,
    ),
    ("Learned over hand-written physics, time per sample at matched accuracy", physics_speed),
    ("Precision: fp32 against bf16 autocast for the emulator", precision),
    ("Command line start-up", cli_speed),
    ("Classification of real radar scenes against the majority class", radar_scenes),
    (
        "CNN training steps: overhead (goal at most 1.03), FLOP/s (goal at least 40% of the "
        "bf16 conv peak), defaults over naive fp32 eager (goal at least 1.7x)",
        cnn_train_step,
    ),
)


def main() -> None:
    warnings.filterwarnings("ignore")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    parts = [
        "# Benchmarks",
        "",
        f"Measured {dt.date.today()} at commit {commit} on: {machine()}.",
        "Regenerate with `make bench`. Ratios are taken within one run on one machine.",
    ]
    for title, module in SECTIONS:
        print(f"running: {title}", flush=True)
        method = (module.__doc__ or "").strip().split("\n\n", 1)[-1]
        parts += ["", f"## {title}", "", method, "", module.run()]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts) + "\n")
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
