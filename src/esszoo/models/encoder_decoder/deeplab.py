"""DeepLabv3+: atrous spatial pyramid pooling and a light decoder, on a dilated ResNet.

Paper: Chen, Zhu, Papandreou, Schroff & Adam (2018), "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV, arXiv:1802.02611. DeepLabv3 (Chen et al.
2017, arXiv:1706.05587) keeps the backbone's last maps at output stride 16 or 8 by trading
strides for atrous (dilated) convolutions and reads them at several scales at once with
ASPP; its scores are then upsampled 8x or 16x in one step, which blurs object boundaries.
DeepLabv3+ adds a decoder that brings back the stride-4 features of the backbone's first
stage. Figure 2 is the map of this file.

Paper to code (``DeepLabV3Plus``):

- Section 3.1, encoder: the backbone's stride is traded for dilation so its output stride is
  16 (layer4 dilated) or 8 (layer3 and layer4), ``output_stride``; the ResNet's
  ``replace_stride_with_dilation`` does it, keeping the weights, so a net trained at 16 can
  be evaluated at 8 (Section 4.2, Table 3).
- Section 3.1 and Figure 2, ASPP (``ASPP``): in parallel on the backbone's output, a 1x1
  convolution, three 3x3 atrous convolutions of rates (6, 12, 18) at output stride 16,
  doubled to (12, 24, 36) at 8, and image-level features (global average pooling, 1x1
  convolution, bilinear upsampling to the map: ``ImagePooling``), each of 256 filters with
  batch norm and ReLU; concatenated and projected by a 1x1 convolution to 256 with batch
  norm and ReLU. The reference implementation (tensorflow/models, research/deeplab) follows
  the projection with dropout of keep probability 0.9: ``PLUS_DROPOUT``.
- Section 3.1 and Figure 2, decoder (``Decoder``): the encoder's features are upsampled
  bilinearly by 4 to the grid of the stride-4 low-level features (layer1 here; "Conv2
  before striding" in Section 4.1, Table 2), which a 1x1 convolution reduces to 48
  channels (Table 1) so they do not outweigh the encoder's 256; both are concatenated and
  refined by two 3x3 convolutions of 256 (Table 2), a 1x1 convolution gives the class
  scores, upsampled bilinearly by 4 to the input grid.
- Section 3.1 and Figure 3, atrous separable convolution (``atrous_conv``): a depthwise
  3x3 convolution with the atrous rate, then a pointwise 1x1 convolution, each followed by
  batch norm and ReLU (the reference's ``split_separable_conv2d``), in place of the 3x3
  convolutions of ASPP and decoder when ``separable=True``. The 1x1 branches stay
  ordinary convolutions.

With a ResNet backbone. The paper applies separable convolutions to ASPP and decoder with
its modified Xception backbone (Section 4.3, Table 5, "SC"), its best model; its ResNet-101
experiments (Section 4.2, Table 3) use plain 3x3 convolutions. Here ``separable=True`` is
the default on the ResNet backbones too (the reference implementation's flags do not depend
on the backbone); ``separable=False`` gives the plain convolutions of Table 3. The backbone
itself is always the zoo's ResNet with ordinary convolutions.

The ``v3`` variant (``DeepLabV3``) is torchvision's ``deeplabv3_resnet50`` design, kept for
its exact reference count: a ResNet dilated to output stride 8, a head ``DeepLabHead``
(ASPP of rates 12, 24, 36 with 256 filters, its projection followed by dropout 0.5, then a
3x3 convolution of 256 without bias, batch norm, ReLU and a 1x1 convolution to the
classes), no decoder, and the scores resized bilinearly to the input grid. ``aux=True``
adds torchvision's ``FCNHead`` on layer3 (1024 -> 256 -> classes), whose scores are
returned as ``(main, aux)`` in training mode only, for an auxiliary loss. Module names
follow torchvision's (``classifier.0.convs.1.0``, ``aux_classifier.4``). ``separable``
applies here too but is off by default.

Grids. Every backbone map has ceil(H/s) x ceil(W/s) points at stride s, down to a single
point; ASPP keeps its grid at any rate (each atrous convolution is padded by its rate), and
the image-level branch is a global mean, so any grid of at least 1x1 works (``MIN_SIZE``).
v3+ upsamples by a whole factor over a ring of one point and crops from the origin
(``fcn.upsample_to_grid``): the ASPP output by output_stride / 4 to the low-level grid,
the scores by 4 to the input grid, so the output is (B, out_channels, H, W) exactly for any
H and W. The image-level branch averages grid points, not area: on a latitude-longitude
grid the polar rows weigh as much as the equatorial ones, as in the paper's images.

Batch size. The image-level branch batch-normalizes a single value per image and channel,
which training mode cannot do for a batch of one; the forward says so with a ``ModelError``
before the backbone runs (train with batches of 2 or more, or freeze that batch norm with
``.eval()``). Eval mode takes batches of one.

Edges. With ``padding="earth"`` every padded convolution wraps around in longitude, and the
v3+ upsamplings wrap too: the ring added before each interpolation is the wrapped column on
either side, so the dateline is no edge; on a grid whose width is a multiple of the output
stride, rolling the input by output_stride columns rolls the output by as many. The v3
variant resizes as torchvision does (``F.interpolate`` to the input size), whose edge
columns are clamped, not wrapped; only its convolutions wrap.

Departures:

- Backbone: the paper's best models use its modified Xception (Section 3.2, Figure 4:
  deeper, every max pool replaced by a strided separable convolution, batch norm and ReLU
  after each depthwise convolution); here the backbone is any zoo ResNet (18 to 152),
  as the paper's own ResNet-101 experiments (Section 4.2). ResNet-18 and -34 end with
  512 channels instead of 2048 and their layer1 has 64 instead of 256.
- No pretrained weights: the paper starts from ImageNet (and JFT) checkpoints. The backbone
  starts as the zoo's ResNet (He initialization); the heads keep PyTorch's default
  initialization, as torchvision's, not the reference's truncated normals.
- Upsampling: the reference resizes with ``align_corners=True`` to grids computed from the
  crop size; here a factor-4 (and output_stride / 4) interpolation with half-point centres
  and a ring, as ``fcn``. ResNet's strided convolutions centre a coarse point on an input
  point, not on the middle of its block; the half-point shift this leaves is not corrected,
  as torchvision does not correct it either.
- Multi-scale and flipped inputs at evaluation (Section 4, "MS", "Flip") are a matter of
  the caller, not of the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError, choices_hint
from esszoo.layers import check_grid, set_padding
from esszoo.models.cnn import resnet
from esszoo.models.cnn.fcn import FCNHead, upsample_to_grid
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)  # padded strided convolutions keep one point; ASPP keeps any grid
VARIANTS = ("v3+", "v3")
BACKBONES = tuple(name for name, *_ in resnet.DEPTHS)
# Section 3.1: the stages whose stride becomes dilation, by output stride
DILATIONS = {16: (False, False, True), 8: (False, True, True)}
RATES_AT_16 = (6, 12, 18)  # ASPP's atrous rates at output stride 16, doubled at 8
LOW_LEVEL_STRIDE = 4  # layer1, "Conv2 before striding" (Section 4.1, Table 2)
LOW_LEVEL_CHANNELS = 48  # Section 4.1, Table 1
PLUS_DROPOUT = 0.1  # after ASPP's projection: keep probability 0.9 in the reference code
V3_DROPOUT = 0.5  # torchvision's ASPP projection


def conv1x1_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def atrous_conv(in_channels: int, out_channels: int, rate: int, separable: bool) -> nn.Sequential:
    """A 3x3 atrous convolution of `rate` with BN and ReLU, or its separable form (Fig. 3).

    Separable: depthwise 3x3 of `rate` (one filter per channel), BN, ReLU, then pointwise
    1x1 to `out_channels`, BN, ReLU. Both keep the grid: the padding equals the rate.
    """
    if not separable:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
    depthwise = nn.Conv2d(
        in_channels,
        in_channels,
        kernel_size=3,
        padding=rate,
        dilation=rate,
        groups=in_channels,
        bias=False,
    )
    return nn.Sequential(
        depthwise,
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        *conv1x1_bn_relu(in_channels, out_channels),
    )


class ImagePooling(nn.Sequential):
    """Figure 2's "Image Pooling": global average, 1x1 convolution, BN, ReLU, upsampled."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv1x1_bn_relu(in_channels, out_channels))

    def check_batch(self, batch: int) -> None:
        """Its batch norm sees one value per image and channel: training needs two images."""
        if self[2].training and batch == 1:
            raise ModelError(
                "deeplabv3plus's image pooling batch-normalizes one value per image and "
                "channel, so training mode needs batches of at least 2, got 1",
                "train with batch_size >= 2, or freeze that batch norm with .eval()",
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = super().forward(x)  # (B, C, h, w) -> (B, out_channels, 1, 1)
        # bilinear upsampling of a single point is that point everywhere
        return pooled.expand(-1, -1, *x.shape[-2:])  # (B, out_channels, h, w)


class ASPP(nn.Module):
    """Section 3.1, Figure 2: atrous spatial pyramid pooling, five branches and a projection."""

    def __init__(
        self,
        in_channels: int,
        rates: tuple[int, ...],
        channels: int,
        separable: bool,
        dropout: float,
    ):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                conv1x1_bn_relu(in_channels, channels),
                *(atrous_conv(in_channels, channels, rate, separable) for rate in rates),
                ImagePooling(in_channels, channels),
            ]
        )
        self.project = nn.Sequential(
            *conv1x1_bn_relu(len(self.convs) * channels, channels), nn.Dropout(dropout)
        )

    def check_batch(self, batch: int) -> None:
        self.convs[-1].check_batch(batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_channels, h, w) -> each branch (B, channels, h, w)
        branches = torch.cat([branch(x) for branch in self.convs], dim=1)  # (B, 5 * channels, ..)
        return self.project(branches)  # (B, channels, h, w)


class Decoder(nn.Module):
    """Section 3.1, Figure 2: 48-channel low-level features joined to the encoder's, refined."""

    def __init__(self, low_level_channels: int, channels: int, separable: bool):
        super().__init__()
        self.low_level = conv1x1_bn_relu(low_level_channels, LOW_LEVEL_CHANNELS)
        self.refine = nn.Sequential(
            atrous_conv(channels + LOW_LEVEL_CHANNELS, channels, 1, separable),
            atrous_conv(channels, channels, 1, separable),
        )

    def forward(self, encoded: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        # encoded: (B, channels, H/4, W/4); low_level: (B, low_level_channels, H/4, W/4)
        reduced = self.low_level(low_level)  # (B, 48, H/4, W/4)
        joined = torch.cat([encoded, reduced], dim=1)  # (B, channels + 48, H/4, W/4)
        return self.refine(joined)  # (B, channels, H/4, W/4)


def dilated_resnet(name: str, *, in_channels: int, width: int, output_stride: int) -> nn.Module:
    """A zoo ResNet whose last stages trade stride for dilation, classifier discarded."""
    net = resnet.builder(name)(
        in_channels=in_channels,
        num_classes=1,
        width=width,
        replace_stride_with_dilation=DILATIONS[output_stride],
    )
    net.fc = nn.Identity()
    return net


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    return tuple(rate * 16 // output_stride for rate in RATES_AT_16)


class DeepLabV3Plus(nn.Module):
    """Figure 2: encoder (dilated ResNet + ASPP) and decoder (stride-4 features, 4x up)."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        backbone: str = "resnet50",
        output_stride: int = 16,
        separable: bool = True,
        width: int = 64,
        head_width: int = 256,
        padding: str = "zeros",
    ):
        super().__init__()
        self.output_stride = output_stride
        self.backbone = dilated_resnet(
            backbone, in_channels=in_channels, width=width, output_stride=output_stride
        )
        low_level, top = self.backbone.feature_channels[1], self.backbone.feature_channels[-1]
        self.aspp = ASPP(top, aspp_rates(output_stride), head_width, separable, PLUS_DROPOUT)
        self.decoder = Decoder(low_level, head_width, separable)
        self.classifier = nn.Conv2d(head_width, out_channels, kernel_size=1)
        self.wrap_longitude = padding == "earth"
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "deeplabv3plus")
        self.aspp.check_batch(x.shape[0])
        height, width = x.shape[-2:]
        # low_level: layer1, (B, C1, ceil(H/4), ceil(W/4)); top: layer4, (B, C4, H/os, W/os)
        _, low_level, *_, top = self.backbone.stages(x)
        encoded = self.aspp(top)  # (B, head_width, H/os, W/os)
        # bilinear x(os/4) to the low-level grid: (B, head_width, ceil(H/4), ceil(W/4))
        factor = self.output_stride // LOW_LEVEL_STRIDE
        low_height, low_width = low_level.shape[-2:]
        encoded = upsample_to_grid(encoded, factor, low_height, low_width, self.wrap_longitude)
        scores = self.classifier(self.decoder(encoded, low_level))  # (B, K, H/4, W/4)
        # bilinear x4 to the input grid: (B, K, H, W)
        return upsample_to_grid(scores, LOW_LEVEL_STRIDE, height, width, self.wrap_longitude)


class DeepLabHead(nn.Sequential):
    """torchvision's DeepLabv3 head: ASPP, 3x3 convolution, BN, ReLU, 1x1 to the classes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rates: tuple[int, ...],
        channels: int,
        separable: bool,
    ):
        super().__init__(
            ASPP(in_channels, rates, channels, separable, V3_DROPOUT),
            *atrous_conv(channels, channels, 1, separable),
            nn.Conv2d(channels, out_channels, kernel_size=1),
        )


class DeepLabV3(nn.Module):
    """torchvision's deeplabv3_resnet50: dilated ResNet, DeepLabHead, optional FCNHead."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        backbone: str = "resnet50",
        output_stride: int = 8,
        separable: bool = False,
        aux: bool = False,
        width: int = 64,
        head_width: int = 256,
        padding: str = "zeros",
    ):
        super().__init__()
        self.backbone = dilated_resnet(
            backbone, in_channels=in_channels, width=width, output_stride=output_stride
        )
        layer3, layer4 = self.backbone.feature_channels[-2:]
        rates = aspp_rates(output_stride)
        self.classifier = DeepLabHead(layer4, out_channels, rates, head_width, separable)
        self.aux_classifier = FCNHead(layer3, out_channels) if aux else None
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_grid(x, MIN_SIZE, "deeplabv3plus")
        self.classifier[0].check_batch(x.shape[0])
        *_, layer3, layer4 = self.backbone.stages(x)  # (B, C, H/16 or H/8, ...), (B, C, H/os, ..)
        grid = x.shape[-2:]
        # (B, C4, H/os, W/os) -> (B, K, H/os, W/os) -> (B, K, H, W), edges clamped, not wrapped
        main = F.interpolate(self.classifier(layer4), grid, mode="bilinear", align_corners=False)
        if self.aux_classifier is None or not self.training:
            return main
        aux = F.interpolate(self.aux_classifier(layer3), grid, mode="bilinear", align_corners=False)
        return main, aux


@register_model(
    family="encoder_decoder",
    tasks=("segmentation",),
    paper=Paper(
        authors="Chen, Zhu, Papandreou, Schroff & Adam",
        year=2018,
        title="Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation",
        venue="ECCV",
        arxiv="1802.02611",
    ),
    reference=dict(in_channels=3, out_channels=21, backbone="resnet50", variant="v3", aux=True),
    reference_params=42_004_074,
    reference_note="torchvision's deeplabv3_resnet50 (variant 'v3', output stride 8) with its "
    "auxiliary head, 21 classes (PASCAL VOC), equal to torchvision's count; 39,638,869 "
    "without the auxiliary head. DeepLabv3+ at the paper's configuration on ResNet-50 "
    "(variant 'v3+', output stride 16, 21 classes), counted here: 26,696,133 with atrous "
    "separable convolutions in ASPP and decoder (the default), 40,352,181 with plain ones "
    "(the paper's ResNet-101 setting, Table 3: 59,344,309 on resnet101); the same at output "
    "stride 8. The paper's Xception backbone is not built",
    small=dict(in_channels=3, out_channels=3, backbone="resnet18", width=8, head_width=16),
    example_input=(2, 3, 37, 75),
    min_size=MIN_SIZE,
)
def deeplabv3plus(
    *,
    in_channels: int,
    out_channels: int,
    backbone: str = "resnet50",
    output_stride: int | None = None,
    variant: str = "v3+",
    separable: bool | None = None,
    aux: bool = False,
    width: int = 64,
    head_width: int = 256,
    padding: str = "zeros",
) -> DeepLabV3Plus | DeepLabV3:
    """DeepLabv3+: ASPP on a dilated ResNet and a decoder from its stride-4 features.

    ``variant`` is "v3+" (the paper, Figure 2) or "v3" (torchvision's deeplabv3_resnet50
    design, with ``aux`` its auxiliary head on layer3). ``output_stride`` is 16 or 8 (left
    out: 16 for v3+, 8 for v3); ``separable`` uses atrous separable convolutions in ASPP
    and decoder (left out: on for v3+, off for v3). ``width`` is the backbone's first-stage
    width (64), ``head_width`` the width of ASPP and decoder (256).
    """
    if variant not in VARIANTS:
        raise ModelError(f"unknown deeplab variant '{variant}'", choices_hint(variant, VARIANTS))
    if backbone not in BACKBONES:
        raise ModelError(
            f"unknown deeplab backbone '{backbone}'", choices_hint(backbone, BACKBONES)
        )
    plus = variant == "v3+"
    output_stride = output_stride if output_stride is not None else (16 if plus else 8)
    if output_stride not in DILATIONS:
        raise ModelError(
            f"deeplab output_stride must be 16 or 8, got {output_stride}",
            "use 16 (layer4 dilated, the paper's training setting) or 8 (layer3 and layer4)",
        )
    separable = plus if separable is None else separable
    shared = dict(
        in_channels=in_channels,
        out_channels=out_channels,
        backbone=backbone,
        output_stride=output_stride,
        separable=separable,
        width=width,
        head_width=head_width,
        padding=padding,
    )
    if not plus:
        return DeepLabV3(**shared, aux=aux)
    if aux:
        raise ModelError(
            "deeplab variant 'v3+' has no auxiliary head",
            "use variant='v3' for torchvision's auxiliary head on layer3, or aux=False",
        )
    return DeepLabV3Plus(**shared)
