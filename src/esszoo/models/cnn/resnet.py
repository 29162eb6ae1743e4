"""ResNet: deep residual learning, and the backbone of the zoo's dense-prediction models.

Paper: He, Zhang, Ren & Sun (2016), "Deep Residual Learning for Image Recognition", CVPR
(arXiv:1512.03385). Each block learns a residual F(x) and adds it to its input, so a very
deep stack can fall back to the identity instead of degrading as plain stacks do.

Paper to code:

- Eq. (1), y = F(x, {W_i}) + x, with the ReLU after the addition (Fig. 2): the
  ``out + identity`` line of ``BasicBlock.forward`` and ``Bottleneck.forward``.
- Eq. (2), y = F(x, {W_i}) + W_s x, where the dimensions change: ``shortcut``, a strided
  1x1 convolution and batch norm. This is option B of Sec. 3.3 (projections where the
  dimensions increase, identities elsewhere), the paper's choice for its 50-, 101- and
  152-layer nets (Sec. 4.1) and torchvision's for all five.
- Fig. 5: ``BasicBlock`` (two 3x3 convolutions) for the 18- and 34-layer nets;
  ``Bottleneck`` (1x1 reduce, 3x3, 1x1 restore to 4x the width) for 50, 101 and 152.
- Table 1: ``conv1`` (7x7, 64, stride 2) and a 3x3 max pool of stride 2, then conv2_x ..
  conv5_x as ``layer1`` .. ``layer4`` of (2, 2, 2, 2), (3, 4, 6, 3), (3, 4, 6, 3),
  (3, 4, 23, 3) and (3, 8, 36, 3) blocks with 64, 128, 256, 512 filters, down-sampling by
  stride 2 in conv3_1, conv4_1 and conv5_1; global average pool, 1000-way fc. The depth in
  the name counts the weighted layers: 2 per basic block or 3 per bottleneck, plus conv1
  and fc (``ResNet.depth``).
- Sec. 3.4: batch norm right after each convolution, before the activation; weights
  initialized as in He et al. (2015), here Kaiming normal with fan-out, as torchvision.

Where the stride sits in the bottleneck. The authors' released (Caffe) networks, "v1",
stride the first 1x1 convolution of conv3_1, conv4_1 and conv5_1; torchvision's "v1.5"
strides the 3x3 convolution instead. Both have the same parameter count. This file builds
v1.5: a strided 1x1 convolution reads only one input position in four and discards the
rest, while a strided 3x3 sees them all; v1.5 is the more accurate network (by about half a
point of ImageNet top-1 in NVIDIA's measurements) and the one most published backbones use.
Modules carry torchvision's names (conv1, bn1, layer1.0.downsample.0, ..., fc).

Dense prediction. ``replace_stride_with_dilation`` (as torchvision) turns the stride 2 of
layer2, layer3 or layer4 into a dilation of the following 3x3 convolutions (Chen et al.
2017, DeepLabv3), keeping the receptive field and the weights while the output stride drops
from 32 to 16 with ``(False, False, True)`` or to 8 with ``(False, True, True)``; the
first block of a dilated stage keeps the previous dilation, as torchvision. ``stages(x)``
returns the stem output and the outputs of layer1 .. layer4 (strides 4, 4, 8, 16, 32 by
default; ``feature_channels`` and ``feature_strides`` name them), for FCN, UNet and DeepLab
heads.

Knobs whose defaults are the paper's: ``width`` (64) is the number of filters of conv1 and
of the first stage; each later stage doubles it (Table 1). ``zero_init_residual`` (off in
the paper; Goyal et al. 2017) starts each residual branch at zero by zeroing its last
batch-norm scale, so every block begins as the identity.

Grids. Global average pooling takes any grid; a single point (1x1) goes through every
layer, with zero or earth padding (which wraps around as often as a narrow grid needs).

Missing data (``partial_conv``). With ``partial_conv=True`` every convolution is a partial
convolution (Liu et al. 2018, "Image Inpainting for Irregular Holes Using Partial
Convolutions", arXiv:1804.07723, see `esszoo.layers.partial_conv`) and every batch norm a
masked one, so the network reads fields with missing values: ``forward(x, mask)`` and
``stages(x, mask)`` take a validity mask (B, 1 or C, H, W), 1 valid, 0 missing, and the
values under the holes do not change the output. The mask travels with the features:

- stem: conv1 updates the mask (valid where its window saw a valid point); the features are
  zeroed where it is 0 (the batch norm shifted them) and the max pool then pools features
  and mask alike, so it picks the largest valid value and a pooled point is valid if one of
  its window's points is;
- blocks: each partial convolution updates the mask in turn; the downsample shortcut is a
  strided 1x1 partial convolution whose mask is the input mask sampled at the stride. The
  residual sum takes the branch's mask, which is the union of the two: every window of the
  branch holds its centre point, the very point the shortcut reads, so whatever is valid on
  the shortcut is valid on the branch. Where the branch is valid and the shortcut is not,
  the shortcut adds zero (block outputs and shortcuts are zeroed where their masks are 0);
- head: the global average runs over the valid points of layer4 only.

The parameters keep their names, so a plain checkpoint loads into the mask-aware net and
back. Without a mask every point is valid, and the switch is Liu et al.'s partial
convolution based padding (arXiv:1811.11718): windows over the grid's edge are rescaled as
windows over holes, so even with a full mask the output differs from the plain net's near
the edges (and so, through the deeper layers, everywhere). ``masked_stages(x, mask)``
returns the masks with the features, for mask-aware heads. The default (off) is the plain
network, unchanged.

Departures: the global average pool is adaptive (Table 1's is 7x7 on 224x224 inputs), so
any grid size works. The paper's first ResNet-18/34 comparison (Table 2) used option A,
parameter-free zero-padded shortcuts; these are option B, as its Table 3 "ResNet-34 B" and
the reference counts. Basic blocks accept dilation, which torchvision's refuse (both 3x3
convolutions of a block take the block's dilation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import MaskedBatchNorm2d, PartialConv2d, check_grid, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)
STEM_STRIDE = 4  # conv1 (stride 2) and the max pool (stride 2)


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1, partial: bool = False
) -> nn.Conv2d:
    """A 3x3 convolution that keeps the grid (up to its stride), without bias: BN follows."""
    return (PartialConv2d if partial else nn.Conv2d)(
        in_channels,
        out_channels,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        bias=False,
    )


def conv1x1(
    in_channels: int, out_channels: int, stride: int = 1, partial: bool = False
) -> nn.Conv2d:
    conv = PartialConv2d if partial else nn.Conv2d
    return conv(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def batch_norm(channels: int, partial: bool = False) -> nn.BatchNorm2d:
    """Batch norm; with partial convolutions, statistics of the valid points only."""
    return (MaskedBatchNorm2d if partial else nn.BatchNorm2d)(channels)


def shortcut(
    in_channels: int, out_channels: int, stride: int, partial: bool = False
) -> nn.Sequential | None:
    """Eq. (2)'s projection W_s where the block changes the grid or the width, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        conv1x1(in_channels, out_channels, stride, partial), batch_norm(out_channels, partial)
    )


def masked_shortcut(
    downsample: nn.Sequential | None, x: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The shortcut of a partial-convolution block, zero where its mask is 0."""
    if downsample is None:
        return x  # already zero where the mask is
    conv, norm = downsample
    identity, identity_mask = conv(x, mask)  # the mask sampled at the stride
    return norm(identity, identity_mask) * identity_mask


class BasicBlock(nn.Module):
    """Fig. 5 (left): two 3x3 convolutions around a shortcut, for ResNet-18 and -34."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        partial: bool = False,
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride, dilation, partial)
        self.bn1 = batch_norm(planes, partial)
        self.conv2 = conv3x3(planes, planes, dilation=dilation, partial=partial)
        self.bn2 = batch_norm(planes, partial)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, planes, stride, partial)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels, H, W) -> (batch, planes, H/stride, W/stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)  # Eq. (1), ReLU after the addition (Fig. 2)

    def masked_forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with partial convolutions: (x, mask) -> (x', mask'), x' 0 where mask' is."""
        identity = masked_shortcut(self.downsample, x, mask)
        out, mask = self.conv1(x, mask)
        out = self.relu(self.bn1(out, mask))
        out, mask = self.conv2(out, mask)
        out = self.bn2(out, mask)
        # the branch's mask holds the shortcut's: it is the mask of the sum
        return self.relu(out + identity) * mask, mask


class Bottleneck(nn.Module):
    """Fig. 5 (right): 1x1 reduce, 3x3 (strided: v1.5), 1x1 restore to 4x, for ResNet-50+."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        partial: bool = False,
    ):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = conv1x1(in_channels, planes, partial=partial)
        self.bn1 = batch_norm(planes, partial)
        self.conv2 = conv3x3(planes, planes, stride, dilation, partial)
        self.bn2 = batch_norm(planes, partial)
        self.conv3 = conv1x1(planes, out_channels, partial=partial)
        self.bn3 = batch_norm(out_channels, partial)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut(in_channels, out_channels, stride, partial)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, in_channels, H, W) -> (batch, 4 * planes, H/stride, W/stride)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))  # (batch, planes, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (batch, planes, H/stride, W/stride)
        out = self.bn3(self.conv3(out))  # (batch, 4 * planes, H/stride, W/stride)
        return self.relu(out + identity)  # Eq. (1)

    def masked_forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with partial convolutions: (x, mask) -> (x', mask'), x' 0 where mask' is."""
        identity = masked_shortcut(self.downsample, x, mask)
        out, mask = self.conv1(x, mask)
        out = self.relu(self.bn1(out, mask))
        out, mask = self.conv2(out, mask)  # the strided 3x3 samples the mask at the stride
        out = self.relu(self.bn2(out, mask))
        out, mask = self.conv3(out, mask)
        out = self.bn3(out, mask)
        # the branch's mask holds the shortcut's: it is the mask of the sum
        return self.relu(out + identity) * mask, mask


class ResNet(nn.Module):
    """Table 1's network for any block type and number of blocks per stage.

    ``partial_conv=True`` builds it of partial convolutions and masked batch norms (Liu et
    al. 2018) for inputs with missing data: ``forward(x, mask)`` and ``stages(x, mask)``
    then take a validity mask (B, 1 or C, H, W), 1 valid, 0 missing (all valid if omitted),
    and the values under its holes do not change the output. Same parameter names.
    """

    def __init__(
        self,
        *,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        in_channels: int,
        num_classes: int,
        width: int = 64,
        replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, False),
        zero_init_residual: bool = False,
        partial_conv: bool = False,
        padding: str = "zeros",
    ):
        super().__init__()
        dilate = tuple(bool(d) for d in replace_stride_with_dilation)
        if len(dilate) != 3:
            raise ModelError(
                f"replace_stride_with_dilation needs 3 values (layer2, layer3, layer4), "
                f"got {replace_stride_with_dilation}",
                "use (False, False, True) for output stride 16, (False, True, True) for 8",
            )
        self.depth = (2 if block is BasicBlock else 3) * sum(layers) + 2
        self.name = f"resnet{self.depth}"
        self.block = block
        self.in_channels = in_channels
        self.partial_conv = partial_conv

        # conv1 (Table 1): 7x7, `width` filters, stride 2; conv2_x opens with a 3x3 max pool
        conv = PartialConv2d if partial_conv else nn.Conv2d
        self.conv1 = conv(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = batch_norm(width, partial_conv)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.feature_channels = [width]
        self.feature_strides = [STEM_STRIDE]
        self.dilations = [1]
        self.layer1 = self._make_stage(width, layers[0], stride=1, dilate=False)
        self.layer2 = self._make_stage(2 * width, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_stage(4 * width, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_stage(8 * width, layers[3], stride=2, dilate=dilate[2])

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = self.feature_channels[-1]
        self.fc = nn.Linear(self.num_features, num_classes)

        self.min_size = MIN_SIZE
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    module.zero_init_last()
        set_padding(self, padding)

    def _make_stage(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        """conv{2..5}_x: `blocks` blocks, the first one striding (or, dilated, not)."""
        in_channels, previous_dilation = self.feature_channels[-1], self.dilations[-1]
        dilation = previous_dilation * stride if dilate else previous_dilation
        stride = 1 if dilate else stride
        out_channels = planes * self.block.expansion
        partial = self.partial_conv
        stage = [self.block(in_channels, planes, stride, previous_dilation, partial)]
        stage += [self.block(out_channels, planes, 1, dilation, partial) for _ in range(blocks - 1)]
        self.feature_channels.append(out_channels)
        self.feature_strides.append(self.feature_strides[-1] * stride)
        self.dilations.append(dilation)
        return nn.Sequential(*stage)

    def stages(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The stem output and the outputs of layer1 .. layer4, for dense-prediction heads.

        With ``partial_conv``, the features of `x` with validity `mask`, zero where their
        own masks (`masked_stages`) are 0.
        """
        if self.partial_conv:
            return self.masked_stages(x, mask)[0]
        if mask is not None:
            raise ModelError(
                f"this {self.name} takes no mask", "build it with partial_conv=True to use masks"
            )
        check_grid(x, self.min_size, self.name)
        # x: (batch, in_channels, H, W); sizes below round up, strides are the default's
        stem = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (batch, width, H/4, W/4)
        c2 = self.layer1(stem)  # (batch, width * expansion, H/4, W/4)
        c3 = self.layer2(c2)  # (batch, 2 * width * expansion, H/8, W/8)
        c4 = self.layer3(c3)  # (batch, 4 * width * expansion, H/16, W/16)
        c5 = self.layer4(c4)  # (batch, 8 * width * expansion, H/32, W/32)
        return [stem, c2, c3, c4, c5]

    def masked_stages(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``stages`` of the partial-convolution net, and the masks (batch, 1, h, w) of each."""
        if not self.partial_conv:
            raise ModelError(
                f"masked_stages needs a mask-aware {self.name}", "build it with partial_conv=True"
            )
        check_grid(x, self.min_size, self.name)
        if mask is None:  # every point valid: partial convolutions as padding only
            mask = torch.ones_like(x[:, :1])
        elif (
            mask.dim() != 4
            or mask.shape[1] not in (1, self.in_channels)
            or (mask.shape[0] != x.shape[0] or mask.shape[-2:] != x.shape[-2:])
        ):
            raise ModelError(
                f"{self.name}: the mask has shape {tuple(mask.shape)}, x has {tuple(x.shape)}",
                f"give a mask of shape (B, 1, H, W) or (B, {self.in_channels}, H, W), "
                "1 where x is valid, 0 where it is missing",
            )
        x, mask = self.conv1(x, mask.to(x.dtype))  # (batch, width, H/2, W/2), (batch, 1, ...)
        # zero the missing points, so that the max pool picks the largest valid value
        x = self.relu(self.bn1(x, mask)) * mask
        x, mask = self.maxpool(x), self.maxpool(mask)  # (batch, width, H/4, W/4)
        features, masks = [x], [mask]
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x, mask = block.masked_forward(x, mask)
            features.append(x)  # strides 4, 8, 16, 32, as in `stages`
            masks.append(mask)
        return features, masks

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.partial_conv:
            features, masks = self.masked_stages(x, mask)
            # the global average over the valid points of layer4 (features are 0 elsewhere)
            valid = masks[-1].sum(dim=(2, 3)).clamp(min=1.0)  # (batch, 1)
            return self.fc(features[-1].sum(dim=(2, 3)) / valid)  # (batch, num_classes)
        features = self.stages(x, mask)[-1]  # (batch, num_features, H/32, W/32)
        pooled = torch.flatten(self.avgpool(features), 1)  # (batch, num_features)
        return self.fc(pooled)  # (batch, num_classes)


_CARD = dict(
    family="cnn",
    tasks=("classification",),
    paper=Paper(
        authors="He, Zhang, Ren & Sun",
        year=2016,
        title="Deep Residual Learning for Image Recognition",
        venue="CVPR",
        arxiv="1512.03385",
    ),
    reference=dict(in_channels=3, num_classes=1000),
    reference_note="ImageNet configuration of Table 1 at 224x224; equal to torchvision's "
    "count (v1.5 bottleneck, same count as the paper's v1)",
    example_input=(2, 3, 32, 32),
    min_size=MIN_SIZE,
)
_SMALL = dict(in_channels=3, num_classes=5, width=8)
_NO_DILATION = (False, False, False)


# Table 1: (name, block, blocks per stage, reference parameter count at 3 x 224 x 224, 1000)
DEPTHS = (
    ("resnet18", BasicBlock, (2, 2, 2, 2), 11_689_512),
    ("resnet34", BasicBlock, (3, 4, 6, 3), 21_797_672),
    ("resnet50", Bottleneck, (3, 4, 6, 3), 25_557_032),
    ("resnet101", Bottleneck, (3, 4, 23, 3), 44_549_160),
    ("resnet152", Bottleneck, (3, 8, 36, 3), 60_192_808),
)


def builder(name: str) -> Callable[..., ResNet]:
    """The builder of a ResNet depth, e.g. builder("resnet50"), for use as a backbone."""
    _, block, layers, _ = next(depth for depth in DEPTHS if depth[0] == name)
    return _builder(name, block, layers)


def _builder(name: str, block: type[nn.Module], layers: tuple[int, ...]) -> Callable[..., ResNet]:
    def build(
        *,
        in_channels: int,
        num_classes: int,
        width: int = 64,
        replace_stride_with_dilation: tuple[bool, bool, bool] = _NO_DILATION,
        zero_init_residual: bool = False,
        partial_conv: bool = False,
        padding: str = "zeros",
    ) -> ResNet:
        return ResNet(
            block=block,
            layers=layers,
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            replace_stride_with_dilation=replace_stride_with_dilation,
            zero_init_residual=zero_init_residual,
            partial_conv=partial_conv,
            padding=padding,
        )

    kind = "basic blocks" if block is BasicBlock else "bottlenecks"
    build.__name__ = name
    build.__doc__ = f"ResNet-{name[6:]}: residual net of {kind}, {layers} per stage (Table 1)."
    return build


for _name, _block, _layers, _params in DEPTHS:
    register_model(**_CARD, reference_params=_params, small=_SMALL)(
        _builder(_name, _block, _layers)
    )
