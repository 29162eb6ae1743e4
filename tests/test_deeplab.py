"""DeepLabv3+ and torchvision's DeepLabv3: counts, output stride, decoder, grids, aux head."""

from __future__ import annotations

import pytest
import torch

import esszoo
from esszoo.errors import ModelError

TINY = dict(in_channels=3, out_channels=4, backbone="resnet18", width=8, head_width=16)
PAPER = dict(in_channels=3, out_channels=21, backbone="resnet50")  # v3+ at output stride 16


def tiny_deeplab(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return esszoo.create_model("deeplabv3plus", **{**TINY, **changes})


def on_meta(**arguments) -> torch.nn.Module:
    with torch.device("meta"):
        return esszoo.create_model("deeplabv3plus", **arguments)


def atrous_dilations(model: torch.nn.Module) -> list[int]:
    """The rates of ASPP's 3x3 branches, in order."""
    branches = model.aspp.convs if hasattr(model, "aspp") else model.classifier[0].convs
    return [branch[0].dilation[0] for branch in branches[1:-1]]


def test_v3_reference_counts_42_004_074_with_aux_and_39_638_869_without():
    reference = esszoo.model_card("deeplabv3plus").reference
    assert esszoo.count_parameters("deeplabv3plus", **reference) == 42_004_074
    assert esszoo.count_parameters("deeplabv3plus", **{**reference, "aux": False}) == 39_638_869


def test_v3_keeps_torchvision_names_output_stride_8_and_rates_12_24_36():
    model = on_meta(**PAPER, variant="v3", aux=True)
    weights = model.state_dict()
    assert weights["classifier.0.convs.1.0.weight"].shape == (256, 2048, 3, 3)
    assert weights["classifier.0.convs.4.1.weight"].shape == (256, 2048, 1, 1)  # image pooling
    assert weights["classifier.0.project.0.weight"].shape == (256, 5 * 256, 1, 1)
    assert weights["classifier.4.weight"].shape == (21, 256, 1, 1)
    assert weights["aux_classifier.0.weight"].shape == (256, 1024, 3, 3)
    assert weights["aux_classifier.4.bias"].shape == (21,)
    assert not any(key.startswith("backbone.fc") for key in weights)
    assert model.backbone.feature_strides == [4, 4, 8, 8, 8]
    assert atrous_dilations(model) == [12, 24, 36]
    assert model.classifier[0].project[-1].p == 0.5


def test_separable_false_gives_plain_atrous_convolutions_with_more_parameters():
    separable = esszoo.count_parameters("deeplabv3plus", **PAPER)
    plain = esszoo.count_parameters("deeplabv3plus", **PAPER, separable=False)
    assert (separable, plain) == (26_696_133, 40_352_181)
    depthwise = [
        m
        for m in on_meta(**PAPER).modules()
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    ]
    # three atrous branches of ASPP (2048 channels) and the two 3x3 decoder convolutions
    assert [m.in_channels for m in depthwise] == [2048, 2048, 2048, 256 + 48, 256]
    assert [m.dilation[0] for m in depthwise] == [6, 12, 18, 1, 1]
    plain_model = on_meta(**PAPER, separable=False)
    assert all(m.groups == 1 for m in plain_model.modules() if isinstance(m, torch.nn.Conv2d))
    assert plain_model.aspp.convs[1][0].weight.shape == (256, 2048, 3, 3)


def test_output_stride_changes_rates_and_dilation_but_not_the_weights():
    at_16, at_8 = tiny_deeplab(), tiny_deeplab(output_stride=8)
    assert atrous_dilations(at_16) == [6, 12, 18]
    assert atrous_dilations(at_8) == [12, 24, 36]
    assert at_16.backbone.feature_strides == [4, 4, 8, 16, 16]
    assert at_8.backbone.feature_strides == [4, 4, 8, 8, 8]
    assert at_16.backbone.layer3[1].conv1.dilation == (1, 1)
    assert at_8.backbone.layer3[1].conv1.dilation == (2, 2)
    assert at_8.backbone.layer4[1].conv1.dilation == (4, 4)
    # the same weights, so a net trained at 16 is evaluated at 8 (Section 4.2, Table 3)
    shapes_16 = {key: value.shape for key, value in at_16.state_dict().items()}
    assert shapes_16 == {key: value.shape for key, value in at_8.state_dict().items()}
    at_8.load_state_dict(at_16.state_dict())
    backbone_16, backbone_8 = (
        sum(p.numel() for p in net.backbone.parameters()) for net in (at_16, at_8)
    )
    assert backbone_16 == backbone_8


def test_decoder_reads_the_stride_4_features_of_layer1():
    model = tiny_deeplab().eval()
    seen = {}
    model.backbone.layer1.register_forward_hook(lambda m, i, out: seen.update(layer1=out))
    model.decoder.low_level.register_forward_hook(lambda m, i, out: seen.update(low=i[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 37, 75))
    assert seen["low"] is seen["layer1"]
    assert seen["low"].shape == (2, 8, 10, 19)  # (B, layer1 channels, ceil(H/4), ceil(W/4))
    assert model.decoder.low_level[0].out_channels == 48


@pytest.mark.parametrize(
    "configuration",
    [dict(), dict(output_stride=8), dict(separable=False), dict(variant="v3", aux=True)],
    ids=["v3+16", "v3+8", "v3+plain", "v3"],
)
@pytest.mark.parametrize("grid", [(37, 75), (18, 432), (5, 3), (1, 1)])
def test_output_grid_equals_the_input_grid(configuration, grid):
    model = tiny_deeplab(**configuration).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *grid)).shape == (2, 4, *grid)


def test_aux_output_only_in_training_mode_and_every_parameter_learns():
    model = tiny_deeplab(variant="v3", aux=True).train()
    x = torch.randn(2, 3, 21, 34)
    main, aux = model(x)
    assert main.shape == aux.shape == (2, 4, 21, 34)
    (main.square().mean() + aux.square().mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    assert isinstance(tiny_deeplab(variant="v3").train()(x), torch.Tensor)


def test_training_with_a_batch_of_one_names_the_image_pooling_and_the_fix():
    model = tiny_deeplab().train()
    with pytest.raises(ModelError, match="batches of at least 2"):
        model(torch.randn(1, 3, 40, 40))
    model.aspp.convs[-1].eval()  # its batch norm frozen: a batch of one is fine
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 4, 40, 40)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_earth_padding_makes_v3plus_equivariant_to_rolls_of_the_output_stride(output_stride):
    x = torch.randn(1, 3, 21, 64)
    outputs = {}
    for padding in ("zeros", "earth"):
        model = tiny_deeplab(output_stride=output_stride, padding=padding).eval()
        with torch.no_grad():
            outputs[padding] = model(x), model(x.roll(output_stride, dims=-1))
    plain, rolled = outputs["earth"]
    assert torch.allclose(rolled, plain.roll(output_stride, dims=-1), atol=1e-5)
    plain, rolled = outputs["zeros"]
    assert not torch.allclose(rolled, plain.roll(output_stride, dims=-1), atol=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(variant="v4"), "unknown deeplab variant"),
        (dict(backbone="vgg16"), "unknown deeplab backbone"),
        (dict(output_stride=32), "output_stride must be 16 or 8"),
        (dict(aux=True), "no auxiliary head"),
    ],
)
def test_bad_configurations_say_what_to_change(arguments, message):
    with pytest.raises(ModelError, match=message):
        esszoo.create_model("deeplabv3plus", in_channels=3, out_channels=4, **arguments)


def test_an_empty_grid_names_the_minimum():
    with pytest.raises(ModelError, match="at least 1x1"):
        tiny_deeplab()(torch.randn(1, 3, 0, 8))
