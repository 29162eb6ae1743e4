"""ResNet and DenseNet as backbones: stages, strides, dilation, zero-init, growth of features."""

from __future__ import annotations

import pytest
import torch

import esszoo
from esszoo.errors import ModelError
from esszoo.models.cnn.resnet import BasicBlock, Bottleneck


def last_norm(block: BasicBlock | Bottleneck) -> torch.nn.BatchNorm2d:
    return block.bn2 if isinstance(block, BasicBlock) else block.bn3


def stage_shapes(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    with torch.no_grad():
        return [tuple(s.shape) for s in model.eval().stages(x)]


def test_resnet50_stages_have_the_paper_channels_at_strides_4_4_8_16_32():
    model = esszoo.create_model("resnet50", in_channels=3, num_classes=10)
    shapes = stage_shapes(model, torch.randn(1, 3, 64, 96))
    assert shapes == [
        (1, 64, 16, 24),
        (1, 256, 16, 24),
        (1, 512, 8, 12),
        (1, 1024, 4, 6),
        (1, 2048, 2, 3),
    ]
    assert model.feature_channels == [64, 256, 512, 1024, 2048]
    assert model.feature_strides == [4, 4, 8, 16, 32]
    assert model.fc.in_features == 2048


def test_width_scales_every_stage_as_the_paper_doubles_it():
    model = esszoo.create_model("resnet18", in_channels=3, num_classes=10, width=8)
    assert model.feature_channels == [8, 8, 16, 32, 64]
    assert [s[1] for s in stage_shapes(model, torch.randn(1, 3, 32, 32))] == [8, 8, 16, 32, 64]


def test_bottleneck_strides_its_3x3_convolution_as_torchvision_v1_5():
    model = esszoo.create_model("resnet50", in_channels=3, num_classes=10, width=8)
    for stage in (model.layer2, model.layer3, model.layer4):
        first = stage[0]
        assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
        assert first.downsample[0].stride == (2, 2)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_dilation_keeps_layer3_and_layer4_at_stride_8_with_the_same_parameters(name):
    dilated = dict(replace_stride_with_dilation=(False, True, True))
    model = esszoo.create_model(name, in_channels=3, num_classes=10, width=8, **dilated)
    shapes = stage_shapes(model, torch.randn(1, 3, 64, 64))
    assert [s[-2:] for s in shapes] == [(16, 16), (16, 16), (8, 8), (8, 8), (8, 8)]
    assert model.feature_strides == [4, 4, 8, 8, 8]
    assert model.layer4[1].conv2.dilation == (4, 4)
    assert model.layer4[0].conv2.dilation == (2, 2)  # a stage's first block keeps the last
    reference = esszoo.model_card(name).reference
    assert esszoo.count_parameters(name, **reference, **dilated) == esszoo.count_parameters(
        name, **reference
    )


def test_dilation_to_output_stride_16_dilates_only_layer4():
    model = esszoo.create_model(
        "resnet50",
        in_channels=3,
        num_classes=10,
        width=8,
        replace_stride_with_dilation=[False, False, True],  # a list, as a checkpoint's JSON
    )
    assert model.feature_strides == [4, 4, 8, 16, 16]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_dilation_needs_one_flag_per_strided_stage():
    with pytest.raises(ModelError, match="3 values"):
        esszoo.create_model(
            "resnet18", in_channels=3, num_classes=10, replace_stride_with_dilation=(True, True)
        )


@pytest.mark.parametrize("dilation", [(False, False, False), (False, True, True)])
def test_earth_padded_resnet_takes_a_single_grid_point(dilation):
    model = esszoo.create_model(
        "resnet50",
        in_channels=3,
        num_classes=4,
        width=8,
        replace_stride_with_dilation=dilation,
        padding="earth",
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 4)
        assert model(torch.randn(1, 3, 1, 5)).shape == (1, 4)


def test_zero_padded_resnet_takes_a_single_grid_point():
    model = esszoo.create_model("resnet18", in_channels=3, num_classes=4, width=8).eval()
    assert model.min_size == (1, 1)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 4)


@pytest.mark.parametrize(("name", "block"), [("resnet18", BasicBlock), ("resnet50", Bottleneck)])
def test_zero_init_residual_zeroes_the_last_norm_of_every_block(name, block):
    model = esszoo.create_model(
        name, in_channels=3, num_classes=10, width=8, zero_init_residual=True
    )
    blocks = [m for m in model.modules() if isinstance(m, block)]
    assert len(blocks) == (8 if block is BasicBlock else 16)
    for b in blocks:
        assert torch.count_nonzero(last_norm(b).weight) == 0
        assert torch.all(b.bn1.weight == 1)
    default = esszoo.create_model(name, in_channels=3, num_classes=10, width=8)
    assert all(
        torch.all(last_norm(b).weight == 1) for b in default.modules() if isinstance(b, block)
    )


@pytest.mark.parametrize(
    ("name", "depth"),
    [("resnet18", 18), ("resnet34", 34), ("resnet50", 50), ("resnet101", 101), ("resnet152", 152)],
)
def test_resnet_depth_counts_the_weighted_layers_of_table_1(name, depth):
    with torch.device("meta"):
        model = esszoo.create_model(name, in_channels=3, num_classes=10)
    assert model.depth == depth
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    projections = sum(1 for m in model.modules() if getattr(m, "downsample", None) is not None)
    assert len(convs) - projections + 1 == depth  # + fc, less the shortcut projections


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("densenet121", [64, 256, 512, 1024, 1024]),
        ("densenet169", [64, 256, 512, 1280, 1664]),
        ("densenet201", [64, 256, 512, 1792, 1920]),
    ],
)
def test_densenet_blocks_grow_by_k_per_layer_and_transitions_halve(name, channels):
    with torch.device("meta"):
        model = esszoo.create_model(name, in_channels=3, num_classes=1000)
    assert model.feature_channels == channels
    assert model.classifier.in_features == channels[-1]
    assert model.depth == int(name.removeprefix("densenet"))


def test_densenet121_stages_at_strides_4_4_8_16_32():
    model = esszoo.create_model("densenet121", in_channels=3, num_classes=10)
    shapes = stage_shapes(model, torch.randn(1, 3, 64, 64))
    assert shapes == [
        (1, 64, 16, 16),
        (1, 256, 16, 16),
        (1, 512, 8, 8),
        (1, 1024, 4, 4),
        (1, 1024, 2, 2),
    ]
    assert model.feature_strides == [4, 4, 8, 16, 32]
    assert torch.all(model.stages(torch.randn(1, 3, 64, 64))[-1] >= 0), "after the last ReLU"


def test_densenet_knobs_set_growth_bottleneck_and_stem():
    model = esszoo.create_model(
        "densenet121", in_channels=3, num_classes=10, growth_rate=4, num_init_features=8, bn_size=2
    )
    layer = model.features.denseblock1.denselayer1
    assert layer.conv1.out_channels == 8 and layer.conv2.out_channels == 4
    assert model.features.conv0.out_channels == 8
    assert model.feature_channels == [8, 8 + 6 * 4, 16 + 12 * 4, 32 + 24 * 4, 64 + 16 * 4]
