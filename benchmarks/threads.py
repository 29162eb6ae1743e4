"""Sharing a machine: the flagship's epoch with one and two esszoo trainings on its cores.

`esszoo train recipes/inpaint_ostia.yaml` with fewer gap patterns per training month
(`data.gaps.train=8`, a quarter of the epoch; the step is the flagship's), run as separate
processes started together: alone; two at once, each with `trainer.threads: auto` (their
share of the cores, `esszoo.threads`); and two at once each with as many threads as the
machine has cores (`trainer.threads` set so, as every run was before: each thread pool
works, and spins, as if it had the cores to itself). Seconds of the second epoch, from
each run's metrics.csv (the first holds warm-up and the sanity check); the goal is that
N runs at once cost about N times one.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, table

RECIPE = ROOT / "recipes" / "inpaint_ostia.yaml"


def epoch_seconds(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[1]["seconds"]) - float(rows[0]["seconds"])


def trainings(count: int, threads: str, folder: Path) -> list[float]:
    """Start `count` trainings at once; the second epoch's seconds of each."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    processes = []
    for index in range(count):
        name = f"run{count}_{threads}_{index}"
        command = [
            sys.executable, "-m", "esszoo.cli", "train", str(RECIPE),
            "trainer.max_epochs=2", "trainer.early_stopping=null", "trainer.progress_bar=false",
            "data.gaps.train=8", f"trainer.threads={threads}", f"name={name}",
            f"out_dir={folder}",
        ]  # fmt: skip
        processes.append((subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL), name))
    seconds = []
    for process, name in processes:
        if process.wait() != 0:
            raise RuntimeError(f"training {name} failed")
        seconds.append(epoch_seconds(folder / name))
    return seconds


def run() -> str:
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        alone = trainings(1, "auto", Path(folder))[0]
        cases = [
            ("one run alone", "auto", [alone]),
            ("two at once, threads auto (shared)", "auto", trainings(2, "auto", Path(folder))),
            (
                f"two at once, {cores} threads each (as before)",
                str(cores),
                trainings(2, str(cores), Path(folder)),
            ),
        ]
    rows = [
        [label, statistics.mean(seconds), statistics.mean(seconds) / alone]
        for label, _, seconds in cases
    ]
    header = ["trainings on the machine", "seconds per epoch (mean of the runs)", "over one alone"]
    return table(header, rows) + f"\n\nCores this process may use: {cores}."


if __name__ == "__main__":
    print(run())
