"""esszoo on one GPU: the ResNet-50 training step and the inpainting flagship.

Run where CUDA is (`python -m benchmarks.run_all gpu`); elsewhere the section is skipped
and its last result kept. Both parts use esszoo's defaults on CUDA (bf16 autocast,
channels-last) and are run with torch.compile off and on, which is how the default
`trainer.compile: auto` (off) was chosen.

- ResNet-50 training step on the radar scenes of recipes/radar_scenes_resnet18.yaml (DWD
  RADOLAN, 1 x 95 x 114 at 2 km; the training scenes repeated to fill the steps), batch
  256, batches sliced from host memory and copied to the GPU each step: the Trainer
  `esszoo train` builds against a plain PyTorch loop with the same model, batches,
  precision, layout, AdamW and cosine schedule, and against naive fp32 eager. Time per step:
  mean over 30 steps after 5 warm-up steps (compilation included in the warm-up), the GPU
  synchronised at both ends. Achieved FLOP/s: the FLOPs of one step (forward and
  backward, torch.utils.flop_counter) over the step time, against a measured 8192^3 bf16
  matrix product.
- The flagship, `esszoo train recipes/inpaint_ostia.yaml` (pconv_unet, OSTIA SST with real
  gap shapes): seconds of training (20 epochs or early stopping; the first epoch holds the
  compilation) and of its last epoch, and of the whole run
  (data, training, scoring with the four baselines, plots), and the test scores.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import ROOT, table
from esszoo.data.batches import TensorBatches
from esszoo.optim import configure_optimizer
from esszoo.recipe import load_recipe
from esszoo.registry import create_model
from esszoo.run import build_data, build_task
from esszoo.training import ChannelsLast, make_trainer

NEEDS_CUDA = True
RECIPE = ROOT / "recipes" / "radar_scenes_resnet18.yaml"
FLAGSHIP = ROOT / "recipes" / "inpaint_ostia.yaml"
BATCH = 256
STEPS = 30
WARMUP = 5


def matmul_peak() -> float:
    """FLOP/s of a 8192^3 bf16 matrix product (mean of ten after three warm-ups)."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in "ab")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start)


class SyncedTimer(L.Callback):
    """Seconds per step over steps WARMUP .. WARMUP + STEPS, synchronised at both ends."""

    def __init__(self) -> None:
        self.start = 0.0
        self.per_step = float("nan")

    def on_train_batch_start(self, trainer, task, batch, batch_index) -> None:  # noqa: ANN001
        if batch_index == WARMUP:
            torch.cuda.synchronize()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_index) -> None:  # noqa: ANN001
        if batch_index == WARMUP + STEPS - 1:
            torch.cuda.synchronize()
            self.per_step = (time.perf_counter() - self.start) / STEPS


def _recipe(compile_net: bool = False):
    return load_recipe(
        RECIPE,
        [
            "trainer.progress_bar=false",
            "trainer.early_stopping=null",
            "model.name=resnet50",
            f"trainer.batch_size={BATCH}",
            f"trainer.compile={str(compile_net).lower()}",
        ],
    )


def _net(classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet50", in_channels=1, num_classes=classes)


def esszoo_step(data, compile_net: bool) -> float:
    recipe = _recipe(compile_net)
    task = build_task(recipe, _net(len(data.classes)))
    tensors = _repeated(task.prepare(data)["train"])
    timer = SyncedTimer()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(
            recipe,
            Path(folder),
            [timer, ChannelsLast()],
            limit_train_batches=WARMUP + STEPS,
            limit_val_batches=0,
            max_epochs=1,
        )
        trainer.fit(task, TensorBatches(tensors, BATCH, shuffle=True))
    return timer.per_step


def hand_written(data, bf16: bool, channels_last: bool, compile_net: bool = False) -> float:
    recipe = _recipe()
    tensors = _repeated(build_task(recipe, _net(len(data.classes))).prepare(data)["train"])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = _net(len(data.classes)).cuda().to(memory_format=fmt)
    if compile_net:
        model.compile()

    class Steps:
        estimated_stepping_batches = 1000

    config = configure_optimizer(model.parameters(), recipe.trainer, Steps())
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    x, y = tensors["x"], tensors["y"]
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            torch.cuda.synchronize()
            start = time.perf_counter()
        rows = order[step * BATCH : (step + 1) * BATCH]
        inputs = x[rows].cuda().contiguous(memory_format=fmt)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            value = F.cross_entropy(model(inputs).float(), y[rows].cuda())
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / STEPS


def _repeated(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The training scenes repeated to at least the rows the timed steps need."""
    times = -(-(WARMUP + STEPS + 1) * BATCH // len(tensors["x"]))
    return {name: t.repeat(times, *([1] * (t.dim() - 1))) for name, t in tensors.items()}


def step_flops(data) -> int:
    model = _net(len(data.classes)).cuda()
    x = data.train.x[:BATCH].nan_to_num().cuda()
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(x), data.train.y[:BATCH].cuda()).backward()
    return counter.get_total_flops()


def resnet50_section() -> str:
    data = build_data(_recipe())
    peak = matmul_peak()
    flops = step_flops(data)
    naive = hand_written(data, bf16=False, channels_last=False)
    rows = []
    for compile_net in (False, True):
        hand = hand_written(data, bf16=True, channels_last=True, compile_net=compile_net)
        ours = esszoo_step(data, compile_net)
        rows.append(
            [
                "on" if compile_net else "off",
                hand * 1e3,
                ours * 1e3,
                ours / hand,
                BATCH / ours,
                flops / ours / 1e12,
                f"{100 * flops / ours / peak:.0f}%",
                naive / ours,
            ]
        )
        print(rows[-1], flush=True)
    header = [
        "torch.compile",
        "hand-written ms/step",
        "esszoo ms/step",
        "esszoo / hand",
        "scenes/s",
        "achieved TFLOP/s",
        "of bf16 matmul peak",
        "naive fp32 eager / esszoo",
    ]
    return (
        f"ResNet-50, batch {BATCH} of 1 x 95 x 114 scenes, bf16 autocast, channels-last; "
        f"naive fp32 eager {naive * 1e3:.1f} ms/step.\n\n"
        + table(header, rows)
        + f"\n\nMeasured bf16 matrix-product peak: {peak / 1e12:.0f} TFLOP/s."
    )


def flagship(compile_net: bool) -> list[object]:
    name = f"gpu_inpaint_ostia_{'compiled' if compile_net else 'eager'}"
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "esszoo",
            "train",
            str(FLAGSHIP),
            "--overwrite",
            "trainer.progress_bar=false",
            f"trainer.compile={str(compile_net).lower()}",
            f"name={name}",
            f"out_dir={out}",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - start
        run = Path(out) / name
        with open(run / "metrics.csv") as file:
            epochs = list(csv.DictReader(file))
        with open(run / "scores.csv") as file:
            scores = {row["predictor"]: row for row in csv.DictReader(file)}
    model = scores["pconv_unet"]
    dineof = next(row for key, row in scores.items() if "dineof" in key.lower())
    return [
        "on" if compile_net else "off",
        len(epochs),
        float(epochs[-1]["seconds"]),
        float(epochs[-1]["seconds"]) - float(epochs[-2]["seconds"]),
        total,
        float(model["rmse"]),
        float(model["corr"]),
        float(dineof["rmse"]),
    ]


def run() -> str:
    torch.backends.cudnn.benchmark = True  # as esszoo's Trainer sets it on CUDA
    parts = [resnet50_section()]
    print(parts[0], flush=True)
    rows = []
    for compile_net in (False, True):
        rows.append(flagship(compile_net))
        print(rows[-1], flush=True)
    header = [
        "torch.compile",
        "epochs",
        "training s",
        "last epoch s",
        "whole run s",
        "pconv_unet test RMSE K",
        "correlation",
        "DINEOF RMSE K",
    ]
    parts.append(
        "The inpainting flagship, `esszoo train recipes/inpaint_ostia.yaml` (CPU figures: "
        "the encoder-decoder section above):\n\n" + table(header, rows)
    )
    return "\n\n".join(parts)


if __name__ == "__main__":
    print(run())
