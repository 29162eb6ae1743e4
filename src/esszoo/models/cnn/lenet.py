"""LeNet-5: the convolutional network of handwritten-digit recognition.

Paper: LeCun, Bottou, Bengio & Haffner (1998), "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), 2278-2324, doi:10.1109/5.726791. Section II-B and Fig. 2
describe the network: local receptive fields, shared weights and subsampling, so that a
feature is detected wherever it appears and its exact position matters less and less.

Paper to code (Fig. 2, Section II-B; a 32x32 input, e.g. a 28x28 MNIST field padded by 2):

- C1: 6 maps, 5x5 convolution, 28x28 maps; 156 parameters.
- S2: subsampling. Each unit adds the four inputs of its 2x2 block, multiplies the sum by
  one trainable coefficient of its map and adds one trainable bias: 12 parameters.
- C3: 16 maps, 5x5 convolution on a subset of the S2 maps given by Table I (three
  contiguous maps, four contiguous, four discontinuous, or all six): 1,516 parameters.
  Only the connections of Table I exist as parameters (``ConnectionTable``).
- S4: subsampling as S2, 16 maps: 32 parameters.
- C5: 120 maps, 5x5 convolution; on a 32x32 input its maps are 1x1: 48,120 parameters.
- F6: 84 units fully connected to C5: 10,164 parameters.
- Every unit up to F6 passes its weighted sum through the squashing function
  f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Eq. 6 and Appendix A).
- Output: one Euclidean RBF unit per class, y_i = sum_j (x_j - w_ij)^2 (Eq. 7), with fixed
  weights of -1 or +1. These 60,000 trainable parameters (156 + 12 + 1,516 + 32 + 48,120
  + 10,164) are the whole network: the RBF weights are buffers, not parameters.
- Appendix A, initialisation: every weight and bias uniform in [-2.4/F, 2.4/F], F the
  fan-in of its unit.

Departures:

- The RBF weights. The paper draws each class as a stylized 7x12 bitmap (hence 84 units),
  and notes that random codes of -1 and +1 would also do; the bitmaps are not published
  as numbers, so each class gets such a random code, drawn from a fixed seed (the same for
  every model, whatever the torch seed).
- The output is the logits -y_i, for the task's cross-entropy. The paper trains with the
  MAP criterion of Eq. 9, y_D + log(e^-j + sum_i e^-y_i): the cross-entropy of these
  logits with one more constant term e^-j (a "rubbish class") in its normalizer; the
  cross-entropy is its limit as j grows. ``output="linear"``
  puts a trainable linear layer (84 -> num_classes) in place of the RBF units, the form most
  later LeNets use.
- Grids larger than 32x32: C5 stays a 5x5 convolution (as the paper intends: "if LeNet-5
  input were made bigger ... the feature map dimension would be larger than 1x1") and an
  average over C5's maps follows it, so F6 always sees 120 values. Grids smaller than
  32x32 raise: the data pad, as MNIST's 28x28 fields were padded for the paper.
- ``conv_padding`` (0 in the paper) pads C1, C3 and C5 so that each keeps the size of its
  input; with ``padding="earth"`` that padding wraps around in longitude. The 32x32
  minimum holds whatever the padding (padded, the layers would take grids down to 4x4),
  so that one minimum describes every LeNet-5: the paper's input.
"""

from __future__ import annotations

import itertools
import random

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (32, 32)  # Fig. 2: C5's 5x5 maps of S4 need a 32x32 input
F6_UNITS = 84  # Section II-B: a 7x12 bitmap per class
# Table I: the S2 maps that each of the 16 C3 maps reads
TABLE_I = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip
OUTPUTS = ("rbf", "linear")


class Squash(nn.Module):
    """Eq. 6: f(a) = A tanh(S a), so that f(1) = 1 and f(-1) = -1."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2 / 3):
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * a)


class Subsampling(nn.Module):
    """S2 and S4: the sum of each 2x2 block, times a coefficient per map, plus a bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.coefficient = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_sum = 4 * self.pool(x)  # (B, C, H, W) -> (B, C, H/2, W/2)
        return block_sum * self.coefficient.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConnectionTable(nn.Module):
    """C3: a convolution in which output map i reads only the input maps ``table[i]``.

    Each run of consecutive output maps with the same number of inputs is one grouped
    convolution over its inputs, gathered in table order, so that only the connections of
    the table hold weights.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel_size: int, padding: int):
        super().__init__()
        runs = [list(run) for _, run in itertools.groupby(table, key=len)]
        self.register_buffer(
            "inputs", torch.tensor([j for inputs in table for j in inputs]), persistent=False
        )
        self.split = [sum(map(len, run)) for run in runs]
        self.convs = nn.ModuleList(
            nn.Conv2d(size, len(run), kernel_size, padding=padding, groups=len(run))
            for run, size in zip(runs, self.split, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = x.index_select(1, self.inputs)  # (B, C_in, H, W) -> (B, connections, H, W)
        runs = torch.split(gathered, self.split, dim=1)
        # -> (B, len(table), H', W'), the output maps in table order
        return torch.cat([conv(run) for conv, run in zip(self.convs, runs, strict=True)], dim=1)


class EuclideanRBF(nn.Module):
    """Eq. 7: y_i = sum_j (x_j - w_ij)^2, with fixed codes w_i of -1 and +1; returns -y."""

    def __init__(self, in_features: int, num_classes: int, seed: int = 0):
        super().__init__()
        rng = random.Random(seed)
        codes = [[rng.choice((-1.0, 1.0)) for _ in range(in_features)] for _ in range(num_classes)]
        self.register_buffer("codes", torch.tensor(codes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 1, F) - (classes, F) -> (B, classes, F) -> (B, classes)
        return -(x.unsqueeze(1) - self.codes).square().sum(-1)


class LeNet5(nn.Module):
    """LeNet-5 of Fig. 2: C1, S2, C3, S4, C5, F6 and an output of Euclidean RBF units."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        output: str = "rbf",
        conv_padding: int = 0,
        padding: str = "zeros",
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise ModelError(f"lenet5 has no output '{output}'", f"choose one of {OUTPUTS}")
        self.c1 = nn.Conv2d(in_channels, 6, 5, padding=conv_padding)
        self.s2 = Subsampling(6)
        self.c3 = ConnectionTable(TABLE_I, 5, padding=conv_padding)
        self.s4 = Subsampling(16)
        self.c5 = nn.Conv2d(16, 120, 5, padding=conv_padding)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.f6 = nn.Linear(120, F6_UNITS)
        self.squash = Squash()
        if output == "rbf":
            self.output = EuclideanRBF(F6_UNITS, num_classes)
        else:
            self.output = nn.Linear(F6_UNITS, num_classes)
        self._initialize()
        set_padding(self, padding)

    def _initialize(self) -> None:
        # Appendix A: uniform in [-2.4/F, 2.4/F], F the fan-in of the unit
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
            elif isinstance(module, Subsampling):
                fan_in = 4
            else:
                continue
            for parameter in module.parameters(recurse=False):
                nn.init.uniform_(parameter, -2.4 / fan_in, 2.4 / fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "lenet5")
        x = self.squash(self.c1(x))  # (B, C, 32, 32) -> (B, 6, 28, 28)
        x = self.squash(self.s2(x))  # -> (B, 6, 14, 14)
        x = self.squash(self.c3(x))  # -> (B, 16, 10, 10)
        x = self.squash(self.s4(x))  # -> (B, 16, 5, 5)
        x = self.squash(self.c5(x))  # -> (B, 120, 1, 1); larger on larger grids
        x = self.pool(x).flatten(1)  # -> (B, 120)
        x = self.squash(self.f6(x))  # -> (B, 84)
        return self.output(x)  # -> (B, num_classes)


@register_model(
    family="cnn",
    tasks=("classification",),
    paper=Paper(
        authors="LeCun, Bottou, Bengio & Haffner",
        year=1998,
        title="Gradient-Based Learning Applied to Document Recognition",
        venue="Proc. IEEE 86(11), 2278-2324",
        doi="10.1109/5.726791",
    ),
    reference=dict(in_channels=1, num_classes=10),
    reference_params=60_000,
    reference_note="MNIST (1x32x32, 10 digits); the paper's per-layer counts C1 156, S2 12, "
    "C3 1,516, S4 32, C5 48,120, F6 10,164 summed here: the paper gives no total; the 840 "
    "fixed RBF weights are buffers, not counted",
    small=dict(in_channels=1, num_classes=10),
    example_input=(2, 1, 32, 32),
    min_size=MIN_SIZE,
)
def lenet5(
    *,
    in_channels: int,
    num_classes: int,
    output: str = "rbf",
    conv_padding: int = 0,
    padding: str = "zeros",
) -> LeNet5:
    """LeNet-5: convolutions, subsampling and RBF outputs, the digit recognizer of 1998."""
    return LeNet5(
        in_channels=in_channels,
        num_classes=num_classes,
        output=output,
        conv_padding=conv_padding,
        padding=padding,
    )
