"""Predictions: `esszoo predict` against a hand-written no_grad loop; exports against eager.

Two runs trained briefly here (the time of a prediction does not depend on how good the
weights are): the emulator of recipes/emulate_precip.yaml and the inpainting flagship
recipes/inpaint_ostia.yaml (one epoch).

- esszoo over hand: `esszoo.predict_dataset`, what `esszoo predict` runs between reading
  the file and writing it (the checks of names, units and grid, the batches, the counts of
  values beyond the bounds, the output Dataset with its coordinates and provenance),
  against a loop that takes the same values as a tensor and calls the run's predictor
  (the network in physical units) under `torch.no_grad` on the same batches. Data: for the
  emulator, the real TMY3 hours repeated to 2^20 samples (a global field's worth of
  columns); for the flagship, the real OSTIA fields, land and gaps missing. 15 rounds
  after a warm-up, the two timed in turn (in reversed order every other round); the times
  are medians, the ratio the median of the rounds' ratios (the machine's speed drifts by
  about 10% between seconds: the ratio of two medians moved between 0.93 and 1.10 where a
  profile puts esszoo's own work at 1% of the flagship's prediction).
- Exported forms: time per sample of eager PyTorch (the exported module itself under
  inference mode: for the flagship, the predictor that fills the NaN gaps of a field),
  TorchScript (`esszoo export --format torchscript`, what FTorch loads) and ONNX Runtime
  (`--format onnx`), at batch 1 and 4096 for the emulator and batch 1 and 32 for the
  flagship (4096 fields of the flagship would hold about 30 GB of activations).
"""

from __future__ import annotations

import contextlib
import functools
import io
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from benchmarks.common import ROOT, interleaved_rounds, median_seconds, paired_ratio, table
from esszoo import load
from esszoo.data.source import open_source
from esszoo.export import export_run
from esszoo.prediction import predict_dataset
from esszoo.tasks import task_class
from esszoo.training import train

ROWS = 2**20
REPEATS = 15


def _train(folder: Path, recipe: str, overrides: list[str]) -> Path:
    overrides = [*overrides, f"out_dir={folder}", "trainer.progress_bar=false"]
    return train(ROOT / "recipes" / recipe, overrides)


def _emulator_data(run_dir: Path) -> tuple[xr.Dataset, tuple[torch.Tensor, ...]]:
    hours = open_source("tmy3")[["tas", "ps", "huss"]].load()  # (time, station)
    tiled = xr.Dataset(
        {
            name: ("sample", np.resize(hours[name].values.ravel(), ROWS), hours[name].attrs)
            for name in ("tas", "ps", "huss")
        },
        coords={"sample": np.arange(ROWS)},
    )
    x = torch.from_numpy(np.stack([tiled[v].values for v in ("tas", "ps", "huss")], axis=1))
    return tiled, (x.float(),)


def _flagship_data(run_dir: Path) -> tuple[xr.Dataset, tuple[torch.Tensor, ...]]:
    fields = open_source("ostia")[["surface_temperature"]].load()
    values = torch.from_numpy(fields["surface_temperature"].values[:, None].astype(np.float32))
    return fields, (values, torch.isfinite(values).float())


def hand_written(predictor: torch.nn.Module, inputs: tuple[torch.Tensor, ...], size: int) -> None:
    with torch.no_grad():
        for start in range(0, len(inputs[0]), size):
            predictor(*(t[start : start + size] for t in inputs))


def _overhead(run_dir: Path, data, batch: int, label: str) -> list[object]:  # noqa: ANN001
    predictor = load(run_dir).eval()
    dataset, inputs = data(run_dir)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        ours, hand = interleaved_rounds(
            [
                lambda: predict_dataset(predictor, dataset),
                lambda: hand_written(predictor, inputs, batch),
            ],
            REPEATS,
        )
    count, ratio = len(inputs[0]), paired_ratio(ours, hand)
    ours, hand = statistics.median(ours), statistics.median(hand)
    return [label, count, batch, hand / count * 1e6, ours / count * 1e6, ratio]


def _exports(run_dir: Path, inputs: torch.Tensor, batches: tuple[int, int], label: str) -> list:
    import onnxruntime

    predictor = load(run_dir)
    task = task_class(predictor.description["task"]["name"])
    forms = {
        "eager": task.exported(predictor).eval(),  # what the exports hold, in PyTorch
        "TorchScript": torch.jit.load(str(export_run(run_dir, "torchscript")[0])),
        "ONNX Runtime": onnxruntime.InferenceSession(
            str(export_run(run_dir, "onnx")[0]), providers=["CPUExecutionProvider"]
        ),
    }
    rows = []
    for batch in batches:
        x = torch.cat([inputs] * (batch // len(inputs) + 1))[:batch].contiguous()
        repeats = 30 if batch == 1 else 5
        eager = None
        for name, form in forms.items():
            if name == "ONNX Runtime":
                call = functools.partial(form.run, None, {form.get_inputs()[0].name: x.numpy()})
            else:
                call = functools.partial(form, x)
            with torch.inference_mode():
                seconds = median_seconds(call, repeats=repeats) / batch
            eager = eager or seconds
            rows.append([label, batch, name, seconds * 1e6, eager / seconds])
    return rows


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        emulator = _train(Path(folder), "emulate_precip.yaml", ["trainer.max_epochs=3"])
        flagship = _train(
            Path(folder), "inpaint_ostia.yaml", ["trainer.max_epochs=1", "data.gaps.train=4"]
        )
        overhead = [
            _overhead(emulator, _emulator_data, 8192, "emulator (MLP), 2^20 columns"),
            _overhead(flagship, _flagship_data, 32, "flagship (pconv_unet), OSTIA fields"),
        ]
        emulator_x = _emulator_data(emulator)[1][0][:4096]
        flagship_x = _flagship_data(flagship)[1][0][:32]
        exports = _exports(emulator, emulator_x, (1, 4096), "emulator (MLP)")
        exports += _exports(flagship, flagship_x, (1, 32), "flagship (pconv_unet)")
    first = table(
        [
            "run",
            "samples",
            "batch",
            "hand-written us/sample",
            "esszoo predict us/sample",
            "esszoo / hand",
        ],
        overhead,
    )
    second = table(["model", "batch", "form", "us/sample", "speed-up over eager"], exports)
    return first + "\n\n" + second


if __name__ == "__main__":
    print(run())
