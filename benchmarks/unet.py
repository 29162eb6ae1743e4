"""UNet: training step overhead and FLOP/s on real radar data; memory on a global grid.

Step and FLOP/s: the recipe recipes/radar_intensity_unet.yaml (3 frames of DWD RADOLAN at
2 km, 95 x 114, 4 classes) with the paper's width 64, batch 16: esszoo's Trainer (its
default bf16 autocast and channels-last on this CPU) against a plain PyTorch loop with
the same model, batches, precision, layout, AdamW and cosine schedule; median step times;
FLOPs of a step counted by torch.utils.flop_counter, against the measured bf16 convolution
peak of cnn_train_step.

Memory: the peak resident memory of a process that trains a UNet (width 64, one input and
one output channel, bf16 autocast, channels-last) for two steps at batch 1 on a global
grid, measured in a fresh process per grid (ru_maxrss). On small grids a fixed ~2.5 GiB
(the library, the weights and the optimizer's state, oneDNN's buffers) hides the
activations, so the growth per point is taken between the two largest grids, where the
activations dominate, and the largest grid that trains in 24 GiB is extrapolated from
the largest measured one along that line.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.cnn_train_step import conv_peak_flops, esszoo_step, hand_written
from benchmarks.common import ROOT, table
from esszoo.recipe import load_recipe
from esszoo.registry import create_model
from esszoo.run import build_data, build_task
from esszoo.training import resolve_precision

RECIPE = ROOT / "recipes" / "radar_intensity_unet.yaml"
GRIDS = [(181, 360), (721, 1440), (1441, 2880)]
MEMORY_LIMIT_GIB = 24

MEMORY_CHILD = """
import resource, sys, torch
from esszoo.registry import create_model
height, width = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
net = create_model("unet", in_channels=1, out_channels=1).to(memory_format=torch.channels_last)
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
x = torch.randn(1, 1, height, width).contiguous(memory_format=torch.channels_last)
for _ in range(2):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net(x).float().square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def _net(classes: int, channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("unet", in_channels=channels, out_channels=classes, width=64)


def memory_gib(height: int, width: int) -> float:
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(height), str(width)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def run() -> str:
    recipe = load_recipe(
        RECIPE, ["trainer.progress_bar=false", "trainer.early_stopping=null", "model.width=64"]
    )
    precision = resolve_precision(recipe.trainer.precision, "cpu")
    data = build_data(recipe)
    classes, channels = len(data.classes), data.train.x.shape[1]
    task = build_task(recipe, _net(classes, channels))
    tensors = task.prepare(data)["train"]
    ours = esszoo_step(task, tensors, recipe)
    loss = functools.partial(F.cross_entropy, ignore_index=-1)  # -1: class unknown
    bf16 = precision == "bf16-mixed"
    hand = hand_written(_net(classes, channels), tensors, recipe, loss, bf16, True)
    model = _net(classes, channels)
    counter = FlopCounterMode(display=False)
    batch = recipe.trainer.batch_size
    with counter:
        F.cross_entropy(
            model(data.train.x[:batch].nan_to_num()), data.train.y[:batch], ignore_index=-1
        ).backward()
    achieved = counter.get_total_flops() / ours
    peak = conv_peak_flops()
    step_table = table(
        [
            "model",
            "precision",
            "hand-written ms/step",
            "esszoo ms/step",
            "esszoo / hand",
            "achieved GFLOP/s",
            "of bf16 conv peak",
        ],
        [
            [
                "unet (width 64), 95 x 114, batch 16",
                precision,
                hand * 1e3,
                ours * 1e3,
                ours / hand,
                achieved / 1e9,
                f"{100 * achieved / peak:.0f}%",
            ]
        ],
    )
    measured = [(h, w, memory_gib(h, w)) for h, w in GRIDS]
    (h1, w1, m1), (h2, w2, m2) = measured[-2:]
    slope = (m2 - m1) / (h2 * w2 - h1 * w1)  # GiB per point, where activations dominate
    offset = m2 - slope * h2 * w2
    largest = (MEMORY_LIMIT_GIB - offset) / slope
    side = int((largest / 2) ** 0.5)  # a 1:2 latitude-longitude grid
    memory_rows = [[f"{h} x {w}", h * w, f"{m:.2f}"] for h, w, m in measured]
    memory_table = table(["grid", "points", "peak GiB (batch 1, training)"], memory_rows)
    summary = (
        f"Memory grows by {slope * 1e6:.2f} GiB per million points (between the two largest "
        f"grids; {offset:.2f} GiB at none). The largest 1:2 grid that trains in "
        f"{MEMORY_LIMIT_GIB} GiB: about {side} x {2 * side} "
        f"({largest / 1e6:.1f} million points; extrapolated)."
    )
    return "\n\n".join(
        [
            step_table,
            f"Measured bf16 convolution peak: {peak / 1e9:.0f} GFLOP/s.",
            memory_table,
            summary,
        ]
    )


if __name__ == "__main__":
    print(json.dumps(run()) if "--json" in sys.argv else run())
