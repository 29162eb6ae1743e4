"""The multilayer perceptron, as a learned replacement of a hand-written parameterization.

Paper: Rumelhart, Hinton & Williams (1986), "Learning representations by back-propagating
errors": layers of weighted sums followed by a fixed nonlinearity, trained by gradient
descent on the error. In Earth system science this is the network that emulates a column
parameterization from the column's state (Krasnopolsky et al. 2005 for radiation; Rasp,
Pritchard & Gentine 2018 for convection in a superparameterized GCM).

Reference configuration: the network of Rasp et al. (2018): 94 inputs (a column of
temperature, humidity and forcings), nine hidden layers of 256 nodes with LeakyReLU(0.3),
65 outputs (heating and moistening tendencies and fluxes). The paper gives no exact
parameter count; counted here it is 567,361 (94*256+256 + 8*(256*256+256) + 256*65+65).

Departures: none in the architecture. ``dropout`` (Srivastava et al. 2014) is optional and
off by default, as in the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.layers import activation_layer
from esszoo.registry import Paper, register_model


@register_model(
    name="mlp",
    family="fully_connected",
    tasks=("regression",),
    paper=Paper(
        authors="Rumelhart, Hinton & Williams",
        year=1986,
        title="Learning representations by back-propagating errors",
        venue="Nature 323, 533-536",
        doi="10.1038/323533a0",
    ),
    reference=dict(
        in_channels=94, out_channels=65, depth=9, width=256, activation="leaky_relu:0.3"
    ),
    reference_params=567_361,
    reference_note="Rasp, Pritchard & Gentine 2018 (PNAS, doi:10.1073/pnas.1810286115); "
    "count computed here, the paper gives none",
    small=dict(in_channels=3, out_channels=2, depth=2, width=16),
    example_input=(4, 3),
)
class MLP(nn.Module):
    """Multilayer perceptron: ``depth`` hidden layers of ``width`` units, a linear output."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        depth: int = 4,
        width: int = 128,
        activation: str = "gelu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"mlp needs depth >= 1 and width >= 1, got {depth} and {width}")
        layers: list[nn.Module] = []
        features = in_channels
        for _ in range(depth):
            layers += [nn.Linear(features, width), activation_layer(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            features = width
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(features, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels) -> (batch, width) -> (batch, out_channels)
        return self.head(self.hidden(x))
