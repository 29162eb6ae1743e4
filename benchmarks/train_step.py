"""esszoo's training step against a hand-written PyTorch loop: same MLP, data, batch, optimizer.

Both train the emulator of recipes/emulate_precip.yaml on the real TMY3 hours. The
hand-written loop slices tensors, runs forward, MSE, backward, AdamW and the cosine
schedule. esszoo runs the Trainer that `esszoo train` builds (callbacks, checkpointing,
validation and all). A step is the time between the starts of consecutive batches within
an epoch, so it holds fetching, forward, backward and optimizer work and every per-step
hook, and leaves out the once-per-epoch validation and checkpoint. Medians over many steps.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.common import ROOT, table
from esszoo.data.batches import TensorBatches
from esszoo.optim import configure_optimizer
from esszoo.recipe import load_recipe
from esszoo.registry import create_model
from esszoo.run import build_data, build_task
from esszoo.training import make_trainer

RECIPE = ROOT / "recipes" / "emulate_precip.yaml"
ROUNDS = 3


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.steps: list[float] = []
        self.last: float | None = None

    def on_train_batch_start(self, trainer, task, batch, batch_index) -> None:
        now = time.perf_counter()
        if batch_index > 0 and self.last is not None:
            self.steps.append(now - self.last)
        self.last = now


def _net(recipe):
    torch.manual_seed(0)
    return create_model("mlp", in_channels=3, out_channels=1, **recipe.model.arguments())


def hand_written_steps(recipe, tensors, epochs: int, bf16: bool) -> list[float]:
    model = _net(recipe)
    loss_function = torch.nn.MSELoss()

    class Steps:
        estimated_stepping_batches = epochs * -(-len(tensors["x"]) // recipe.trainer.batch_size)

    config = configure_optimizer(model.parameters(), recipe.trainer, Steps())
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    x, y, batch = tensors["x"], tensors["y"], recipe.trainer.batch_size
    steps = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        last = None
        for start in range(0, len(x), batch):
            now = time.perf_counter()
            if last is not None:
                steps.append(now - last)
            last = now
            rows = order[start : start + batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_function(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return steps


def esszoo_steps(recipe, data, epochs: int) -> list[float]:
    task = build_task(recipe, _net(recipe))
    tensors = task.prepare(data)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(recipe, Path(folder), [timer])
        trainer.fit(
            task,
            TensorBatches(tensors["train"], recipe.trainer.batch_size, shuffle=True),
            TensorBatches(tensors["val"], 4096),
        )
    return timer.steps


def measure(batch: int, precision: str) -> list[object]:
    epochs = 12 if batch >= 4096 else 3
    overrides = [
        f"trainer.batch_size={batch}",
        f"trainer.precision={precision}",
        f"trainer.max_epochs={epochs}",
        "trainer.early_stopping=null",
        "trainer.progress_bar=false",
    ]
    recipe = load_recipe(RECIPE, overrides)
    data = build_data(recipe)
    tensors = build_task(recipe, _net(recipe)).prepare(data)["train"]
    bf16 = precision == "bf16-mixed"
    hand_steps, our_steps = [], []
    for _ in range(ROUNDS):  # interleaved, so that drifts of a shared machine hit both alike
        hand_steps += hand_written_steps(recipe, tensors, epochs, bf16)
        our_steps += esszoo_steps(recipe, data, epochs)
    hand, ours = statistics.median(hand_steps), statistics.median(our_steps)
    return [batch, precision, hand * 1e3, ours * 1e3, ours / hand]


def run() -> str:
    rows = [
        measure(batch, precision) for batch in (4096, 256) for precision in ("32", "bf16-mixed")
    ]
    header = ["batch", "precision", "hand-written ms/step", "esszoo ms/step", "esszoo / hand"]
    return table(header, rows)


if __name__ == "__main__":
    print(run())
