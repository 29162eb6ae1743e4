"""GoogLeNet: the paper's network and torchvision's, their counts, and the auxiliary heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import esszoo
from esszoo.errors import ModelError
from esszoo.models.cnn.googlenet import AUX_LOSS_WEIGHT, GoogLeNet, Inception

REFERENCE = dict(in_channels=3, num_classes=1000)


def small(**kwargs) -> GoogLeNet:
    torch.manual_seed(0)
    return esszoo.create_model("googlenet", in_channels=3, num_classes=5, **kwargs)


def inceptions(model: nn.Module) -> list[Inception]:
    return [m for m in model.modules() if isinstance(m, Inception)]


def test_paper_network_has_6998552_parameters():
    assert esszoo.count_parameters("googlenet", **REFERENCE) == 6_998_552


def test_torchvision_variant_has_torchvisions_6624904_parameters():
    assert esszoo.count_parameters("googlenet", **REFERENCE, variant="torchvision") == 6_624_904


@pytest.mark.parametrize("variant, aux_params", [("paper", 6_379_728), ("torchvision", 6_379_984)])
def test_auxiliary_heads_add_their_parameters(variant, aux_params):
    without = esszoo.count_parameters("googlenet", **REFERENCE, variant=variant)
    with_aux = esszoo.count_parameters("googlenet", **REFERENCE, variant=variant, aux_heads=True)
    assert with_aux - without == aux_params


def test_torchvision_variant_with_aux_heads_matches_torchvisions_13004888():
    count = esszoo.count_parameters("googlenet", **REFERENCE, variant="torchvision", aux_heads=True)
    assert count == 13_004_888


def test_train_mode_with_aux_heads_returns_main_and_two_auxiliary_logits():
    model = small(aux_heads=True, width_multiplier=0.25).train()
    outputs = model(torch.randn(2, 3, 31, 40))
    assert isinstance(outputs, tuple) and len(outputs) == 3
    assert all(o.shape == (2, 5) for o in outputs)


def test_eval_mode_with_aux_heads_returns_main_logits_only():
    model = small(aux_heads=True, width_multiplier=0.25).eval()
    with torch.no_grad():
        output = model(torch.randn(2, 3, 31, 40))
    assert isinstance(output, torch.Tensor) and output.shape == (2, 5)


def test_train_mode_without_aux_heads_returns_a_tensor():
    model = small(width_multiplier=0.25).train()
    assert isinstance(model(torch.randn(2, 3, 31, 31)), torch.Tensor)


def test_aux_loss_weight_is_the_papers():
    assert AUX_LOSS_WEIGHT == 0.3


@pytest.mark.parametrize("variant, kernel", [("paper", (5, 5)), ("torchvision", (3, 3))])
def test_third_branch_is_5x5_in_the_paper_and_3x3_in_torchvision(variant, kernel):
    with torch.device("meta"):
        model = GoogLeNet(**REFERENCE, variant=variant)
    modules = inceptions(model)
    assert len(modules) == 9
    assert all(m.branch5x5[1].conv.kernel_size == kernel for m in modules)
    assert all(m.branch3x3[1].conv.kernel_size == (3, 3) for m in modules)


def test_paper_variant_has_biases_and_lrn_but_no_batch_norm():
    with torch.device("meta"):
        model = GoogLeNet(**REFERENCE)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.modules()) == 2
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.dropout.p == 0.4


def test_torchvision_variant_has_batch_norm_and_no_lrn():
    with torch.device("meta"):
        model = GoogLeNet(**REFERENCE, variant="torchvision")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == len(convs) == 57
    assert all(n.eps == 0.001 for n in norms) and all(c.bias is None for c in convs)
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
    assert model.dropout.p == 0.2


def test_table_1_grids_at_224():
    model = small(width_multiplier=0.25).eval()
    grids = {}
    for name in ("stem", "pool3", "pool4", "inception5b"):
        getattr(model, name).register_forward_hook(
            lambda module, args, out, name=name: grids.update({name: tuple(out.shape[-2:])})
        )
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert grids == {"stem": (28, 28), "pool3": (14, 14), "pool4": (7, 7), "inception5b": (7, 7)}


def test_aux_head_at_224_is_the_papers_5x5_stride_3_average_pool():
    model = small(aux_heads=True, width_multiplier=0.25).eval()
    head = model.aux1
    x = torch.rand(1, model.inception4a.out_channels, 14, 14)
    pooled = F.avg_pool2d(x, 5, stride=3)  # (1, C, 4, 4)
    expected = head.classifier(F.relu(head.fc(head.reduce(pooled).flatten(1))))
    with torch.no_grad():
        assert torch.allclose(head(x), expected)


def test_grid_below_the_minimum_raises_a_clear_error():
    model = small(width_multiplier=0.25)
    with pytest.raises(ModelError, match="at least 31x31"):
        model(torch.randn(1, 3, 30, 64))


def test_earth_padding_works_down_to_the_minimum_grid():
    model = small(width_multiplier=0.25, padding="earth").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 31, 31)).shape == (1, 5)


def test_unknown_variant_is_a_model_error():
    with pytest.raises(ModelError, match="no variant 'inception_v3'"):
        small(variant="inception_v3")
