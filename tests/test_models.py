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
from esszoo.errors import ModelError
from esszoo.export import run_onnx, run_torchscript
from esszoo.layers.padding import EarthConv2d, EarthConv3d
from esszoo.predictor import Predictor

MODELS = esszoo.list_models()
FIELD_MODELS = [name for name in MODELS if len(esszoo.model_card(name).example_input) == 4]
VOLUME_MODELS = [name for name in MODELS if len(esszoo.model_card(name).example_input) == 5]
# grids of real data sets: OSTIA (18 x 432), 2.5-degree reanalysis (73 x 144), RADOLAN (190 x 228)
EARTH_GRIDS = [(18, 432), (73, 144), (190, 228)]


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return esszoo.create_model(name, **esszoo.model_card(name).small)


def example(name: str, batch: int | None = None, shape: tuple[int, ...] | None = None) -> tuple:
    """The model's inputs: x, and for models that take one, a validity mask with holes."""
    card = esszoo.model_card(name)
    shape = list(shape or card.example_input)
    if batch is not None:
        shape[0] = batch
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=generator)
    if "mask" not in card.inputs:
        return (x,)
    mask = (torch.rand(*shape, generator=generator) > 0.3).float()  # 30% missing
    return (x * mask, mask)


def output_channels(name: str) -> int:
    small = esszoo.model_card(name).small
    return small.get("out_channels", small.get("num_classes", small.get("channels")))


DENSE_TASKS = ("segmentation", "translation", "inpainting", "compression")


def expected_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    """What a model of this card's task returns for input `x`."""
    tasks = esszoo.model_card(name).tasks
    if "forecasting" in tasks:  # the next steps of a series: (batch, horizon, channels)
        return (x.shape[0], esszoo.model_card(name).small["horizon"], output_channels(name))
    if "z" in esszoo.model_card(name).inputs:  # a generator: fields from noise
        return (x.shape[0], output_channels(name), *esszoo.model_card(name).small["grid"])
    if "detection" in tasks:  # a set of objects: (batch, queries, classes + no-object + box)
        small = esszoo.model_card(name).small
        return (x.shape[0], small["queries"], small["num_classes"] + 1 + 4)
    dense = any(t in tasks for t in DENSE_TASKS)
    if dense:
        return (x.shape[0], output_channels(name), *x.shape[2:])
    return (x.shape[0], output_channels(name))


# Parameters that the architecture itself leaves without a gradient, as its paper's code
# does: DETR's decoder starts from zeros, so the first layer's self-attention values are its
# bias alone (the official code's in_proj has the same dead slice).
INERT = {"detr": {"decoder.0.attention.value.weight"}}


def main_output(output: torch.Tensor | tuple) -> torch.Tensor:
    """Models with auxiliary heads return (main, *aux) in training mode."""
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_reaches_every_parameter(name):
    model = build(name).train()
    inputs = example(name)
    x = inputs[0]
    outputs = model(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    assert outputs[0].shape == expected_shape(name, x)
    assert all(torch.isfinite(o).all() for o in outputs)
    loss = sum(o.square().mean() for o in outputs)
    if hasattr(model, "discriminate"):  # a GAN's discriminator, through its judgement
        loss = loss + model.discriminate(outputs[0]).square().mean()
    loss.backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained, "nothing trains"
    for parameter_name, parameter in trained:  # a model may freeze some (DETR's backbone stem)
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{parameter_name} has a NaN gradient"
        if parameter_name not in INERT.get(name, ()):
            assert parameter.grad.abs().sum() > 0, f"{parameter_name} has a zero gradient"
    for parameter_name in INERT.get(name, ()):  # and the claim holds
        assert model.get_parameter(parameter_name).grad.abs().sum() == 0


@pytest.mark.parametrize("name", MODELS)
def test_batch_of_one_in_eval_mode(name):
    model = build(name).eval()
    inputs = example(name, batch=1)
    with torch.no_grad():
        output = model(*inputs)
    assert isinstance(output, torch.Tensor), "eval mode returns the main output only"
    assert output.shape == expected_shape(name, inputs[0]) and torch.isfinite(output).all()


@pytest.mark.parametrize("name", MODELS)
def test_same_seed_same_model_same_output(name):
    x = example(name)
    with torch.no_grad():
        first, second = build(name, seed=3).eval()(*x), build(name, seed=3).eval()(*x)
        other = build(name, seed=4).eval()(*x)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_gives_the_same_output(name, tmp_path):
    model = build(name).eval()
    esszoo.save(model, tmp_path)
    loaded = esszoo.load(tmp_path)
    x = example(name)
    with torch.no_grad():
        assert torch.equal(loaded(*x), model(*x))


@pytest.mark.parametrize("name", MODELS)
def test_exports_reproduce_the_model(name, tmp_path):
    from esszoo.export import _onnx, _torchscript

    card = esszoo.model_card(name)
    model = build(name).eval()
    esszoo.save(model, tmp_path)
    predictor = esszoo.load(tmp_path)
    x = example(name)
    with torch.no_grad():
        expected = predictor(*x)
    if "torchscript" in card.export:
        _torchscript(predictor, predictor.description, x, tmp_path / "model.pt")
        assert torch.allclose(run_torchscript(tmp_path / "model.pt", x), expected, atol=1e-5)
    if "onnx" in card.export:
        _onnx(predictor, predictor.description, x, tmp_path / "model.onnx")
        assert torch.allclose(run_onnx(tmp_path / "model.onnx", x), expected, atol=1e-5)
    assert set(card.export) <= {"torchscript", "onnx"}
    assert card.export or card.export_note, "a model that cannot export must say why"


@pytest.mark.parametrize("name", MODELS)
def test_reference_parameter_count_matches_the_card(name):
    card = esszoo.model_card(name)
    assert card.reference, f"{name} has no reference configuration on its card"
    assert esszoo.count_parameters(name, **card.reference) == card.reference_params


@pytest.mark.parametrize("name", FIELD_MODELS)
def test_runs_on_earth_grids_or_names_its_minimum(name):
    card = esszoo.model_card(name)
    assert len(card.min_size) == 2, f"{name}: a field model's card gives its min_size"
    model = build(name).eval()
    channels = card.example_input[1]
    for grid in EARTH_GRIDS:
        inputs = example(name, shape=(1, channels, *grid))
        if grid[0] >= card.min_size[0] and grid[1] >= card.min_size[1]:
            with torch.no_grad():
                assert model(*inputs).shape == expected_shape(name, inputs[0])
        else:
            with pytest.raises(ModelError, match="at least"):
                model(*inputs)
    too_small = example(name, shape=(1, channels, card.min_size[0] - 1, card.min_size[1]))
    with pytest.raises(ModelError, match=f"at least {card.min_size[0]}x{card.min_size[1]}"):
        model(*too_small)
    with torch.no_grad():
        smallest = example(name, shape=(1, channels, *card.min_size))
        assert model(*smallest).shape == expected_shape(name, smallest[0])


@pytest.mark.parametrize("name", VOLUME_MODELS)
def test_volume_models_take_odd_grids_or_name_their_minimum(name):
    card = esszoo.model_card(name)
    assert len(card.min_size) == 3, f"{name}: a volume model's card gives its min_size"
    model = build(name).eval()
    channels = card.example_input[1]
    for grid in [card.min_size, (card.min_size[0] + 3, 19, 37)]:
        inputs = example(name, shape=(1, channels, *grid))
        with torch.no_grad():
            assert model(*inputs).shape == expected_shape(name, inputs[0])
    too_small = example(name, shape=(1, channels, card.min_size[0] - 1, *card.min_size[1:]))
    with pytest.raises(ModelError, match="at least"):
        model(*too_small)


@pytest.mark.parametrize("name", FIELD_MODELS + VOLUME_MODELS)
def test_earth_padding_keeps_the_weights_and_wraps_longitude(name):
    zeros = build(name)
    earth = esszoo.create_model(name, **esszoo.model_card(name).small, padding="earth")
    assert list(earth.state_dict()) == list(zeros.state_dict())
    convolutions = (torch.nn.Conv2d, torch.nn.Conv3d)
    padded = [m for m in zeros.modules() if isinstance(m, convolutions) and any(m.padding)]
    # convolutions turn into earth twins; partial convolutions switch their own padding
    wrapped = [
        m
        for m in earth.modules()
        if isinstance(m, EarthConv2d | EarthConv3d) or getattr(m, "earth", False)
    ]
    assert len(wrapped) == len(padded)
    earth.load_state_dict(zeros.state_dict())
    x = example(name, batch=1)
    with torch.no_grad():
        same = torch.allclose(earth.eval()(*x), zeros.eval()(*x))
    # a network without padded convolutions (LeNet-5 as published) sees no edge to wrap
    assert same == (not padded)


def test_predictor_normalizes_and_restores_units():
    net = esszoo.create_model("mlp", in_channels=2, out_channels=1, depth=1, width=4)
    predictor = Predictor(
        net, input_mean=[10.0, -5.0], input_std=[2.0, 4.0], output_mean=[100.0], output_std=[3.0]
    )
    x = torch.tensor([[12.0, -1.0]])
    with torch.no_grad():
        expected = net(torch.tensor([[1.0, 1.0]])) * 3.0 + 100.0
        assert torch.allclose(predictor(x), expected)


def test_an_export_is_refused_where_it_strays_beyond_float32_noise():
    from esszoo.export import ExportError, _check

    expected = torch.tensor([[250.0, 0.0], [300.0, 2.0]])  # a flux and a heating rate
    # float32 noise: 1e-4 of the value, or of the channel's size where the value is zero
    assert _check(expected + torch.tensor([[0.02, 8e-5], [0.02, 1e-4]]), expected, "onnx")
    with pytest.raises(ExportError, match="differs from esszoo"):
        _check(expected + torch.tensor([[0.0, 0.01], [0.0, 0.0]]), expected, "onnx")
