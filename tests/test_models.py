"""The contract every registered model meets, in the manner of timm's tests/test_models.py.

Parametrised over `esszoo.list_models()`, so every model of every family added later is
held to it: small build, forward and backward, gradients everywhere, no NaN, batch of one
in eval mode, output shape, checkpoint round trip, seeded determinism, export, and the
card's reference parameter count (counted on the meta device, no weights allocated).
"""

from __future__ import annotations

import pytest
import torch

import esszoo
from esszoo.export import run_onnx, run_torchscript
from esszoo.predictor import Predictor

MODELS = esszoo.list_models()


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return esszoo.create_model(name, **esszoo.model_card(name).small)


def example(name: str, batch: int | None = None) -> torch.Tensor:
    shape = list(esszoo.model_card(name).example_input)
    if batch is not None:
        shape[0] = batch
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def output_channels(name: str) -> int:
    small = esszoo.model_card(name).small
    return small.get("out_channels", small.get("num_classes"))


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_reaches_every_parameter(name):
    model = build(name).train()
    output = model(example(name))
    assert output.shape[0] == example(name).shape[0]
    assert output.shape[1] == output_channels(name)
    assert torch.isfinite(output).all()
    output.square().mean().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{parameter_name} has a NaN gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} has a zero gradient"


@pytest.mark.parametrize("name", MODELS)
def test_batch_of_one_in_eval_mode(name):
    model = build(name).eval()
    with torch.no_grad():
        output = model(example(name, batch=1))
    assert output.shape[0] == 1 and torch.isfinite(output).all()


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_model_same_output(name):
    x = example(name)
    with torch.no_grad():
        first, second = build(name, seed=3).eval()(x), build(name, seed=3).eval()(x)
        other = build(name, seed=4).eval()(x)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_gives_the_same_output(name, tmp_path):
    model = build(name).eval()
    esszoo.save(model, tmp_path)
    loaded = esszoo.load(tmp_path)
    x = example(name)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_exports_reproduce_the_model(name, tmp_path):
    from esszoo.export import _onnx, _torchscript

    card = esszoo.model_card(name)
    model = build(name).eval()
    esszoo.save(model, tmp_path)
    predictor = esszoo.load(tmp_path)
    x = example(name)
    with torch.no_grad():
        expected = predictor(x)
    if "torchscript" in card.export:
        _torchscript(predictor, x, tmp_path / "model.pt")
        assert torch.allclose(run_torchscript(tmp_path / "model.pt", x), expected, atol=1e-5)
    if "onnx" in card.export:
        _onnx(predictor, x, tmp_path / "model.onnx")
        assert torch.allclose(run_onnx(tmp_path / "model.onnx", x), expected, atol=1e-5)
    assert set(card.export) <= {"torchscript", "onnx"}
    assert card.export or card.export_note, "a model that cannot export must say why"


@pytest.mark.parametrize("name", MODELS)
def test_reference_parameter_count_matches_the_card(name):
    card = esszoo.model_card(name)
    assert card.reference, f"{name} has no reference configuration on its card"
    assert esszoo.count_parameters(name, **card.reference) == card.reference_params


def test_predictor_normalizes_and_restores_units():
    net = esszoo.create_model("mlp", in_channels=2, out_channels=1, depth=1, width=4)
    predictor = Predictor(
        net, input_mean=[10.0, -5.0], input_std=[2.0, 4.0], output_mean=[100.0], output_std=[3.0]
    )
    x = torch.tensor([[12.0, -1.0]])
    with torch.no_grad():
        expected = net(torch.tensor([[1.0, 1.0]])) * 3.0 + 100.0
        assert torch.allclose(predictor(x), expected)
