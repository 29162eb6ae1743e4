"""ResNet training steps on real radar scenes: overhead, FLOP/s and the effect of defaults.

Data: the radar scenes of recipes/radar_scenes_resnet18.yaml (DWD RADOLAN, 1 x 95 x 114
at 2 km), batch 32. For ResNet-18 and ResNet-50:

- esszoo / hand-written: the Trainer `esszoo train` builds (its default precision and
  memory format: bf16 autocast and channels-last on this CPU) against a plain PyTorch
  loop with the same model, batches, precision, layout, AdamW and cosine schedule.
  Median step times (start of one batch to the start of the next).
- achieved FLOP/s: the FLOPs of one training step (forward and backward, counted by
  torch.utils.flop_counter) over esszoo's step time, against this machine's measured bf16
  convolution peak (a 256-channel 3x3 convolution on 56x56, batch 16, channels-last).
- defaults / naive: the hand-written loop in fp32 with contiguous tensors (plain eager
  PyTorch) over esszoo's step time.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import ROOT, table
from benchmarks.train_step import StepTimer
from esszoo.data.batches import TensorBatches
from esszoo.optim import configure_optimizer
from esszoo.recipe import load_recipe
from esszoo.registry import create_model
from esszoo.run import build_data, build_task
from esszoo.training import ChannelsLast, make_trainer, resolve_precision

RECIPE = ROOT / "recipes" / "radar_scenes_resnet18.yaml"
STEPS = 12
WARMUP = 3


def conv_peak_flops(dtype: torch.dtype = torch.bfloat16) -> float:
    """Best FLOP/s of a large 3x3 convolution in channels-last."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False)
    conv = conv.to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(16, 256, 56, 56).to(dtype=dtype, memory_format=torch.channels_last)
    flops = 2 * 16 * 256 * 256 * 9 * 56 * 56
    best = float("inf")
    with torch.no_grad():
        for _ in range(8):
            start = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - start)
    return flops / best


def _net(name: str, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, in_channels=1, num_classes=classes)


def hand_written(
    model: torch.nn.Module,
    tensors: dict[str, torch.Tensor],
    recipe,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    bf16: bool,
    channels_last: bool,
) -> float:
    """Median seconds per step of a plain PyTorch loop: AdamW and cosine schedule as the
    recipe's, the given precision and memory layout, shuffled batches of the tensors."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)

    class Steps:
        estimated_stepping_batches = 1000

    config = configure_optimizer(model.parameters(), recipe.trainer, Steps())
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    x, y, batch = tensors["x"], tensors["y"], recipe.trainer.batch_size
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    starts = []
    for step in range(WARMUP + STEPS + 1):
        starts.append(time.perf_counter())
        rows = order[step * batch : (step + 1) * batch]
        inputs = x[rows].contiguous(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss(model(inputs).float(), y[rows])
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
    steps = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
    return statistics.median(steps[WARMUP:])


def esszoo_step(task, tensors: dict[str, torch.Tensor], recipe) -> float:
    """Median seconds per step of the Trainer `esszoo train` builds, on the same tensors."""
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(
            recipe,
            Path(folder),
            [timer, ChannelsLast()],
            limit_train_batches=WARMUP + STEPS + 2,
            limit_val_batches=0,
            max_epochs=1,
        )
        trainer.fit(task, TensorBatches(tensors, recipe.trainer.batch_size, shuffle=True))
    return statistics.median(timer.steps[WARMUP:])


def step_flops(name: str, data, batch: int) -> int:
    model = _net(name, len(data.classes))
    x = data.train.x[:batch].nan_to_num()
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), data.train.y[:batch]).backward()
    return counter.get_total_flops()


def run() -> str:
    recipe = load_recipe(RECIPE, ["trainer.progress_bar=false"])
    precision = resolve_precision(recipe.trainer.precision, "cpu")
    data = build_data(recipe)
    peak = conv_peak_flops()
    rows = []
    for name in ("resnet18", "resnet50"):
        recipe = load_recipe(
            RECIPE,
            ["trainer.progress_bar=false", "trainer.early_stopping=null", f"model.name={name}"],
        )
        classes = len(data.classes)
        task = build_task(recipe, _net(name, classes))
        tensors = task.prepare(data)["train"]
        ours = esszoo_step(task, tensors, recipe)
        bf16 = precision == "bf16-mixed"
        hand = hand_written(_net(name, classes), tensors, recipe, F.cross_entropy, bf16, True)
        naive = hand_written(_net(name, classes), tensors, recipe, F.cross_entropy, False, False)
        achieved = step_flops(name, data, recipe.trainer.batch_size) / ours
        rows.append(
            [
                name,
                precision,
                hand * 1e3,
                ours * 1e3,
                ours / hand,
                achieved / 1e9,
                f"{100 * achieved / peak:.0f}%",
                naive * 1e3,
                naive / ours,
            ]
        )
    header = [
        "model",
        "esszoo default precision",
        "hand-written ms/step",
        "esszoo ms/step",
        "esszoo / hand",
        "achieved GFLOP/s",
        "of bf16 conv peak",
        "naive fp32 eager ms/step",
        "naive / esszoo",
    ]
    return table(header, rows) + f"\n\nMeasured bf16 convolution peak: {peak / 1e9:.0f} GFLOP/s."


if __name__ == "__main__":
    print(run())
