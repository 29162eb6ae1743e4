"""FCN: dense output on any grid, bilinear-initialized skips, zero score layers, counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import esszoo
from esszoo.errors import ModelError
from esszoo.models.cnn.fcn import Upsample2x

TINY = {
    "vgg16": dict(in_channels=3, out_channels=4, backbone="vgg16", width=4, head_width=16),
    "resnet18": dict(in_channels=3, out_channels=4, backbone="resnet18", width=8),
}


def tiny_fcn(backbone: str, **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return esszoo.create_model("fcn", **{**TINY[backbone], **changes})


def score_layers(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.out_channels == 4
    ]


CONFIGURATIONS = [
    (backbone, variant)
    for backbone in ("vgg16", "resnet18")
    for variant in ("32s", "16s", "8s", "torchvision")
    if not (backbone == "vgg16" and variant == "torchvision")  # torchvision's is ResNet-only
]


@pytest.mark.parametrize(("backbone", "variant"), CONFIGURATIONS)
@pytest.mark.parametrize("grid", [(73, 144), (37, 75), (3, 2)])
def test_output_grid_equals_the_input_grid(backbone, variant, grid):
    model = tiny_fcn(backbone, variant=variant).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *grid)).shape == (2, 4, *grid)


def test_vgg_pools_round_up_so_upsampled_maps_cover_the_skips():
    model = tiny_fcn("vgg16")
    sizes = [tuple(p.shape[-2:]) for p in model.backbone.stages(torch.randn(1, 3, 37, 75))]
    assert sizes == [(19, 38), (10, 19), (5, 10), (3, 5), (2, 3)]  # ceil(37/s), ceil(75/s)


def test_2x_deconvolution_starts_as_bilinear_interpolation():
    upsample = Upsample2x(3)
    rows, columns = torch.meshgrid(torch.arange(9.0), torch.arange(13.0), indexing="ij")
    smooth = torch.stack([rows, columns, torch.sin(rows / 3) * torch.cos(columns / 4)])[None]
    expected = F.interpolate(smooth, scale_factor=2, mode="bilinear", align_corners=False)
    with torch.no_grad():
        upsampled = upsample(smooth)
    assert upsampled.shape == (1, 3, 18, 26)
    # the ring of repeated edge values makes the edges equal too, not only the interior
    assert torch.allclose(upsampled, expected, atol=1e-5)
    assert upsample.weight.requires_grad  # learned, as Section 4.2 says


def test_score_layers_start_at_zero_so_the_first_output_is_zero():
    model = tiny_fcn("vgg16").eval()
    assert len(score_layers(model)) == 3
    assert all(torch.count_nonzero(layer.weight) == 0 for layer in score_layers(model))
    with torch.no_grad():
        assert torch.count_nonzero(model(torch.randn(1, 3, 40, 72))) == 0
        random_start = tiny_fcn("vgg16", zero_init_scores=False).eval()
        assert torch.count_nonzero(random_start(torch.randn(1, 3, 40, 72))) > 0


@pytest.mark.parametrize(("variant", "skips"), [("32s", 0), ("16s", 1), ("8s", 2)])
def test_each_finer_variant_adds_one_score_layer_and_one_2x_deconvolution(variant, skips):
    model = tiny_fcn("vgg16", variant=variant)
    assert len(score_layers(model)) == 1 + skips
    assert sum(isinstance(m, Upsample2x) for m in model.modules()) == skips
    assert model.output_stride == 32 // 2**skips


def test_torchvision_variant_counts_35_322_218_with_aux_and_32_957_013_without():
    reference = esszoo.model_card("fcn").reference
    assert esszoo.count_parameters("fcn", **reference) == 35_322_218
    assert esszoo.count_parameters("fcn", **{**reference, "aux": False}) == 32_957_013


@pytest.mark.parametrize(
    ("variant", "count"), [("32s", 134_346_581), ("16s", 134_364_410), ("8s", 134_376_863)]
)
def test_paper_vgg16_counts(variant, count):
    # VGG16 convolutions 14,714,688; fc6 102,764,544; fc7 16,781,312; score_fr 86,037;
    # each skip: a 1x1 score layer on pool4 (10,773) or pool3 (5,397) and a 21x21x4x4 deconv
    assert esszoo.count_parameters("fcn", in_channels=3, out_channels=21, variant=variant) == count


def test_torchvision_variant_has_torchvision_names_and_output_stride_8():
    with torch.device("meta"):
        model = esszoo.create_model(
            "fcn",
            in_channels=3,
            out_channels=21,
            backbone="resnet50",
            variant="torchvision",
            aux=True,
        )
    keys = set(model.state_dict())
    assert {
        "backbone.layer4.2.conv3.weight",
        "classifier.4.weight",
        "aux_classifier.4.bias",
    } <= keys
    assert not any(key.startswith("backbone.fc") for key in keys)
    assert model.backbone.feature_strides == [4, 4, 8, 8, 8]
    assert model.classifier[0].out_channels == 512 and model.aux_classifier[0].out_channels == 256


def test_aux_output_only_in_training_mode_and_every_parameter_learns():
    model = tiny_fcn("resnet18", variant="torchvision", aux=True).train()
    x = torch.randn(2, 3, 37, 75)
    main, aux = model(x)
    assert main.shape == aux.shape == (2, 4, 37, 75)
    (main.square().mean() + aux.square().mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)


def test_paper_variant_on_resnet_trains_every_parameter():
    model = tiny_fcn("resnet18", zero_init_scores=False).train()
    model(torch.randn(2, 3, 37, 75)).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backbone", ["vgg16", "resnet18"])
def test_earth_padding_makes_the_net_equivariant_to_rolls_of_32_columns(backbone):
    x = torch.randn(1, 3, 21, 64)
    outputs = {}
    for padding in ("zeros", "earth"):
        model = tiny_fcn(backbone, zero_init_scores=False, padding=padding).eval()
        with torch.no_grad():
            outputs[padding] = model(x), model(x.roll(32, dims=-1))
    plain, rolled = outputs["earth"]
    assert torch.allclose(rolled, plain.roll(32, dims=-1), atol=1e-5)
    plain, rolled = outputs["zeros"]
    assert not torch.allclose(rolled, plain.roll(32, dims=-1), atol=1e-5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(variant="4s"), "unknown fcn variant"),
        (dict(backbone="resnet51"), "unknown fcn backbone"),
        (dict(variant="torchvision"), "needs a ResNet backbone"),
        (dict(aux=True), "no auxiliary head"),
    ],
)
def test_bad_configurations_say_what_to_change(arguments, message):
    with pytest.raises(ModelError, match=message):
        esszoo.create_model("fcn", in_channels=3, out_channels=4, **arguments)


def test_an_empty_grid_names_the_minimum():
    with pytest.raises(ModelError, match="at least 1x1"):
        tiny_fcn("vgg16")(torch.randn(1, 3, 0, 8))
