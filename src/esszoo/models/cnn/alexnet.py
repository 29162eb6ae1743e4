"""AlexNet: the deep convolutional network that won ImageNet 2012.

Paper: Krizhevsky, Sutskever & Hinton (2012), "ImageNet Classification with Deep
Convolutional Neural Networks", NeurIPS 25. Five convolutional layers and three fully
connected ones, trained on two GPUs: the network is split into two towers of half the
maps each, which talk to each other only at some layers (Section 3.2, Fig. 2).

Paper to code (Section 3.5, Fig. 2; ``channels`` = (96, 256, 384, 384, 256)):

- conv1: 96 kernels 11x11, stride 4, on the 224x224x3 input (48 per tower; each sees the
  whole input, so one ordinary convolution), ReLU (Section 3.1), local response
  normalization (Section 3.3), overlapping max pool 3x3 with stride 2 (Section 3.4).
- conv2: 256 kernels 5x5 (``groups=2``: each tower reads only its own 48 conv1 maps),
  ReLU, response normalization, max pool 3/2.
- conv3: 384 kernels 3x3 connected to all 256 conv2 maps (the towers meet), ReLU.
- conv4: 384 kernels 3x3, ``groups=2``, ReLU. conv5: 256 kernels 3x3, ``groups=2``, ReLU,
  max pool 3/2 -> 256 x 6 x 6.
- fc6, fc7: 4096 units each, connected to all units below, ReLU, dropout 0.5 on their
  outputs (Section 4.2); fc8: ``num_classes`` logits (the paper's 1000-way softmax is left
  to the loss).
- Response normalization, Section 3.3: b_i = a_i / (k + alpha sum_j a_j^2)^beta over the
  n = 5 adjacent maps j of the same tower, k = 2, alpha = 1e-4, beta = 0.75. PyTorch's
  ``LocalResponseNorm`` divides alpha by n, so it is given n * alpha; each tower is
  normalized on its own, as each GPU normalized its own maps.

This is 60,965,224 parameters at 3x224x224 and 1000 classes.

``variant="torchvision"``: the single-tower network of Krizhevsky (2014), "One weird trick
for parallelizing convolutional neural networks" (arXiv:1404.5997), which torchvision's
``alexnet`` builds: 64-192-384-256-256 kernels, no grouping, no response normalization,
dropout on the inputs of fc6 and fc7; 61,100,840 parameters. Its layers and their names are
torchvision's, so torchvision's weights load into it.

Knobs whose defaults are the paper's: ``channels`` (the five convolutions' kernels; the
variant's by default), ``classifier_width`` (4096) and ``dropout`` (0.5).

Departures from the paper:

- conv1 pads by 2, as torchvision does, so that the stated 224x224 input gives the stated
  55x55 maps (without padding, 55x55 needs 227x227).
- An adaptive average pool to 6x6 before fc6 (torchvision's) lets grids other than
  224x224 in; at 224x224 it is the identity. The three overlapping pools need a grid of at
  least 63x63.
- Initialisation is PyTorch's default. The paper's (weights N(0, 0.01^2), biases 1 in
  conv2, conv4, conv5, fc6 and fc7; Section 5) was tuned to its learning-rate schedule and
  shrinks the signal of narrow configurations to nothing.
- The paper's test-time averaging over ten crops and its PCA colour augmentation are data
  and evaluation practice, not part of the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (63, 63)  # conv1 (11/4, pad 2) and three 3/2 pools: 63 -> 15 -> 7 -> 7 -> 3 -> 1
CHANNELS = {
    "paper": (96, 256, 384, 384, 256),  # Section 3.5
    "torchvision": (64, 192, 384, 256, 256),  # Krizhevsky 2014, torchvision's alexnet
}


class ResponseNorm(nn.Module):
    """Section 3.3: local response normalization across maps, within each tower."""

    def __init__(
        self, towers: int, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0
    ):
        super().__init__()
        self.towers = towers
        # PyTorch normalizes by k + alpha/n * sum; the paper's alpha multiplies the plain sum
        self.norm = nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        towers = x.unflatten(1, (self.towers, -1)).flatten(0, 1)  # (B, C, ...) -> (B*T, C/T, ...)
        return self.norm(towers).unflatten(0, (-1, self.towers)).flatten(1, 2)  # -> (B, C, ...)


class AlexNet(nn.Module):
    """AlexNet: five convolutional layers and three fully connected ones (Fig. 2)."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        variant: str = "paper",
        channels: Sequence[int] | None = None,
        classifier_width: int = 4096,
        dropout: float = 0.5,
        padding: str = "zeros",
    ):
        super().__init__()
        if variant not in CHANNELS:
            raise ModelError(
                f"alexnet has no variant '{variant}'", f"choose one of {tuple(CHANNELS)}"
            )
        channels = tuple(channels or CHANNELS[variant])
        paper = variant == "paper"
        towers = 2 if paper else 1
        if len(channels) != 5 or any(c % towers for c in channels):
            raise ModelError(
                f"alexnet needs five channel counts, even for the paper's two towers, "
                f"got {channels}",
                "give channels=(c1, c2, c3, c4, c5), for example (96, 256, 384, 384, 256)",
            )
        c1, c2, c3, c4, c5 = channels

        def response_norm() -> list[nn.Module]:
            return [ResponseNorm(towers)] if paper else []

        self.features = nn.Sequential(
            # conv1: (B, C, 224, 224) -> (B, c1, 55, 55) -> pool -> (B, c1, 27, 27)
            nn.Conv2d(in_channels, c1, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            *response_norm(),
            nn.MaxPool2d(3, 2),
            # conv2: -> (B, c2, 27, 27) -> pool -> (B, c2, 13, 13)
            nn.Conv2d(c1, c2, 5, padding=2, groups=towers),
            nn.ReLU(inplace=True),
            *response_norm(),
            nn.MaxPool2d(3, 2),
            # conv3, conv4, conv5: -> (B, c5, 13, 13) -> pool -> (B, c5, 6, 6)
            nn.Conv2d(c2, c3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1, groups=towers),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1, groups=towers),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        fc6 = nn.Linear(c5 * 6 * 6, classifier_width)
        fc7 = nn.Linear(classifier_width, classifier_width)
        fc8 = nn.Linear(classifier_width, num_classes)
        relu6, relu7 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)
        if paper:  # Section 4.2: dropout on the outputs of fc6 and fc7
            layers = [fc6, relu6, nn.Dropout(dropout), fc7, relu7, nn.Dropout(dropout), fc8]
        else:  # torchvision: dropout on the inputs of fc6 and fc7
            layers = [nn.Dropout(dropout), fc6, relu6, nn.Dropout(dropout), fc7, relu7, fc8]
        self.classifier = nn.Sequential(*layers)
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "alexnet")
        x = self.features(x)  # (B, C, 224, 224) -> (B, c5, 6, 6); other sizes on other grids
        x = self.avgpool(x)  # -> (B, c5, 6, 6)
        return self.classifier(x.flatten(1))  # (B, c5*36) -> (B, num_classes)


@register_model(
    family="cnn",
    tasks=("classification",),
    paper=Paper(
        authors="Krizhevsky, Sutskever & Hinton",
        year=2012,
        title="ImageNet Classification with Deep Convolutional Neural Networks",
        venue="Advances in Neural Information Processing Systems 25 (NeurIPS)",
    ),
    reference=dict(in_channels=3, num_classes=1000),
    reference_params=60_965_224,
    reference_note="the paper's two-tower network on ImageNet (3x224x224, 1000 classes); "
    "variant='torchvision' (Krizhevsky 2014, torchvision's alexnet) has 61,100,840",
    small=dict(in_channels=3, num_classes=5, channels=(8, 16, 24, 24, 16), classifier_width=16),
    example_input=(2, 3, 63, 63),
    min_size=MIN_SIZE,
)
def alexnet(
    *,
    in_channels: int,
    num_classes: int,
    variant: str = "paper",
    channels: Sequence[int] | None = None,
    classifier_width: int = 4096,
    dropout: float = 0.5,
    padding: str = "zeros",
) -> AlexNet:
    """AlexNet: the two-tower ImageNet 2012 network, or torchvision's single tower."""
    return AlexNet(
        in_channels=in_channels,
        num_classes=num_classes,
        variant=variant,
        channels=channels,
        classifier_width=classifier_width,
        dropout=dropout,
        padding=padding,
    )
