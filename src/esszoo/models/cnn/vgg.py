"""VGG: very deep networks of small 3x3 convolutions.

Paper: Simonyan & Zisserman (2015), "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR, arXiv:1409.1556. One idea: depth from stacks of 3x3 convolutions
(stride 1, padding 1, so a stack keeps the grid) between 2x2 max pools of stride 2; two
3x3 layers see what one 5x5 sees, three what one 7x7 sees, with fewer weights and more
nonlinearities (Section 2.3).

Paper to code:

- Table 1, the configurations: five stages, each a stack of 3x3 convolutions + ReLU
  ending in a 2x2/2 max pool; stage widths 64, 128, 256, 512, 512 (``width`` * 1, 2, 4,
  8, 8). Columns A, B, D and E are registered as ``vgg11``, ``vgg13``, ``vgg16``,
  ``vgg19`` (the number counts the weight layers: convolutions + 3 fully connected).
  A-LRN and C (with 1x1 convolutions) are not offered; the paper found them no better than
  A and D.
- Section 2.1, the classifier: FC-4096, FC-4096 (ReLU), FC-num_classes; Section 3.1,
  dropout 0.5 after each of the first two.
- Section 3.1, initialisation: Glorot & Bengio (2010) weights and zero biases, the paper's
  own remedy for training the deep configurations from scratch instead of from A's weights.

Knobs whose defaults are the paper's: ``width`` (64, the first stage's channels; each
later stage doubles it up to 8 * width), ``classifier_width`` (4096) and ``dropout``
(0.5).

Departures, all as in torchvision (so state-dict names and counts match torchvision's):

- An adaptive average pool to 7x7 sits before the classifier, so grids other than
  the paper's 224x224 work; at 224x224 the last stage is already 7x7 and the pool is the
  identity. The grid must survive five halvings: at least 32x32.
- The ``_bn`` variants put batch normalization (Ioffe & Szegedy 2015, a later paper)
  between each convolution and its ReLU; the convolutions keep their biases.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.layers import check_grid, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (32, 32)  # five 2x2/2 max pools: 32 -> 1
STAGE_WIDTHS = (1, 2, 4, 8, 8)  # Table 1: 64, 128, 256, 512, 512 for width = 64
# Table 1: 3x3 convolutions per stage in each configuration
STAGE_DEPTHS = {
    "A": (1, 1, 2, 2, 2),
    "B": (2, 2, 2, 2, 2),
    "D": (2, 2, 3, 3, 3),
    "E": (2, 2, 4, 4, 4),
}


class VGG(nn.Module):
    """The VGG network of Table 1, configuration ``config``, optionally with batch norm."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        config: str,
        batch_norm: bool = False,
        width: int = 64,
        classifier_width: int = 4096,
        dropout: float = 0.5,
        padding: str = "zeros",
    ):
        super().__init__()
        self.name = f"vgg{sum(STAGE_DEPTHS[config]) + 3}" + ("_bn" if batch_norm else "")
        layers: list[nn.Module] = []
        channels = in_channels
        for multiple, depth in zip(STAGE_WIDTHS, STAGE_DEPTHS[config], strict=True):
            # a stage: (B, channels, H, W) -> (B, width * multiple, H/2, W/2)
            for _ in range(depth):
                layers.append(nn.Conv2d(channels, width * multiple, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width * multiple))
                layers.append(nn.ReLU(inplace=True))
                channels = width * multiple
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(classifier_width, classifier_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(classifier_width, num_classes),
        )
        self._initialize()
        set_padding(self, padding)

    def _initialize(self) -> None:
        # Section 3.1: Glorot initialisation, zero biases
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, self.name)
        x = self.features(x)  # (B, C, H, W) -> (B, 8*width, H/32, W/32)
        x = self.avgpool(x)  # -> (B, 8*width, 7, 7)
        return self.classifier(x.flatten(1))  # (B, 8*width*49) -> (B, num_classes)


PAPER = Paper(
    authors="Simonyan & Zisserman",
    year=2015,
    title="Very Deep Convolutional Networks for Large-Scale Image Recognition",
    venue="ICLR",
    arxiv="1409.1556",
)

# registered name: (Table 1 column, batch norm, trainable parameters at 3x224x224, 1000 classes)
VARIANTS = {
    "vgg11": ("A", False, 132_863_336),
    "vgg11_bn": ("A", True, 132_868_840),
    "vgg13": ("B", False, 133_047_848),
    "vgg13_bn": ("B", True, 133_053_736),
    "vgg16": ("D", False, 138_357_544),
    "vgg16_bn": ("D", True, 138_365_992),
    "vgg19": ("E", False, 143_667_240),
    "vgg19_bn": ("E", True, 143_678_248),
}


def _register(name: str, config: str, batch_norm: bool, reference_params: int) -> None:
    def build(
        *,
        in_channels: int,
        num_classes: int,
        width: int = 64,
        classifier_width: int = 4096,
        dropout: float = 0.5,
        padding: str = "zeros",
    ) -> VGG:
        return VGG(
            in_channels=in_channels,
            num_classes=num_classes,
            config=config,
            batch_norm=batch_norm,
            width=width,
            classifier_width=classifier_width,
            dropout=dropout,
            padding=padding,
        )

    norm = " with batch norm after each convolution" if batch_norm else ""
    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"VGG configuration {config} of Table 1{norm}: an image classifier."
    if batch_norm:
        source = "torchvision's count; batch norm is not in the paper"
    else:
        source = "the paper's network, equal to torchvision's count"
    register_model(
        family="cnn",
        tasks=("classification",),
        paper=PAPER,
        reference=dict(in_channels=3, num_classes=1000),
        reference_params=reference_params,
        reference_note=f"ImageNet configuration {config} (3x224x224, 1000 classes); {source}",
        small=dict(in_channels=3, num_classes=5, width=4, classifier_width=16),
        example_input=(2, 3, 32, 32),
        min_size=MIN_SIZE,
    )(build)


for variant, spec in VARIANTS.items():
    _register(variant, *spec)
