"""Data left on disk (`data.stream: true`): loader throughput against training consumption.

Data: DWD RADOLAN 5-minute radar rainfall (3,168 frames of 190 x 228 km, 549 MB as
float32) written to a Zarr store in chunks of 48 frames (4 hours), and the recipe
recipes/radar_nowcast_unet3d.yaml read from it with `data.stream: true`: windows of 6
frames in and 6 out every 15 minutes, coarsened to 4 km block by block as they are read,
unet3d (width 16) at batch 16 with esszoo's defaults on this CPU.

- training consumption: samples per second of esszoo's training step on the same windows
  held in memory (median step after 3 warm-up steps);
- loader throughput: samples per second that `StreamBatches` delivers over a full epoch of
  the training split with no training attached, for 0, 1 and 2 spawned worker processes
  (prefetch 2 blocks each; block 64 windows); the second epoch is timed, so that the
  workers' start-up (reported apart) is not counted;
- end to end: seconds of the second of two training epochs from the store (0 and 2
  workers) against one from memory, in the same process.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import lightning as L

from benchmarks.common import ROOT, table
from benchmarks.train_step import StepTimer
from esszoo.data.batches import TensorBatches
from esszoo.data.catalog import open_builtin
from esszoo.data.stream import StreamBatches
from esszoo.recipe import load_recipe
from esszoo.registry import create_model
from esszoo.run import build_data, build_task
from esszoo.training import ChannelsLast, make_trainer

RECIPE = ROOT / "recipes" / "radar_nowcast_unet3d.yaml"
CHUNK = 48
BLOCK = 64
STEPS = 10
WARMUP = 3


def _task(recipe):
    L.seed_everything(0, verbose=False)
    shape = {"in_channels": 1, "out_channels": 1}
    return build_task(recipe, create_model("unet3d", **shape, **recipe.model.arguments()))


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, task) -> None:  # noqa: ANN001
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, task) -> None:  # noqa: ANN001
        self.seconds.append(time.perf_counter() - self.start)


def _fit(task, recipe, loader, epochs: int = 1, **limits) -> tuple[StepTimer, float]:
    """Step times, and the seconds of the last epoch."""
    timer, epoch = StepTimer(), EpochTimer()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(
            recipe,
            Path(folder),
            [timer, epoch, ChannelsLast(volumes=True)],
            limit_val_batches=0,
            max_epochs=epochs,
            **limits,
        )
        trainer.fit(task, loader)
    return timer, epoch.seconds[-1]


def loader_rate(data, transform, batch: int, workers: int) -> tuple[float, float]:
    """(samples per second over the second epoch, seconds to the first batch)."""
    batches = StreamBatches(data.train, transform, batch, shuffle=True, workers=workers)
    start = time.perf_counter()
    iterator = iter(batches)
    next(iterator)
    startup = time.perf_counter() - start
    for _ in iterator:
        pass
    batches.set_epoch(1)
    start = time.perf_counter()
    count = sum(len(b["x"]) for b in batches)
    return count / (time.perf_counter() - start), startup


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "radolan.zarr"
        open_builtin("radolan").chunk({"time": CHUNK}).to_zarr(store, consolidated=False)
        overrides = [
            "trainer.progress_bar=false",
            "trainer.early_stopping=null",
            f"data.source={store}",
            f"data.stream_block={BLOCK}",
        ]
        memory_recipe = load_recipe(RECIPE, overrides)
        stream_recipe = load_recipe(RECIPE, [*overrides, "data.stream=true"])
        batch = memory_recipe.trainer.batch_size

        data = build_data(memory_recipe)
        task = _task(memory_recipe)
        tensors = task.prepare(data)["train"]
        timer, _ = _fit(
            task,
            memory_recipe,
            TensorBatches(tensors, batch, shuffle=True),
            limit_train_batches=WARMUP + STEPS + 1,
        )
        consumption = batch / statistics.median(timer.steps[WARMUP:])

        streamed = build_data(stream_recipe)
        stream_task = _task(stream_recipe)
        stream_task.fit(streamed)
        transform = stream_task.transform(streamed)
        rows = []
        for workers in (0, 1, 2):
            rate, startup = loader_rate(streamed, transform, batch, workers)
            rows.append([workers, rate, rate / consumption, startup])

        _, memory_epoch = _fit(
            _task(memory_recipe), memory_recipe, TensorBatches(tensors, batch, shuffle=True), 2
        )
        stream_epochs = {}
        for workers in (0, 2):
            stream_task = _task(stream_recipe)
            loaders = stream_task.stream_loaders(streamed, batch, 0, workers=workers)
            _, stream_epochs[workers] = _fit(stream_task, stream_recipe, loaders[0], 2)

    header = [
        "worker processes",
        "loader samples/s",
        "loader / training",
        "start-up s (first batch)",
    ]
    return (
        f"Training consumes {consumption:.1f} samples/s (unet3d width 16, batch {batch}, "
        f"{len(tensors['x'])} training windows of 6 x 47 x 57).\n\n"
        + table(header, rows)
        + f"\n\nOne training epoch (the second of two): {memory_epoch:.1f} s from memory; "
        f"streamed from the Zarr store {stream_epochs[0]:.1f} s with no worker process "
        f"({stream_epochs[0] / memory_epoch:.2f}x) and {stream_epochs[2]:.1f} s with 2 "
        f"({stream_epochs[2] / memory_epoch:.2f}x)."
    )


if __name__ == "__main__":
    print(run())
