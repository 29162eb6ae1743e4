"""Facts of the classic CNN papers: LeNet-5 (1998), AlexNet (2012), VGG (2015).

Big networks are built on the meta device (shapes and counts, no weights allocated).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import esszoo
from esszoo.errors import ModelError
from esszoo.models.cnn.alexnet import ResponseNorm
from esszoo.models.cnn.lenet import TABLE_I, Squash


def on_meta(name: str, **arguments) -> nn.Module:
    with torch.device("meta"):
        return esszoo.create_model(name, **arguments)


def lenet(**arguments) -> nn.Module:
    torch.manual_seed(0)
    return esszoo.create_model("lenet5", in_channels=1, num_classes=10, **arguments)


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# LeNet-5


def test_lenet_layers_have_the_papers_parameter_counts():
    model = lenet()
    counts = {
        name: trainable(getattr(model, name)) for name in ("c1", "s2", "c3", "s4", "c5", "f6")
    }
    assert counts == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    assert trainable(model) == 60_000


def test_lenet_maps_have_the_sizes_of_figure_2():
    model = lenet()
    sizes = {}
    for name in ("c1", "s2", "c3", "s4", "c5"):
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: sizes.__setitem__(name, output.shape[1:])
        )
    model(torch.randn(1, 1, 32, 32))
    assert sizes == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
    }


def test_table_i_follows_the_papers_rule():
    contiguous = [{(start + k) % 6 for k in range(n)} for n in (3, 4) for start in range(6)]
    assert [set(inputs) for inputs in TABLE_I[:12]] == contiguous
    assert all(len(inputs) == 4 and set(inputs) not in contiguous for inputs in TABLE_I[12:15])
    assert TABLE_I[15] == (0, 1, 2, 3, 4, 5)
    # every row of Table I holds ten crosses
    assert [sum(j in inputs for inputs in TABLE_I) for j in range(6)] == [10] * 6


def test_c3_map_depends_only_on_the_s2_maps_of_table_i():
    c3 = lenet().c3
    x = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        before = c3(x)
        for s2_map in range(6):
            bumped = x.clone()
            bumped[:, s2_map] += 1.0
            changed = (c3(bumped) - before).abs().amax(dim=(0, 2, 3)) > 0
            connected = torch.tensor([s2_map in inputs for inputs in TABLE_I])
            assert torch.equal(changed, connected), f"S2 map {s2_map}"


def test_subsampling_is_a_scaled_sum_of_each_2x2_block_plus_a_bias():
    s2 = lenet().s2
    with torch.no_grad():
        s2.coefficient.copy_(torch.arange(1.0, 7.0))
        s2.bias.fill_(0.5)
        x = torch.ones(1, 6, 4, 4)
        assert torch.allclose(s2(x)[0, :, 0, 0], 4 * torch.arange(1.0, 7.0) + 0.5)


def test_squashing_function_maps_one_to_one():
    squash = Squash()
    assert squash.amplitude == 1.7159 and squash.slope == pytest.approx(2 / 3)
    assert torch.allclose(squash(torch.tensor([-1.0, 1.0])), torch.tensor([-1.0, 1.0]), atol=1e-4)


def test_rbf_weights_are_fixed_codes_in_buffers_not_parameters():
    first, second = lenet(), esszoo.create_model("lenet5", in_channels=1, num_classes=10)
    codes = first.output.codes
    assert codes.shape == (10, 84) and set(codes.unique().tolist()) == {-1.0, 1.0}
    assert "output.codes" in first.state_dict()
    assert not list(first.output.parameters())
    assert torch.equal(codes, second.output.codes), "the codes do not depend on the torch seed"
    assert len({tuple(code.tolist()) for code in codes}) == 10


def test_rbf_logit_is_minus_the_squared_distance_to_each_code():
    rbf = lenet().output
    state = rbf.codes[3].unsqueeze(0)
    logits = rbf(state)
    expected = torch.stack([-(state[0] - code).square().sum() for code in rbf.codes])
    assert torch.equal(logits[0], expected) and logits.argmax() == 3 and logits[0, 3] == 0


def test_lenet_linear_output_is_trainable():
    model = lenet(output="linear")
    assert trainable(model) == 60_000 + 84 * 10 + 10
    with pytest.raises(ModelError, match="no output 'softmax'"):
        lenet(output="softmax")


def test_lenet_conv_padding_keeps_each_convolution_at_its_input_size():
    model = lenet(conv_padding=2)
    sizes = {}
    model.c5.register_forward_hook(lambda m, i, output: sizes.update(c5=output.shape))
    model(torch.randn(1, 1, 32, 32))
    assert sizes["c5"] == (1, 120, 8, 8)


# AlexNet


def test_alexnet_paper_layers_have_the_papers_sizes():
    model = on_meta("alexnet", in_channels=3, num_classes=1000)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [trainable(c) for c in convs] == [34_944, 307_456, 885_120, 663_936, 442_624]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert sum(isinstance(m, ResponseNorm) for m in model.features) == 2
    assert model.features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 256, 6, 6)


def test_alexnet_torchvision_variant_has_61_100_840_parameters():
    assert (
        esszoo.count_parameters("alexnet", in_channels=3, num_classes=1000, variant="torchvision")
        == 61_100_840
    )


def test_alexnet_torchvision_variant_has_torchvision_names_and_shapes():
    model = on_meta("alexnet", in_channels=3, num_classes=1000, variant="torchvision")
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters() if "weight" in name}
    assert shapes == {
        "features.0.weight": (64, 3, 11, 11),
        "features.3.weight": (192, 64, 5, 5),
        "features.6.weight": (384, 192, 3, 3),
        "features.8.weight": (256, 384, 3, 3),
        "features.10.weight": (256, 256, 3, 3),
        "classifier.1.weight": (4096, 9216),
        "classifier.4.weight": (4096, 4096),
        "classifier.6.weight": (1000, 4096),
    }
    assert not any(isinstance(m, ResponseNorm) for m in model.modules())


def test_response_norm_is_the_papers_formula_within_each_tower():
    torch.manual_seed(0)
    a = torch.randn(2, 12, 3, 3)
    k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
    expected = torch.empty_like(a)
    for tower in (range(0, 6), range(6, 12)):
        for i in tower:
            window = [j for j in tower if abs(j - i) <= n // 2]
            expected[:, i] = a[:, i] / (k + alpha * a[:, window].square().sum(1)) ** beta
    assert torch.allclose(ResponseNorm(towers=2)(a), expected, atol=1e-6)


def test_alexnet_rejects_channels_the_towers_cannot_split():
    with pytest.raises(ModelError, match="five channel counts"):
        esszoo.create_model("alexnet", in_channels=3, num_classes=10, channels=(9, 16, 24, 24, 16))
    with pytest.raises(ModelError, match="no variant"):
        esszoo.create_model("alexnet", in_channels=3, num_classes=10, variant="caffe")


# VGG


@pytest.mark.parametrize(
    "name, convolutions",
    [("vgg11", [1, 1, 2, 2, 2]), ("vgg13", [2, 2, 2, 2, 2]), ("vgg16", [2, 2, 3, 3, 3]),
     ("vgg19", [2, 2, 4, 4, 4])],
)  # fmt: skip
@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg_stages_follow_table_1(name, convolutions, batch_norm):
    name = name + ("_bn" if batch_norm else "")
    model = on_meta(name, in_channels=3, num_classes=1000)
    stages, widths = [0], []
    for module in model.features:
        if isinstance(module, nn.Conv2d):
            stages[-1] += 1
            widths.append(module.out_channels)
            assert module.kernel_size == (3, 3) and module.padding == (1, 1)
        elif isinstance(module, nn.MaxPool2d):
            stages.append(0)
    assert stages[:-1] == convolutions
    assert sorted(set(widths)) == [64, 128, 256, 512]
    weight_layers = sum(convolutions) + sum(isinstance(m, nn.Linear) for m in model.classifier)
    assert name.startswith(f"vgg{weight_layers}")
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.features)
    assert norms == (sum(convolutions) if batch_norm else 0)


def test_vgg16_has_torchvision_layer_names():
    model = on_meta("vgg16", in_channels=3, num_classes=1000)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert model.classifier[0].in_features == 512 * 7 * 7
    assert model.features(torch.empty(1, 3, 224, 224, device="meta")).shape == (1, 512, 7, 7)


def test_vgg_width_knobs_scale_the_stages():
    model = esszoo.create_model("vgg11", in_channels=2, num_classes=3, width=4, classifier_width=8)
    widths = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert widths == [4, 8, 16, 16, 32, 32, 32, 32]
    assert model.classifier[-1].out_features == 3


# every model: the minimum on the card is the true one


@pytest.mark.parametrize(
    "name, arguments",
    [("alexnet", dict(channels=(8, 16, 24, 24, 16), classifier_width=8)),
     ("vgg11", dict(width=2, classifier_width=8))],
)  # fmt: skip
def test_feature_extractor_fails_just_below_the_card_minimum(name, arguments):
    model = esszoo.create_model(name, in_channels=3, num_classes=2, **arguments)
    height, width = esszoo.model_card(name).min_size
    model.features(torch.randn(1, 3, height, width))
    with pytest.raises(RuntimeError):
        model.features(torch.randn(1, 3, height - 1, width))


def test_lenet_layers_fail_just_below_32x32():
    model = lenet()
    layers = [model.c1, model.s2, model.c3, model.s4, model.c5]
    x = torch.randn(1, 1, 31, 32)
    with pytest.raises(RuntimeError):
        for layer in layers:
            x = layer(x)
