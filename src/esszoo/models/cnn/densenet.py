"""DenseNet: every layer reads the feature maps of all layers before it in its block.

Paper: Huang, Liu, van der Maaten & Weinberger (2017), "Densely Connected Convolutional
Networks", CVPR (arXiv:1608.06993). Where a ResNet adds a layer's output to its input, a
dense block concatenates it: layer l sees [x_0, x_1, ..., x_{l-1}] and adds k new maps
(the growth rate), so features are reused rather than relearned and each layer stays thin.

Paper to code (the ImageNet networks of Table 1, DenseNet-BC):

- Eq. (2), x_l = H_l([x_0, x_1, ..., x_{l-1}]): ``DenseLayer.forward`` concatenates the
  list of earlier maps; ``DenseBlock.forward`` grows that list and returns it concatenated.
  A block of L layers on m maps returns m + L * k.
- H_l, "Composite function" (Sec. 3): batch norm, ReLU, convolution, in that order
  (pre-activation), with the bottleneck of DenseNet-B: BN-ReLU-Conv(1x1, 4k)-BN-ReLU-
  Conv(3x3, k) (``bn_size`` = 4).
- "Pooling layers" and "Compression": ``Transition``, BN-ReLU-Conv(1x1) to floor(theta m)
  maps with theta = 0.5 (the C of DenseNet-BC), then a 2x2 average pool of stride 2.
- Table 1: a 7x7 convolution of stride 2 with 2k = 64 filters and a 3x3 max pool of
  stride 2, four dense blocks of (6, 12, 24, 16), (6, 12, 32, 32) or (6, 12, 48, 32)
  layers with transitions between them, then global average pool and a 1000-way fc. The
  depth in the name counts the weighted layers: 2 per dense layer, the first convolution,
  the three transitions and the fc (``DenseNet.depth``).

Knobs whose defaults are the paper's: ``growth_rate`` (k = 32), ``num_init_features``
(2k = 64 filters of the first convolution), ``bn_size`` (the bottleneck's 1x1 convolution
gives ``bn_size * k`` maps; 4 in the paper).

For dense prediction, ``stages(x)`` returns the stem output and the output of each dense
block, the transition that leads into a block counted with it (strides 4, 4, 8, 16, 32, as
a ResNet's; the last one after the final batch norm and ReLU). Concatenation follows
torchvision's default path: each layer concatenates the list of earlier maps on entry and
the block once at its end. Autograd keeps each layer's concatenation for the backward
pass, so training memory grows with the square of a block's length; torchvision's
``memory_efficient`` option (Pleiss et al. 2017, recomputing them) is not built here.

Grids. The three transitions average 2x2 windows without padding, so the stride-4 grid
after the stem needs at least 8 points per side: the smallest input is 29x29 (29 -> 15 ->
8 -> 4 -> 2 -> 1), with either padding.

Departures: the global average pool is adaptive (Table 1's is 7x7 on 224x224 inputs), so
any grid of at least 29x29 works; no dropout (the paper uses it only on CIFAR without data
augmentation, not on ImageNet); weights are initialized as torchvision's (Kaiming normal
for convolutions, unit scale and zero shift for batch norm, zero bias for the classifier).
Modules carry torchvision's names (features.denseblock1.denselayer1.conv1, ...,
classifier).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.layers import check_grid, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (29, 29)
COMPRESSION = 0.5  # theta of DenseNet-BC


class DenseLayer(nn.Module):
    """H_l of DenseNet-B: BN-ReLU-Conv(1x1, bn_size * k) then BN-ReLU-Conv(3x3, k)."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)  # [x_0, ..., x_{l-1}] of Eq. (2): (batch, in_channels, H, W)
        x = self.conv1(self.relu1(self.norm1(x)))  # (batch, bn_size * k, H, W)
        return self.conv2(self.relu2(self.norm2(x)))  # (batch, k, H, W)


class DenseBlock(nn.ModuleDict):
    """`num_layers` dense layers, each fed the block input and every earlier layer's maps."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        for i in range(num_layers):
            self[f"denselayer{i + 1}"] = DenseLayer(
                in_channels + i * growth_rate, growth_rate, bn_size
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)  # (batch, in_channels + num_layers * k, H, W)


class Transition(nn.Sequential):
    """Between blocks: BN-ReLU-Conv(1x1) compressing to `out_channels`, 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """Table 1's DenseNet-BC for any four block sizes."""

    def __init__(
        self,
        *,
        block_config: tuple[int, int, int, int],
        in_channels: int,
        num_classes: int,
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
        padding: str = "zeros",
    ):
        super().__init__()
        self.depth = 2 * sum(block_config) + 5
        self.name = f"densenet{self.depth}"
        self.min_size = MIN_SIZE

        # Table 1, "Convolution" and "Pooling": 7x7 conv, stride 2; 3x3 max pool, stride 2
        self.features = nn.Sequential()
        self.features.conv0 = nn.Conv2d(
            in_channels, num_init_features, kernel_size=7, stride=2, padding=3, bias=False
        )
        self.features.norm0 = nn.BatchNorm2d(num_init_features)
        self.features.relu0 = nn.ReLU(inplace=True)
        self.features.pool0 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        channels = num_init_features
        self.feature_channels = [channels]
        self.feature_strides = [4]  # the stem: conv0 and pool0, stride 2 each
        for i, num_layers in enumerate(block_config, start=1):
            if i > 1:  # a transition compresses to theta m maps and halves the grid
                compressed = int(channels * COMPRESSION)
                self.features.add_module(f"transition{i - 1}", Transition(channels, compressed))
                channels = compressed
            block = DenseBlock(num_layers, channels, growth_rate, bn_size)
            self.features.add_module(f"denseblock{i}", block)
            channels += num_layers * growth_rate
            self.feature_channels.append(channels)
            self.feature_strides.append(4 * 2 ** (i - 1))
        self.features.norm5 = nn.BatchNorm2d(channels)

        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        set_padding(self, padding)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem output and each dense block's output, for dense-prediction heads."""
        check_grid(x, self.min_size, self.name)
        f = self.features
        # x: (batch, in_channels, H, W); c_i = feature_channels[i]
        # sizes round up in the stem and down in the transitions
        stem = f.pool0(f.relu0(f.norm0(f.conv0(x))))  # (batch, c_0, H/4, W/4)
        block1 = f.denseblock1(stem)  # (batch, c_1, H/4, W/4)
        block2 = f.denseblock2(f.transition1(block1))  # (batch, c_2, H/8, W/8)
        block3 = f.denseblock3(f.transition2(block2))  # (batch, c_3, H/16, W/16)
        block4 = F.relu(f.norm5(f.denseblock4(f.transition3(block3))))  # (batch, c_4, H/32, W/32)
        return [stem, block1, block2, block3, block4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(x)[-1]  # (batch, num_features, H/32, W/32)
        pooled = torch.flatten(F.adaptive_avg_pool2d(features, 1), 1)  # (batch, num_features)
        return self.classifier(pooled)  # (batch, num_classes)


_CARD = dict(
    family="cnn",
    tasks=("classification",),
    paper=Paper(
        authors="Huang, Liu, van der Maaten & Weinberger",
        year=2017,
        title="Densely Connected Convolutional Networks",
        venue="CVPR",
        arxiv="1608.06993",
    ),
    reference=dict(in_channels=3, num_classes=1000),
    reference_note="ImageNet DenseNet-BC of Table 1 (k = 32); equal to torchvision's count",
    example_input=(2, 3, 32, 32),
    min_size=MIN_SIZE,
)
_SMALL = dict(in_channels=3, num_classes=5, growth_rate=4, num_init_features=8)


# Table 1: (name, layers per dense block, reference parameter count at 3 x 224 x 224, 1000)
DEPTHS = (
    ("densenet121", (6, 12, 24, 16), 7_978_856),
    ("densenet169", (6, 12, 32, 32), 14_149_480),
    ("densenet201", (6, 12, 48, 32), 20_013_928),
)


def _builder(name: str, block_config: tuple[int, ...]) -> Callable[..., DenseNet]:
    def build(
        *,
        in_channels: int,
        num_classes: int,
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
        padding: str = "zeros",
    ) -> DenseNet:
        return DenseNet(
            block_config=block_config,
            in_channels=in_channels,
            num_classes=num_classes,
            growth_rate=growth_rate,
            num_init_features=num_init_features,
            bn_size=bn_size,
            padding=padding,
        )

    build.__name__ = name
    build.__doc__ = (
        f"DenseNet-{name[8:]}: DenseNet-BC with blocks of {block_config} layers (Table 1)."
    )
    return build


for _name, _blocks, _params in DEPTHS:
    register_model(**_CARD, reference_params=_params, small=_SMALL)(_builder(_name, _blocks))
