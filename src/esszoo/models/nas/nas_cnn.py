"""The child network of neural architecture search with reinforcement learning: a stack of
convolutions whose every layer, and every skip between layers, a controller chose.

Paper: Zoph & Le (2017), "Neural Architecture Search with Reinforcement Learning", ICLR,
arXiv:1611.01578. The controller (`esszoo.automl.nas_rl`) writes, for each layer, a filter
height and width (each 1, 3, 5 or 7) and a number of filters (24, 36, 48 or 64), the
paper's CIFAR-10 space with strides fixed at 1 (section 4.1), and, at each layer's anchor
point, which earlier layers feed it (section 3.3, skip connections). This file builds the
network so described; ``layers`` is that description, a list of
``{height, width, filters, inputs}`` with ``inputs`` the indices of earlier layers.

Section 3.3, how the layers connect:

- a layer's input is the concatenation, along the channels, of the layers it is connected
  to; a layer connected to none reads the image;
- the layers that no later layer reads are concatenated at the end and go to the
  classifier (global average pooling and a linear layer here: the paper's classifier is
  not specified beyond a softmax);
- inputs of different grid sizes are padded with zeros; with strides of 1 every layer keeps
  the input's grid, so none is needed here.

Each layer is a convolution (padded to keep the grid, "same"), batch norm and a ReLU.
Reference configuration (counted here; the paper publishes its found 15-layer network only
as a figure): 6 layers of 3 x 3 filters and 36 filters each, a chain without skips, on 3
input channels and 10 classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_grid
from esszoo.layers.padding import set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)
CHAIN = [{"height": 3, "width": 3, "filters": 36, "inputs": [i - 1] if i else []} for i in range(6)]


def check_layers(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The description, refused in one line where a layer is malformed or reads a later one."""
    checked = []
    for index, layer in enumerate(layers):
        try:
            height, width, filters = (
                int(layer["height"]),
                int(layer["width"]),
                int(layer["filters"]),
            )
            inputs = sorted({int(i) for i in layer.get("inputs", [])})
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(
                f"layer {index} of nas_cnn needs height, width, filters and inputs ({error})"
            ) from None
        if min(height, width, filters) < 1 or height % 2 == 0 or width % 2 == 0:
            raise ModelError(f"layer {index} of nas_cnn: odd filter sizes and filters >= 1")
        if any(i < 0 or i >= index for i in inputs):
            raise ModelError(f"layer {index} of nas_cnn reads layers {inputs}: only earlier ones")
        checked.append({"height": height, "width": width, "filters": filters, "inputs": inputs})
    if not checked:
        raise ModelError("nas_cnn needs at least one layer")
    return checked


class NASCNN(nn.Module):
    def __init__(self, *, in_channels: int, num_classes: int, layers: list[dict[str, Any]]):
        super().__init__()
        self.layers = check_layers(layers)
        self.convs = nn.ModuleList()
        for layer in self.layers:
            c_in = sum(self.layers[i]["filters"] for i in layer["inputs"]) or in_channels
            kernel = (layer["height"], layer["width"])
            padding = (layer["height"] // 2, layer["width"] // 2)
            self.convs.append(
                nn.Sequential(
                    nn.Conv2d(c_in, layer["filters"], kernel, padding=padding, bias=False),
                    nn.BatchNorm2d(layer["filters"]),
                    nn.ReLU(inplace=True),
                )
            )
        read = {i for layer in self.layers for i in layer["inputs"]}
        self.ends = [i for i in range(len(self.layers)) if i not in read]
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(sum(self.layers[i]["filters"] for i in self.ends), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "nas_cnn")
        outputs: list[torch.Tensor] = []
        for layer, conv in zip(self.layers, self.convs, strict=True):
            inputs = [outputs[i] for i in layer["inputs"]]
            outputs.append(conv(torch.cat(inputs, dim=1) if inputs else x))  # (B, filters, H, W)
        ends = torch.cat([outputs[i] for i in self.ends], dim=1)
        return self.classifier(self.pool(ends).flatten(1))  # (B, num_classes)


@register_model(
    family="nas",
    tasks=("classification",),
    paper=Paper(
        authors="Zoph & Le",
        year=2017,
        title="Neural Architecture Search with Reinforcement Learning",
        venue="ICLR",
        arxiv="1611.01578",
    ),
    reference=dict(in_channels=3, num_classes=10),
    reference_params=60_094,
    reference_note="counted here, the default description (the paper draws its found "
    "network as a figure): 6 layers of 36 3x3 filters in a chain, batch norm, pooling and "
    "a linear classifier, 3 channels in, 10 classes",
    small=dict(in_channels=3, num_classes=4),
    example_input=(2, 3, 9, 13),
    min_size=MIN_SIZE,
)
def nas_cnn(
    *,
    in_channels: int,
    num_classes: int,
    layers: list[dict[str, Any]] | None = None,
    padding: str = "zeros",
) -> NASCNN:
    """NAS with RL's child (Zoph & Le 2017): convolutions of chosen filter sizes and counts,
    each reading the concatenation of the earlier layers chosen for it."""
    net = NASCNN(in_channels=in_channels, num_classes=num_classes, layers=layers or CHAIN)
    return set_padding(net, padding)
