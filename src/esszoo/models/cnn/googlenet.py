"""GoogLeNet (Inception-v1): a 22-layer network of Inception modules.

Paper: Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke & Rabinovich (2015),
"Going deeper with convolutions", CVPR 2015, arXiv:1409.4842. Its idea (Section 4) is the
Inception module of Figure 2(b): four branches read the same input at once (a 1x1
convolution; 1x1 reduce then 3x3; 1x1 reduce then 5x5; 3x3 max pool then a 1x1
projection) and are concatenated along channels, the 1x1 reductions keeping the cost of the
larger kernels down. Table 1 stacks nine of them (3a-3b, 4a-4e, 5a-5b) between strided max
pools, after a plain convolutional stem, and ends with global average pooling and one linear
layer instead of AlexNet's fully connected stack.

How the code maps to the paper:

- ``TABLE_1`` holds the columns of Table 1 for every Inception module (#1x1, #3x3 reduce,
  #3x3, #5x5 reduce, #5x5, pool proj); ``Inception`` is Figure 2(b).
- ``GoogLeNet.__init__`` builds the rows of Table 1 top to bottom, with the two local
  response normalizations that Figure 3 shows in the stem (``LocalRespNorm``, size 5,
  alpha 1e-4, beta 0.75, k 1: the settings of the BVLC Caffe replication, which the paper
  does not list). Every convolution has a bias and a ReLU ("all the convolutions, including
  those inside the Inception modules, use rectified linear activation"). Every max pool
  rounds its output size up (``ceil_mode``, as Caffe's pooling does): that gives the
  112-56-28-14-7 grids of Table 1 at 224x224, where rounding down would give 55-27-13-6.
- ``AuxiliaryClassifier`` is Section 5's auxiliary classifier, attached to the outputs of
  4a and 4d when ``aux_heads=True``: 5x5 average pool with stride 3 (4x4 at 4a's 14x14),
  1x1 convolution with 128 filters and ReLU, a 1024-unit fully connected layer with ReLU,
  dropout 0.7, and a linear classifier. In training mode the model then returns
  ``(main_logits, aux1_logits, aux2_logits)``; in eval mode the main logits only, as the
  paper discards the auxiliary networks at inference. The paper adds their losses to the
  total with weight 0.3: ``AUX_LOSS_WEIGHT``, for the classification task to use.

Reference configuration: 3 input channels, 1000 classes, no auxiliary heads: 6,998,552
trainable parameters, counted here: the paper gives no total, and its "params" column of
Table 1 is approximate (2.7K for the first convolution, which holds 7*7*3*64 + 64 = 9,472).
The two auxiliary heads add 6,379,728.

``variant="torchvision"`` builds torchvision's ``googlenet`` instead (6,624,904 parameters;
13,004,888 with its auxiliary heads): batch norm (eps 0.001) after every convolution, whose
bias it then drops; no local response normalization; a 3x3 convolution where the paper's
third branch has 5x5 (torchvision keeps it to load weights ported from TensorFlow); a 2x2
last max pool; dropout 0.2; and auxiliary heads that pool adaptively to 4x4.

Departures from the paper, and why:

- The 7x7 average pool of Table 1 is an adaptive average pool to 1x1: identical on the
  paper's 7x7 grid, and it lets the network take the other grids of Earth data (73x144,
  190x228, ...). The smallest grid is 31x31 (``MIN_SIZE``; 15x15 for the torchvision
  variant, whose last pool is 2x2), where 5a and 5b work on 1x1: below it the pool after
  4e would return an empty grid.
- The auxiliary heads' fully connected layer reads a 4x4 grid, as in the paper. On grids
  other than 224x224 the 5x5/3 pool does not give 4x4, so its output (or, where the 4a grid
  is smaller than the 5x5 window, the 4a output itself) is averaged adaptively to 4x4; at
  224x224 that adaptive pool is the identity and the head is the paper's.
- The paper states no initialization (DistBelief); convolutions here get He et al. (2015)
  normal initialization with zero biases, so that the 22 layers without batch norm pass a
  signal at the start of training (PyTorch's default would shrink the mean square of the
  activations about sixfold per layer).
- ``width_multiplier`` scales every channel count (and the auxiliary heads' 128 filters and
  1024 units); 1.0, the default, is the paper. It exists for small networks on small data
  and for fast tests.
- ``padding="earth"`` makes every padded convolution and pool circular in longitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, set_padding
from esszoo.registry import Paper, register_model

# Section 5: "during training, their loss gets added to the total loss of the network with a
# discount weight (the losses of the auxiliary classifiers were weighted by 0.3)".
AUX_LOSS_WEIGHT = 0.3
AUX_DROPOUT = 0.7


@dataclass(frozen=True)
class InceptionWidths:
    """One row of Table 1: the filters of each branch of an Inception module."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int

    def scaled(self, width_multiplier: float) -> InceptionWidths:
        return InceptionWidths(*(_scale(n, width_multiplier) for n in vars(self).values()))


# Table 1, columns "#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj".
TABLE_1 = {
    "3a": InceptionWidths(64, 96, 128, 16, 32, 32),
    "3b": InceptionWidths(128, 128, 192, 32, 96, 64),
    "4a": InceptionWidths(192, 96, 208, 16, 48, 64),
    "4b": InceptionWidths(160, 112, 224, 24, 64, 64),
    "4c": InceptionWidths(128, 128, 256, 24, 64, 64),
    "4d": InceptionWidths(112, 144, 288, 32, 64, 64),
    "4e": InceptionWidths(256, 160, 320, 32, 128, 128),
    "5a": InceptionWidths(256, 160, 320, 32, 128, 128),
    "5b": InceptionWidths(384, 192, 384, 48, 128, 128),
}


@dataclass(frozen=True)
class Variant:
    """What distinguishes the paper's network from torchvision's."""

    batch_norm: bool  # batch norm after every convolution, which then has no bias
    local_response_norm: bool  # the two LocalRespNorm of Figure 3's stem
    third_branch_kernel: int  # the "#5x5" convolution's kernel
    last_pool_kernel: int  # the max pool between 4e and 5a
    dropout: float  # before the final linear layer
    aux_pool_window: bool  # aux heads start with the 5x5/3 average pool (else adaptive only)
    min_size: tuple[int, int]  # the smallest grid (H, W)


VARIANTS = {
    "paper": Variant(
        batch_norm=False,
        local_response_norm=True,
        third_branch_kernel=5,
        last_pool_kernel=3,
        dropout=0.4,
        aux_pool_window=True,
        min_size=(31, 31),
    ),
    "torchvision": Variant(
        batch_norm=True,
        local_response_norm=False,
        third_branch_kernel=3,
        last_pool_kernel=2,
        dropout=0.2,
        aux_pool_window=False,
        min_size=(15, 15),
    ),
}
MIN_SIZE = VARIANTS["paper"].min_size


def _scale(channels: int, width_multiplier: float) -> int:
    return max(1, round(channels * width_multiplier))


class ConvReLU(nn.Module):
    """A convolution and its ReLU ("all the convolutions ... use rectified linear activation");
    batch norm in between for the torchvision variant. Same-size padding throughout."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        batch_norm: bool = False,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=not batch_norm,
        )
        self.norm = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(x)))


class Inception(nn.Module):
    """Figure 2(b): the Inception module with dimension reductions."""

    def __init__(self, in_channels: int, widths: InceptionWidths, variant: Variant):
        super().__init__()
        batch_norm = variant.batch_norm
        self.branch1x1 = ConvReLU(in_channels, widths.n1x1, 1, batch_norm=batch_norm)
        self.branch3x3 = nn.Sequential(
            ConvReLU(in_channels, widths.n3x3_reduce, 1, batch_norm=batch_norm),
            ConvReLU(widths.n3x3_reduce, widths.n3x3, 3, batch_norm=batch_norm),
        )
        # The paper's 5x5 branch; its kernel is 3x3 in the torchvision variant.
        self.branch5x5 = nn.Sequential(
            ConvReLU(in_channels, widths.n5x5_reduce, 1, batch_norm=batch_norm),
            ConvReLU(
                widths.n5x5_reduce, widths.n5x5, variant.third_branch_kernel, batch_norm=batch_norm
            ),
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            ConvReLU(in_channels, widths.pool_proj, 1, batch_norm=batch_norm),
        )
        self.out_channels = widths.n1x1 + widths.n3x3 + widths.n5x5 + widths.pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, in_channels, H, W) -> (batch, out_channels, H, W): "filter concatenation"
        branches = (self.branch1x1, self.branch3x3, self.branch5x5, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


class AuxiliaryClassifier(nn.Module):
    """Section 5: the auxiliary classifier on top of Inception 4a or 4d."""

    def __init__(
        self, in_channels: int, num_classes: int, width_multiplier: float, variant: Variant
    ):
        super().__init__()
        filters, units = _scale(128, width_multiplier), _scale(1024, width_multiplier)
        self.pool_window = variant.aux_pool_window
        self.pool = nn.AvgPool2d(5, stride=3, ceil_mode=True)
        self.to_4x4 = nn.AdaptiveAvgPool2d(4)
        self.reduce = ConvReLU(in_channels, filters, 1, batch_norm=variant.batch_norm)
        self.fc = nn.Linear(filters * 4 * 4, units)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(AUX_DROPOUT)
        self.classifier = nn.Linear(units, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, 512 or 528, 14, 14) at 224x224
        if self.pool_window and min(x.shape[-2:]) >= 5:
            x = self.pool(x)  # -> (batch, C, 4, 4) at 224x224
        x = self.to_4x4(x)  # -> (batch, C, 4, 4) on any grid (the identity at 224x224)
        x = self.reduce(x).flatten(1)  # -> (batch, 128 * 4 * 4)
        x = self.dropout(self.relu(self.fc(x)))  # -> (batch, 1024)
        return self.classifier(x)  # -> (batch, num_classes)


class GoogLeNet(nn.Module):
    """Table 1, top to bottom."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        variant: str = "paper",
        aux_heads: bool = False,
        dropout: float | None = None,
        width_multiplier: float = 1.0,
        padding: str = "zeros",
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ModelError(
                f"googlenet has no variant '{variant}'", f"choose one of {tuple(VARIANTS)}"
            )
        if width_multiplier <= 0:
            raise ModelError(
                f"googlenet needs width_multiplier > 0, got {width_multiplier}",
                "use 1.0 for the paper's widths",
            )
        spec = VARIANTS[variant]
        self.min_size = spec.min_size
        batch_norm = spec.batch_norm

        def width(channels: int) -> int:
            return _scale(channels, width_multiplier)

        def inception(in_channels: int, row: str) -> Inception:
            return Inception(in_channels, TABLE_1[row].scaled(width_multiplier), spec)

        def lrn() -> nn.Module:
            # Figure 3's LocalRespNorm; absent from the torchvision variant.
            if spec.local_response_norm:
                return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            return nn.Identity()

        # Table 1 rows "convolution 7x7/2", "max pool 3x3/2", "convolution 3x3/1" (with its
        # "#3x3 reduce" 1x1 convolution of 64 filters), "max pool 3x3/2".
        self.stem = nn.Sequential(
            ConvReLU(in_channels, width(64), 7, stride=2, batch_norm=batch_norm),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            lrn(),
            ConvReLU(width(64), width(64), 1, batch_norm=batch_norm),
            ConvReLU(width(64), width(192), 3, batch_norm=batch_norm),
            lrn(),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        self.inception3a = inception(width(192), "3a")
        self.inception3b = inception(self.inception3a.out_channels, "3b")
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception(self.inception3b.out_channels, "4a")
        self.inception4b = inception(self.inception4a.out_channels, "4b")
        self.inception4c = inception(self.inception4b.out_channels, "4c")
        self.inception4d = inception(self.inception4c.out_channels, "4d")
        self.inception4e = inception(self.inception4d.out_channels, "4e")
        self.pool4 = nn.MaxPool2d(spec.last_pool_kernel, stride=2, ceil_mode=True)
        self.inception5a = inception(self.inception4e.out_channels, "5a")
        self.inception5b = inception(self.inception5a.out_channels, "5b")
        # "avg pool 7x7/1", adaptive so that any grid ends in one vector; "dropout (40%)";
        # "linear"; the softmax belongs to the loss.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout if dropout is None else dropout)
        self.classifier = nn.Linear(self.inception5b.out_channels, num_classes)

        self.aux1 = self.aux2 = None
        if aux_heads:
            self.aux1 = AuxiliaryClassifier(
                self.inception4a.out_channels, num_classes, width_multiplier, spec
            )
            self.aux2 = AuxiliaryClassifier(
                self.inception4d.out_channels, num_classes, width_multiplier, spec
            )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        set_padding(self, padding)

    def forward(
        self, x: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_grid(x, self.min_size, "googlenet")
        # x: (batch, in_channels, 224, 224) on the paper's grid; channels at width 1.0
        x = self.stem(x)  # -> (batch, 192, 28, 28)
        x = self.inception3b(self.inception3a(x))  # -> (batch, 480, 28, 28)
        x = self.pool3(x)  # -> (batch, 480, 14, 14)
        after_4a = self.inception4a(x)  # -> (batch, 512, 14, 14)
        after_4d = self.inception4d(self.inception4c(self.inception4b(after_4a)))  # -> 528
        x = self.inception4e(after_4d)  # -> (batch, 832, 14, 14)
        x = self.pool4(x)  # -> (batch, 832, 7, 7)
        x = self.inception5b(self.inception5a(x))  # -> (batch, 1024, 7, 7)
        x = self.avgpool(x).flatten(1)  # -> (batch, 1024)
        logits = self.classifier(self.dropout(x))  # -> (batch, num_classes)
        if self.training and self.aux1 is not None and self.aux2 is not None:
            return logits, self.aux1(after_4a), self.aux2(after_4d)
        return logits


@register_model(
    family="cnn",
    tasks=("classification",),
    paper=Paper(
        authors="Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke & Rabinovich",
        year=2015,
        title="Going deeper with convolutions",
        venue="CVPR 2015",
        arxiv="1409.4842",
        doi="10.1109/CVPR.2015.7298594",
    ),
    reference=dict(in_channels=3, num_classes=1000),
    reference_params=6_998_552,
    reference_note="the paper's network (Table 1) without auxiliary heads; its two auxiliary "
    "heads add 6,379,728 (13,378,280 in all); variant='torchvision' (batch norm, 3x3 in "
    "place of 5x5, no LRN) has torchvision's 6,624,904 (13,004,888 with its auxiliary heads)",
    small=dict(in_channels=3, num_classes=5, aux_heads=True, width_multiplier=0.25),
    example_input=(2, 3, *MIN_SIZE),
    min_size=MIN_SIZE,
)
def googlenet(
    *,
    in_channels: int,
    num_classes: int,
    variant: str = "paper",
    aux_heads: bool = False,
    dropout: float | None = None,
    width_multiplier: float = 1.0,
    padding: str = "zeros",
) -> GoogLeNet:
    """GoogLeNet (Inception-v1): nine Inception modules, optional auxiliary classifiers."""
    return GoogLeNet(
        in_channels=in_channels,
        num_classes=num_classes,
        variant=variant,
        aux_heads=aux_heads,
        dropout=dropout,
        width_multiplier=width_multiplier,
        padding=padding,
    )
