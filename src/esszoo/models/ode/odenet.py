"""ODE-Net: the ODE block in place of a ResNet's stack of residual blocks.

Paper: Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential
Equations", NeurIPS, arXiv:1806.07366. Section 3 and Table 1 compare, on MNIST, a small
ResNet with the same network in which its residual blocks are replaced by one ODE block
(`esszoo.layers.ode`): 0.41% test error with 0.60M parameters for the ResNet, 0.42% with
0.22M for the ODE-Net, whose memory does not grow with depth and whose cost the solver
chooses (the number of function evaluations, NFE).

Paper to code (Section 3, "the same architecture", as the authors' example
torchdiffeq/examples/odenet_mnist.py builds it):

- Downsampling: a 3x3 convolution (64 maps, no padding), then two residual blocks of
  stride 2 with 1x1 projection shortcuts (``downsampling="residual"``); the example's
  default ``"conv"`` uses two 4x4 convolutions of stride 2 with group norms instead.
- Features: ``variant="resnet"``, six pre-activation residual blocks (group norm, ReLU,
  3x3 convolution, twice); ``variant="ode"``, one ODE block whose dynamics f(h, t) are
  group norm, ReLU, a 3x3 convolution that sees t as one more channel, group norm, ReLU,
  the same convolution again and a group norm, integrated over t in [0, 1].
- Head: group norm, ReLU, global average pooling and a linear layer to the classes.
- Group norms of min(32, C) groups throughout (the authors' code), which hold for any
  batch size, as the ODE solver needs: its steps see one batch at a time.

Parameter counts of these builds (1 x 28 x 28 digits, 10 classes, 64 maps):

- ``variant="resnet"``, residual downsampling: 601,482 (the paper's 0.60M).
- ``variant="ode"``, residual downsampling: 232,970; with ``downsampling="conv"`` 208,266.
  The paper gives 0.22M, between the two: its exact network is not published, and the
  authors' example (which states its architecture differs from the paper's experiments)
  is followed here.

Departures: the solver is torchdiffeq's ``dopri5`` at tolerances 1e-3 (the example's), as
the paper's; any of torchdiffeq's solvers and the adjoint can be chosen. Fixed-step
solvers make the network exportable to TorchScript (a trace of an adaptive solver would
freeze the steps it took for one input; it is refused with a message).
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, set_padding
from esszoo.layers.ode import ConcatConv2d, ODEBlock
from esszoo.registry import Paper, register_model

VARIANTS = ("ode", "resnet")
DOWNSAMPLINGS = ("residual", "conv")
RESIDUAL_BLOCKS = 6  # the ResNet of Section 3
# the smallest grids that leave 2x2 points after the downsampling (an unpadded 3x3
# convolution, then two halvings), so that every group norm sees more than one value
MIN_SIZE = {"residual": (7, 7), "conv": (10, 10)}


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(norm(conv(relu(norm(x)))))), with a 1x1
    projection of the normalised input where the block changes the resolution."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, stride, padding=1, bias=False)
        self.norm2 = group_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.project = nn.Conv2d(channels, channels, 1, stride, bias=False) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(x))
        shortcut = x if self.project is None else self.project(out)
        out = self.conv1(out)  # (B, C, H, W) -> (B, C, H / stride, W / stride)
        out = self.conv2(torch.relu(self.norm2(out)))
        return out + shortcut


class Dynamics(nn.Module):
    """f(h, t) of the ODE block: the residual branch, with t given to both convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = group_norm(channels)
        self.conv1 = ConcatConv2d(channels, channels)
        self.norm2 = group_norm(channels)
        self.conv2 = ConcatConv2d(channels, channels)
        self.norm3 = group_norm(channels)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, torch.relu(self.norm1(h)))
        out = self.conv2(t, torch.relu(self.norm2(out)))
        return self.norm3(out)  # dh/dt, (B, C, H, W)


@register_model(
    name="odenet",
    family="neural_ode",
    tasks=("classification",),
    paper=Paper(
        authors="Chen, Rubanova, Bettencourt & Duvenaud",
        year=2018,
        title="Neural Ordinary Differential Equations",
        venue="NeurIPS",
        arxiv="1806.07366",
    ),
    reference=dict(in_channels=1, num_classes=10),
    reference_params=232_970,
    reference_note="MNIST (1x28x28, 10 digits), 64 maps, residual downsampling: the ODE-Net "
    "232,970 (downsampling='conv', as the authors' example: 208,266; the paper: 0.22M); "
    "variant='resnet', its six residual blocks in place of the ODE block: 601,482 (the "
    "paper: 0.60M)",
    small=dict(in_channels=1, num_classes=3, width=8, solver="rk4", step_size=0.5),
    example_input=(2, 1, 28, 28),
    min_size=MIN_SIZE["residual"],
    export=("torchscript",),
    export_note="TorchScript with fixed-step solvers (rk4, euler, ...); an adaptive solver's "
    "steps depend on the input and cannot be traced. ONNX: torch.export cannot follow "
    "torchdiffeq's checks on the time grid (data-dependent guards)",
)
class ODENet(nn.Module):
    """ODE-Net: a continuous-depth ResNet whose residual stack is an ODE solved by torchdiffeq.

    Downsampling, then an ODE block (or six residual blocks), then a linear classifier."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        width: int = 64,
        variant: str = "ode",
        downsampling: str = "residual",
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        step_size: float | None = None,
        adjoint: bool = False,
        integration_time: float = 1.0,
        padding: str = "zeros",
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ModelError(f"odenet has no variant '{variant}'", f"choose one of {VARIANTS}")
        if downsampling not in DOWNSAMPLINGS:
            raise ModelError(
                f"odenet has no downsampling '{downsampling}'", f"choose one of {DOWNSAMPLINGS}"
            )
        if downsampling == "residual":
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, width, 3),
                ResidualBlock(width, stride=2),
                ResidualBlock(width, stride=2),
            )
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, width, 3),
                group_norm(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 4, 2, padding=1),
                group_norm(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 4, 2, padding=1),
            )
        if variant == "ode":
            self.features = ODEBlock(
                Dynamics(width),
                solver=solver,
                rtol=rtol,
                atol=atol,
                step_size=step_size,
                adjoint=adjoint,
                integration_time=integration_time,
            )
        else:
            self.features = nn.Sequential(*(ResidualBlock(width) for _ in range(RESIDUAL_BLOCKS)))
        self.min_size = MIN_SIZE[downsampling]
        self.norm = group_norm(width)
        self.classifier = nn.Linear(width, num_classes)
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, self.min_size, "odenet")
        h = self.downsample(x)  # (B, C, 28, 28) -> (B, width, 7, 7)
        h = self.features(h)  # h(1): the ODE's solution, or six residual blocks
        h = torch.relu(self.norm(h)).mean(dim=(2, 3))  # -> (B, width)
        return self.classifier(h)  # -> (B, num_classes)
