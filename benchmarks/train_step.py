"""esszoo's training step against a hand-written PyTorch loop: same network, data, batches,
precision, layout, optimizer and schedule.

Two small networks, where a fixed cost per step shows most: the emulator of
recipes/emulate_precip.yaml (an MLP) on the real TMY3 hours, and LeNet-5 of
recipes/lenet5_mnist.yaml on the MNIST digits. The hand-written loop draws the epoch's
permutation, gathers the epoch's rows in that order once (faster than a gather per batch)
and, batch by batch, slices them and runs forward, loss, backward, AdamW and the cosine
schedule. esszoo runs the Trainer that `esszoo train` builds (callbacks,
checkpointing, validation and all) on the batches `esszoo train` makes. Time per step: the
seconds from the start of an epoch to the end of its last training batch, over its
optimizer steps, so that fetching, every per-step hook and anything esszoo does once per
Lightning step count, and the once-per-epoch validation and checkpoint do not; the median
over the epochs after the first. The loops are interleaved, in reversed order every other
round, 5 rounds: the times are medians over the rounds and the ratios the medians of the
rounds' ratios, because this machine's speed drifts by 10-15% between epochs (an earlier
run of 3 rounds gave LeNet-5 at batch 256 a ratio of 2.6 that a rerun found to be 1.0).

Where the time went: the same Trainer with one batch per Lightning step (as before) shows
Lightning's fixed cost per batch (its loops, hooks, progress and optimizer wrappers), the
last column: a fraction of a millisecond, as long as a small network's whole step. esszoo
therefore hands Lightning groups of batches (`batches per Lightning step`, enough for
about 2^20 input values, at most an epoch) and steps the optimizer once per batch within
the group (`Task.training_step`), which leaves one such cost per group.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from benchmarks.common import ROOT, median_seconds, paired_ratio, table
from esszoo.data.batches import TensorBatches, group_for
from esszoo.optim import configure_optimizer
from esszoo.recipe import load_recipe
from esszoo.registry import create_model, model_arguments
from esszoo.run import build_data, build_task
from esszoo.tasks import task_class
from esszoo.training import ChannelsLast, make_trainer

ROUNDS = 5
STEPS = 400  # optimizer steps per measurement, at least (more epochs at large batches)


@dataclass
class Case:
    label: str
    recipe: str
    loss: str  # "mse" or "cross_entropy"
    fields: bool


EMULATOR = Case("emulator (MLP)", "emulate_precip.yaml", "mse", False)
LENET = Case("LeNet-5 (MNIST)", "lenet5_mnist.yaml", "cross_entropy", True)


class EpochTimer(L.Callback):
    """Seconds per optimizer step of each epoch: epoch start to its last training batch's end."""

    def __init__(self) -> None:
        self.per_step: list[float] = []

    def on_train_epoch_start(self, trainer, task) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_index) -> None:
        if batch_index == trainer.num_training_batches - 1:
            steps = trainer.train_dataloader.steps()
            self.per_step.append((time.perf_counter() - self.start) / steps)


def _net(recipe, data) -> torch.nn.Module:
    """The network `esszoo train` builds for the recipe, seeded alike for both loops."""
    torch.manual_seed(0)
    shape = task_class(recipe.task.name).model_shape(data, False, recipe.task)
    taken = model_arguments(recipe.model.name)
    shape = {key: value for key, value in shape.items() if key in taken}
    return create_model(recipe.model.name, **shape, **recipe.model.arguments())


def hand_written(case: Case, recipe, data, tensors, epochs: int, bf16: bool) -> list[float]:
    model = _net(recipe, data)
    x, y, batch = tensors["x"], tensors["y"], recipe.trainer.batch_size
    layout = torch.channels_last if case.fields else torch.contiguous_format
    model = model.to(memory_format=layout)
    loss_function = F.mse_loss if case.loss == "mse" else F.cross_entropy

    class Steps:
        estimated_stepping_batches = epochs * -(-len(x) // batch)

    config = configure_optimizer(model.parameters(), recipe.trainer, Steps())
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    per_step = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        xs, ys = x[order], y[order]  # one gather per epoch, then slices: the fastest plain loop
        for first in range(0, len(x), batch):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = model(xs[first : first + batch].contiguous(memory_format=layout))
            loss = loss_function(outputs.float(), ys[first : first + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        per_step.append((time.perf_counter() - start) / -(-len(x) // batch))
    return per_step[1:]


def esszoo(case: Case, recipe, data, epochs: int, grouped: bool = True) -> list[float]:
    task = build_task(recipe, _net(recipe, data))
    tensors = task.prepare(data)
    spec, sample = recipe.trainer, tensors["train"]["x"][0]
    timer = EpochTimer()
    callbacks = [timer, ChannelsLast()] if case.fields else [timer]
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(recipe, Path(folder), callbacks)
        group = group_for(sample, spec.batch_size) if grouped else 1
        trainer.fit(
            task,
            TensorBatches(tensors["train"], spec.batch_size, shuffle=True, group=group),
            TensorBatches(tensors["val"], 8192 if not case.fields else spec.batch_size),
        )
    return timer.per_step[1:]


def measure(case: Case, batch: int, precision: str) -> list[object]:
    overrides = [
        f"trainer.batch_size={batch}",
        f"trainer.precision={precision}",
        "trainer.early_stopping=null",
        "trainer.progress_bar=false",
        "trainer.schedule=cosine",
        "trainer.optimizer=adamw",
    ]
    recipe = load_recipe(ROOT / "recipes" / case.recipe, overrides)
    data = build_data(recipe)
    tensors = build_task(recipe, _net(recipe, data)).prepare(data)["train"]
    steps = -(-len(tensors["x"]) // batch)
    epochs = max(4, 1 + -(-STEPS // steps))
    recipe = load_recipe(
        ROOT / "recipes" / case.recipe, [*overrides, f"trainer.max_epochs={epochs}"]
    )
    group = group_for(tensors["x"][0], batch)
    loops = [
        lambda: hand_written(case, recipe, data, tensors, epochs, precision == "bf16-mixed"),
        lambda: esszoo(case, recipe, data, epochs),
        lambda: esszoo(case, recipe, data, epochs, grouped=False),
    ]
    rounds: list[list[float]] = [[], [], []]  # each loop's median ms/step in each round
    for number in range(ROUNDS):
        order = [0, 1, 2] if number % 2 == 0 else [2, 1, 0]
        for index in order:
            rounds[index].append(statistics.median(loops[index]()) * 1e3)
    hand_ms, ours_ms, single_ms = (statistics.median(r) for r in rounds)
    return [
        case.label,
        batch,
        precision,
        min(group, steps),
        hand_ms,
        ours_ms,
        paired_ratio(rounds[1], rounds[0]),
        paired_ratio(rounds[2], rounds[0]),
        single_ms - ours_ms,
    ]


def run() -> str:
    rows = [
        measure(EMULATOR, batch, precision)
        for batch in (64, 256, 1024, 4096)
        for precision in ("32", "bf16-mixed")
    ]
    rows += [
        measure(LENET, batch, precision)
        for batch in (64, 256)
        for precision in ("32", "bf16-mixed")
    ]
    header = [
        "network",
        "batch",
        "precision",
        "batches per Lightning step",
        "hand-written ms/step",
        "esszoo ms/step",
        "esszoo / hand",
        "one batch per Lightning step / hand",
        "Lightning's cost per batch, ms",
    ]
    copies = [
        host_copy(case, row)
        for case in (EMULATOR, LENET)
        for row in rows
        if row[0] == case.label and row[2] == "32"
    ]
    copy_header = [
        "network",
        "batch",
        "bytes per step (inputs and targets)",
        "gather on the host, us/step",
        "of the CPU step",
        f"copy to a GPU at {LINK_GBS[0]}-{LINK_GBS[1]} GB/s, us/step",
    ]
    return table(header, rows) + "\n\n" + DEVICE_NOTE + "\n\n" + table(copy_header, copies)


def host_copy(case: Case, row: list) -> list[object]:
    """What a batch costs before the model sees it when the data stay on the host: the
    gather of its rows (which data kept on the device also does, there) and its bytes."""
    batch, step_ms = row[1], row[5]
    recipe = load_recipe(ROOT / "recipes" / case.recipe, [f"trainer.batch_size={batch}"])
    data = build_data(recipe)
    tensors = build_task(recipe, _net(recipe, data)).prepare(data)["train"]
    tensors = {name: tensors[name] for name in ("x", "y")}
    rows = torch.randperm(len(tensors["x"]))[:batch]
    gather = median_seconds(lambda: [t[rows] for t in tensors.values()], repeats=200)
    size = sum(t[rows].nbytes for t in tensors.values())
    link = [size / (gbs * 1e9) * 1e6 for gbs in LINK_GBS[::-1]]
    return [
        case.label,
        batch,
        size,
        gather * 1e6,
        f"{gather * 1e3 / step_ms:.1%}",
        f"{link[0]:.3g}-{link[1]:.3g}",
    ]


# a PCIe 4 or 5 x16 host link as copies from pageable and pinned memory reach it
LINK_GBS = (10, 50)
DEVICE_NOTE = """Data kept where the model is (`trainer.data_on_device`). On the CPU the
data already are where the model is: both paths are one code path, the rows of a batch
gathered by index from the split's tensors (`TensorBatches`), and the gain is nothing,
which the table shows as the gather's share of the step. On a GPU, data left on the host
cost that gather on the host and a copy of the batch over the host link every step; kept
on the device (when the split takes at most `trainer.data_on_device` of its memory, a
quarter by default), the gather runs there and the copy is gone. The last column is that
copy at 10-50 GB/s, an estimate (no GPU was lent to the session that measured this): for
these small networks it is microseconds against a GPU step of a few hundred, so what data
on the device saves there is mostly the host gather and the synchronisation of a copy per
step, a few percent of a small network's step, not its arithmetic."""


if __name__ == "__main__":
    print(run())
