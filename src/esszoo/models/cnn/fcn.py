"""FCN: fully convolutional networks for dense prediction, from a classification backbone.

Paper: Long, Shelhamer & Darrell (2015), "Fully Convolutional Networks for Semantic
Segmentation", CVPR, arXiv:1411.4038. One idea: a classifier made only of convolutions
takes a grid of any size and returns a grid of class scores, coarse by the net's output
stride; upsampling inside the net makes them dense again, and skip connections from finer
layers bring back the detail the pooling discarded. Figure 3 is the map of this file.

Paper to code:

- Section 3.1 and Figure 2, convolutionalization: VGG's fully connected fc6 (25,088 ->
  4096 on a 7x7x512 window) becomes a 7x7 convolution and fc7 a 1x1 convolution, each
  followed by its ReLU and dropout 0.5 (Section 4.3: dropout where the classifier had it):
  ``FCN.fc``. ``head_width`` (4096) is their width. A ResNet has no hidden fully connected
  layers, only global pooling and the classifier that Section 4.1 discards, so its
  ``fc`` is the identity.
- Section 4.1: the final classifier is discarded and a 1x1 convolution, ``score_fr``, gives
  the class scores at stride 32.
- Section 3.3, upsampling is backwards strided convolution: ``Upsample2x``, a transposed
  convolution with a 4x4 kernel and stride 2, one filter per pair of classes as in the
  reference Caffe nets, initialized to bilinear interpolation (each class upsampled by
  itself) and learned, as Section 4.2 says ("We initialize the 2x upsampling to bilinear
  interpolation, but allow the parameters to be learned").
- Section 4.2 and Figure 3, combining what and where: FCN-32s upsamples the stride-32
  scores to the grid in one step. FCN-16s adds a 1x1 score layer on pool4 (stride 16),
  upsamples the stride-32 scores 2x and sums the two; FCN-8s does the same once more with
  pool3 (stride 8): ``SkipFusion``, one per skip, in ``FCN.skips``. The skips' score
  layers start at zero, "so that the net starts with unmodified predictions", and Section
  4.3 zero-initializes the class score layer too, random initialization yielding "neither
  better performance nor faster convergence": ``zero_init_scores``. Mean IU on a subset of
  PASCAL VOC 2011 val: 59.4, 62.4 and 62.7 for FCN-32s, 16s and 8s (Sections 4.1, 4.2).
- The last upsampling (x32, x16 or x8) is fixed bilinear interpolation, as in the
  reference nets (a deconvolution with lr_mult 0): ``upsample_to_grid``, with
  ``F.interpolate``, no parameters.

For ResNet backbones (the paper also converted AlexNet and GoogLeNet, Table 1), "pool3",
"pool4" and "pool5" are the outputs of layer2, layer3 and layer4, at strides 8, 16 and 32.

The ``torchvision`` variant is torchvision's ``fcn_resnet50`` (and ``fcn_resnet101``), a
later design on the paper's name: a ResNet whose layer3 and layer4 trade their stride for
dilation (``replace_stride_with_dilation=(False, True, True)``, output stride 8), a head
``FCNHead`` (3x3 convolution to a quarter of the channels without bias, batch norm, ReLU,
dropout 0.1, 1x1 convolution to the classes) on layer4, bilinear resizing of the scores
to the input grid, and with ``aux=True`` a second head on layer3 whose scores training
also fits (returned as ``(main, aux)`` in training mode only). Module names follow
torchvision's (``backbone.layer1...``, ``classifier.4``, ``aux_classifier.4``).

Grids. Every backbone map here has ceil(H/s) x ceil(W/s) points at stride s (VGG's pools
in ceil mode, as Caffe's; ResNet's strided convolutions with their padding), so a 2x
upsampled map covers the finer map of the skip and is cropped to it from the top-left
corner, where both start (Caffe's Crop layer, offset 0 here), and the final upsampling
covers the input grid and is cropped to it. Any grid of at least 1x1 works, 73x144 and
18x432 included, and the output is (B, out_channels, H, W) exactly.

Edges. Before each upsampling the score map gets a ring of one point, the edge value
repeated, so the edges upsample as the interior does (a bilinear 2x deconvolution at its
start equals ``F.interpolate`` everywhere). With ``padding="earth"`` the ring wraps around
in longitude, as the convolutions do, so the dateline is no edge: on a grid whose width is
a multiple of 32, rolling the input by 32 columns rolls the output by 32 columns. The
torchvision variant resizes as torchvision does, without the ring; with earth padding
only its convolutions wrap.

Departures:

- The reference nets pad conv1_1 by 100 points so that the unpadded 7x7 fc6 sees any
  input, and crop the scores back with offsets derived from the geometry. Here fc6 is
  padded by 3, as every convolution keeps its grid, and the maps are cropped from the
  origin as above: no wasted margin, and any grid of at least one point works.
- VGG's max pools run in ceil mode (Caffe's only mode, the one the paper's VGG16 was
  trained with); the zoo's ``vgg16`` classifier uses floor mode, as torchvision. Same
  weights and parameters.
- The reference nets of the authors' repository (later than the CVPR paper) fix the 2x
  deconvolutions too (lr_mult 0); here they are learned, as the paper says. Freeze them
  with ``requires_grad_(False)`` to follow the reference nets.
- No pretrained weights: the paper fine-tunes from ImageNet classifiers. The backbones
  start as the zoo's (Glorot for VGG, He for ResNet), and so do fc6 and fc7 (Glorot, zero
  biases, as VGG's classifier).
- ``zero_init_scores=False`` gives the score layers PyTorch's default initialization.
  Starting all of them at zero, the paper's choice, makes the first output zero, so the
  squared-output loss of the contract tests would send no gradient anywhere; the small
  configuration turns it off. The torchvision variant keeps torchvision's initialization.
- ResNet's strided convolutions centre a coarse point on an input point, not on the middle
  of the block it summarizes as VGG's pools do; the half-point shift this leaves in the
  bilinear upsampling is not corrected, as torchvision does not correct it either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError, choices_hint
from esszoo.layers import check_grid, earth_pad, set_padding
from esszoo.models.cnn import resnet, vgg
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)  # ceil-mode pools and padded strided convolutions keep one point to the end
# variant: the finer pools fused into the stride-32 scores, coarse to fine (Figure 3)
SKIPS = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}
VARIANTS = (*SKIPS, "torchvision")
RESNETS: dict[str, Callable[..., resnet.ResNet]] = {
    name: resnet.builder(name) for name, *_ in resnet.DEPTHS
}
BACKBONES = (*vgg.VARIANTS, *RESNETS)
FC_DROPOUT = 0.5  # after fc6 and fc7, as in VGG's classifier (Section 4.3)
HEAD_DROPOUT = 0.1  # torchvision's FCNHead


class VGGPools(nn.Module):
    """VGG's convolutional layers cut after each max pool: pool1 .. pool5, strides 2 .. 32."""

    def __init__(self, *, name: str, in_channels: int, width: int):
        super().__init__()
        config, batch_norm, _ = vgg.VARIANTS[name]
        # the classifier is discarded (Section 4.1): built one unit wide, so it costs nothing
        net = vgg.VGG(
            in_channels=in_channels,
            num_classes=1,
            config=config,
            batch_norm=batch_norm,
            width=width,
            classifier_width=1,
        )
        stages, layers = [], []
        for layer in net.features:
            layers.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True  # Caffe's pooling: a stride-s map has ceil(H/s) rows
                stages.append(nn.Sequential(*layers))
                layers = []
        self.pools = nn.ModuleList(stages)
        self.feature_channels = [width * multiple for multiple in vgg.STAGE_WIDTHS]
        self.feature_strides = [2, 4, 8, 16, 32]

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """pool1 .. pool5: (B, width * (1, 2, 4, 8, 8), ceil(H/s), ceil(W/s)), s = 2 .. 32."""
        outputs = []
        for pool in self.pools:
            x = pool(x)
            outputs.append(x)
        return outputs


def build_backbone(name: str, *, in_channels: int, width: int, dilate: bool) -> nn.Module:
    """A zoo backbone with `stages(x)`, `feature_channels` and `feature_strides`."""
    if name in vgg.VARIANTS:
        return VGGPools(name=name, in_channels=in_channels, width=width)
    dilation = (False, dilate, dilate)
    net = RESNETS[name](
        in_channels=in_channels, num_classes=1, width=width, replace_stride_with_dilation=dilation
    )
    net.fc = nn.Identity()  # the classifier is discarded (Section 4.1)
    return net


def pad_edges(score: torch.Tensor, wrap_longitude: bool) -> torch.Tensor:
    """A ring of one point around a score map: the edge repeated, or longitude wrapped."""
    if not wrap_longitude:
        return F.pad(score, (1, 1, 1, 1), mode="replicate")
    return earth_pad(F.pad(score, (0, 0, 1, 1), mode="replicate"), lat=0, lon=1)


class Upsample2x(nn.ConvTranspose2d):
    """Section 3.3: 2x upsampling by a learned deconvolution that starts as bilinear."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.wrap_longitude = False

    def reset_parameters(self) -> None:
        # linear interpolation weights of a 2x upsampling: 1 - |i - 1.5| / 2, i = 0 .. 3
        like = dict(dtype=self.weight.dtype, device=self.weight.device)
        taps = torch.tensor([0.25, 0.75, 0.75, 0.25], **like)
        same_class = torch.eye(self.in_channels, **like)[:, :, None, None]
        with torch.no_grad():  # weight: (classes in, classes out, 4, 4), bilinear on the diagonal
            self.weight.copy_(same_class * taps[:, None] * taps[None, :])

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        # (B, K, h, w) -> ring (B, K, h + 2, w + 2) -> (B, K, 2h + 4, 2w + 4) -> (B, K, 2h, 2w)
        return super().forward(pad_edges(score, self.wrap_longitude))[..., 2:-2, 2:-2]


def upsample_to_grid(
    score: torch.Tensor, factor: int, height: int, width: int, wrap_longitude: bool
) -> torch.Tensor:
    """Fixed bilinear upsampling by `factor`, cropped to the input grid (B, K, H, W)."""
    ring = pad_edges(score, wrap_longitude)  # (B, K, h + 2, w + 2), h = ceil(H / factor)
    dense = F.interpolate(ring, scale_factor=factor, mode="bilinear", align_corners=False)
    return dense[..., factor : factor + height, factor : factor + width]


class SkipFusion(nn.Module):
    """Figure 3: coarse scores upsampled 2x, plus the scores of a finer pool (Section 4.2)."""

    def __init__(self, feature_channels: int, out_channels: int):
        super().__init__()
        self.upscore = Upsample2x(out_channels)
        self.score = nn.Conv2d(feature_channels, out_channels, kernel_size=1)

    def forward(self, coarse: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        fine = self.score(pool)  # (B, C, h, w) -> (B, K, h, w), h = ceil(H / s)
        upsampled = self.upscore(coarse)  # (B, K, ceil(H / 2s), ...) -> (B, K, >= h, >= w)
        return upsampled[..., : fine.shape[-2], : fine.shape[-1]] + fine  # Caffe's Crop + Eltwise


class FCN(nn.Module):
    """The paper's FCN-32s, FCN-16s and FCN-8s (Figure 3) on a VGG or ResNet backbone."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        backbone: str = "vgg16",
        variant: str = "8s",
        width: int = 64,
        head_width: int = 4096,
        zero_init_scores: bool = True,
        padding: str = "zeros",
    ):
        super().__init__()
        self.backbone = build_backbone(backbone, in_channels=in_channels, width=width, dilate=False)
        pool3, pool4, pool5 = self.backbone.feature_channels[-3:]
        if backbone in vgg.VARIANTS:
            # Section 3.1, Figure 2: fc6 and fc7 as convolutions,
            # (B, 8 * width, h, w) -> (B, head_width, h, w)
            self.fc = nn.Sequential(
                nn.Conv2d(pool5, head_width, kernel_size=7, padding=3),  # fc6
                nn.ReLU(inplace=True),
                nn.Dropout(FC_DROPOUT),
                nn.Conv2d(head_width, head_width, kernel_size=1),  # fc7
                nn.ReLU(inplace=True),
                nn.Dropout(FC_DROPOUT),
            )
            for layer in self.fc:
                if isinstance(layer, nn.Conv2d):
                    nn.init.xavier_uniform_(layer.weight)
                    nn.init.zeros_(layer.bias)
            top_channels = head_width
        else:
            self.fc = nn.Identity()
            top_channels = pool5
        self.score_fr = nn.Conv2d(top_channels, out_channels, kernel_size=1)
        pool_channels = {"pool4": pool4, "pool3": pool3}
        self.skips = nn.ModuleDict(
            {pool: SkipFusion(pool_channels[pool], out_channels) for pool in SKIPS[variant]}
        )
        self.output_stride = 32 // 2 ** len(self.skips)
        if zero_init_scores:
            for layer in (self.score_fr, *(skip.score for skip in self.skips.values())):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.wrap_longitude = padding == "earth"
        for skip in self.skips.values():
            skip.upscore.wrap_longitude = self.wrap_longitude
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "fcn")
        # pool3, pool4, pool5: (B, C_s, ceil(H/s), ceil(W/s)) at s = 8, 16, 32
        pool3, pool4, pool5 = self.backbone.stages(x)[-3:]
        pools = {"pool4": pool4, "pool3": pool3}
        score = self.score_fr(self.fc(pool5))  # (B, out_channels, H/32, W/32)
        for pool, skip in self.skips.items():
            score = skip(score, pools[pool])  # -> (B, out_channels, H/16, W/16), then H/8, W/8
        height, width = x.shape[-2:]
        # (B, out_channels, H/output_stride, W/output_stride) -> (B, out_channels, H, W)
        return upsample_to_grid(score, self.output_stride, height, width, self.wrap_longitude)


class FCNHead(nn.Sequential):
    """torchvision's head: 3x3 conv to a quarter of the channels, BN, ReLU, dropout, 1x1."""

    def __init__(self, in_channels: int, out_channels: int):
        hidden = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Dropout(HEAD_DROPOUT),
            nn.Conv2d(hidden, out_channels, kernel_size=1),
        )


class DilatedFCN(nn.Module):
    """torchvision's fcn_resnet50: a dilated ResNet at output stride 8 and an FCNHead."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        backbone: str = "resnet50",
        aux: bool = False,
        width: int = 64,
        padding: str = "zeros",
    ):
        super().__init__()
        self.backbone = build_backbone(backbone, in_channels=in_channels, width=width, dilate=True)
        layer3, layer4 = self.backbone.feature_channels[-2:]
        self.classifier = FCNHead(layer4, out_channels)
        self.aux_classifier = FCNHead(layer3, out_channels) if aux else None
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_grid(x, MIN_SIZE, "fcn")
        *_, layer3, layer4 = self.backbone.stages(x)  # both (B, C, ceil(H/8), ceil(W/8))
        grid = x.shape[-2:]
        # (B, C, H/8, W/8) -> (B, out_channels, H/8, W/8) -> (B, out_channels, H, W)
        main = F.interpolate(self.classifier(layer4), grid, mode="bilinear", align_corners=False)
        if self.aux_classifier is None or not self.training:
            return main
        aux = F.interpolate(self.aux_classifier(layer3), grid, mode="bilinear", align_corners=False)
        return main, aux


@register_model(
    family="cnn",
    tasks=("segmentation",),
    paper=Paper(
        authors="Long, Shelhamer & Darrell",
        year=2015,
        title="Fully Convolutional Networks for Semantic Segmentation",
        venue="CVPR",
        arxiv="1411.4038",
    ),
    reference=dict(
        in_channels=3, out_channels=21, backbone="resnet50", variant="torchvision", aux=True
    ),
    reference_params=35_322_218,
    reference_note="torchvision's fcn_resnet50 with its auxiliary head, 21 classes (PASCAL "
    "VOC), equal to torchvision's count; 32,957,013 without the auxiliary head. The paper's "
    "nets on VGG16 at 21 classes, counted here (trainable: VGG16's 13 convolutions, fc6 as "
    "7x7 and fc7 as 1x1 convolutions, the 1x1 score layers, and the learned 4x4 2x "
    "deconvolutions without bias; the final bilinear upsampling is fixed): FCN-32s "
    "134,346,581, FCN-16s 134,364,410, FCN-8s 134,376,863 (Table 1: 134M)",
    small=dict(
        in_channels=3,
        out_channels=3,
        backbone="vgg16",
        variant="8s",
        width=4,
        head_width=16,
        zero_init_scores=False,
    ),
    example_input=(2, 3, 40, 72),
    min_size=MIN_SIZE,
)
def fcn(
    *,
    in_channels: int,
    out_channels: int,
    backbone: str = "vgg16",
    variant: str = "8s",
    aux: bool = False,
    width: int = 64,
    head_width: int = 4096,
    zero_init_scores: bool = True,
    padding: str = "zeros",
) -> FCN | DilatedFCN:
    """Fully convolutional network: dense class scores from a classification backbone.

    ``variant`` is "32s", "16s" or "8s" (the paper's, Figure 3) or "torchvision"
    (torchvision's fcn_resnet50 design, ResNet backbones only, with ``aux`` its auxiliary
    head). ``width`` is the backbone's first-stage width (64); ``head_width`` the width of
    fc6 and fc7 (4096, VGG backbones only); ``zero_init_scores`` starts the paper's score
    layers at zero.
    """
    if variant not in VARIANTS:
        raise ModelError(f"unknown fcn variant '{variant}'", choices_hint(variant, VARIANTS))
    if backbone not in BACKBONES:
        raise ModelError(f"unknown fcn backbone '{backbone}'", choices_hint(backbone, BACKBONES))
    if variant == "torchvision":
        if backbone not in RESNETS:
            raise ModelError(
                f"fcn variant 'torchvision' needs a ResNet backbone, got '{backbone}'",
                "use backbone='resnet50' (torchvision's fcn_resnet50) or 'resnet101'",
            )
        return DilatedFCN(
            in_channels=in_channels,
            out_channels=out_channels,
            backbone=backbone,
            aux=aux,
            width=width,
            padding=padding,
        )
    if aux:
        raise ModelError(
            f"fcn variant '{variant}' has no auxiliary head",
            "use variant='torchvision' for the auxiliary head on layer3, or aux=False",
        )
    return FCN(
        in_channels=in_channels,
        out_channels=out_channels,
        backbone=backbone,
        variant=variant,
        width=width,
        head_width=head_width,
        zero_init_scores=zero_init_scores,
        padding=padding,
    )
