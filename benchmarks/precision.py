"""Precision on this CPU: does bf16 autocast keep the emulator correct, and is it faster?

Trains recipes/emulate_precip.yaml in fp32 and in bf16 autocast (weights and evaluation
stay fp32) and reports the test RMSE and the training wall time of each. The step-time
side of the question, at two batch sizes, is in the train-step table.
"""

from __future__ import annotations

import csv
import tempfile

from benchmarks.common import ROOT, table
from esszoo.training import train


def run() -> str:
    rows = []
    for precision in ("32", "bf16-mixed"):
        with tempfile.TemporaryDirectory() as folder:
            overrides = [
                f"out_dir={folder}",
                f"trainer.precision={precision}",
                "trainer.progress_bar=false",
            ]
            run_dir = train(ROOT / "recipes" / "emulate_precip.yaml", overrides)
            with open(run_dir / "scores.csv") as handle:
                scores = next(csv.DictReader(handle))
            with open(run_dir / "metrics.csv") as handle:
                history = list(csv.DictReader(handle))
        rows.append(
            [
                precision,
                float(scores["rmse"]),
                float(scores["rel_err"]),
                len(history),
                float(history[-1]["seconds"]),
            ]
        )
    header = ["precision", "test RMSE (kg m-2)", "relative error", "epochs", "training s"]
    return table(header, rows)


if __name__ == "__main__":
    print(run())
