"""Bayes by Backprop: each way of drawing gives the posterior's distribution of outputs, the
KL term is right, any zoo model converts (keeping its weights and its padding), and a
training run adds the KL term to its loss."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

import esszoo
from esszoo.errors import ModelError
from esszoo.layers.bayesian import (
    METHODS,
    BayesianLayer,
    BayesianParameter,
    Prior,
    kl_divergence,
    sampling,
    to_bayesian,
)
from esszoo.layers.padding import EarthConv2d


def layer(kind: str, method: str) -> BayesianLayer:
    torch.manual_seed(0)
    plain = nn.Linear(3, 2) if kind == "linear" else nn.Conv2d(3, 2, 3, padding=1)
    converted = BayesianLayer(plain, Prior(1.0), rho=-1.0, method=method)
    with torch.no_grad():
        converted.weight.rho.uniform_(-2.0, 0.0)  # scales that differ weight by weight
    return converted


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("method", METHODS)
def test_each_method_draws_outputs_with_the_posteriors_mean_and_variance(kind, method):
    bayes = layer(kind, method).train()
    torch.manual_seed(1)
    x = torch.randn(1, 3) if kind == "linear" else torch.randn(1, 3, 4, 5)
    draws = 4000
    with torch.no_grad():
        # "weights" draws once per batch, "flipout" one perturbation per batch (the signs
        # per sample): batches of one and of ten; "local" draws per sample
        batch = {"weights": 1, "flipout": 10, "local": draws}[method]
        repeated = x.expand(batch, *x.shape[1:])
        outputs = torch.cat([bayes(repeated) for _ in range(draws // batch)])
        w, b = bayes.weight, bayes.bias
        mean = bayes._apply_layer(x, w.mu, b.mu)
        variance = bayes._apply_layer(x.square(), w.sigma.square(), b.sigma.square())
    assert torch.allclose(outputs.mean(0), mean[0], atol=4 * (variance[0] / draws).sqrt().max())
    assert torch.allclose(outputs.var(0), variance[0], rtol=0.15)


def test_local_and_flipout_draw_per_sample_weights_draw_per_batch():
    x = torch.ones(2, 3)
    with torch.no_grad():
        for method in METHODS:
            first, second = layer("linear", method).train()(x)
            assert torch.equal(first, second) == (method == "weights")


def test_eval_mode_uses_the_means_and_sampling_draws():
    bayes = layer("conv", "flipout").eval()
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        assert torch.equal(bayes(x), bayes(x))
        with sampling(bayes):
            assert not torch.equal(bayes(x), bayes(x))
        assert torch.equal(bayes(x), bayes(x))


def test_gaussian_kl_is_the_closed_form_and_the_mixture_estimate_agrees():
    bayes = layer("linear", "local")
    q = torch.distributions.Normal(
        torch.cat([bayes.weight.mu.flatten(), bayes.bias.mu]),
        torch.cat([bayes.weight.sigma.flatten(), bayes.bias.sigma]),
    )
    exact = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum()
    assert torch.allclose(bayes.kl(), exact)
    # a "mixture" of one Gaussian (pi = 1) is estimated from a draw: over many copies of
    # the posterior, one draw each, the estimate is the KL
    copies = 20000
    repeated = BayesianParameter(bayes.weight.mu.detach().repeat(copies, 1), rho=0.0)
    with torch.no_grad():
        repeated.rho.copy_(bayes.weight.rho.repeat(copies, 1))
        estimate = repeated.kl(Prior(1.0, sigma_2=0.01, pi=1.0)) / copies
        assert torch.allclose(estimate, bayes.weight.kl(Prior(1.0)), rtol=0.02)


def test_the_scale_mixture_prior_has_the_density_of_eq7():
    prior = Prior(1.0, sigma_2=math.exp(-6), pi=0.25)
    w = torch.tensor([0.0, 0.01, 1.5])
    density = 0.25 * torch.distributions.Normal(0, 1.0).log_prob(w).exp() + 0.75 * (
        torch.distributions.Normal(0, math.exp(-6)).log_prob(w).exp()
    )
    assert torch.allclose(prior.log_density(w), density.log().sum())


def test_a_converted_model_keeps_its_weights_as_means_and_its_earth_padding():
    torch.manual_seed(0)
    small = esszoo.model_card("unet").small
    plain = esszoo.create_model("unet", **small, padding="earth").eval()
    x = torch.randn(1, small["in_channels"], 32, 48)
    with torch.no_grad():
        expected = plain(x)
        convolutions = sum(isinstance(m, nn.Conv2d) for m in plain.modules())
        earth = sum(isinstance(m, EarthConv2d) for m in plain.modules())
        bayes = to_bayesian(plain, method="flipout")
        assert torch.allclose(bayes(x), expected, atol=1e-6)
    layers = [m for m in bayes.modules() if isinstance(m, BayesianLayer)]
    transposed = sum(isinstance(m, nn.ConvTranspose2d) for m in bayes.modules())
    assert len(layers) == convolutions  # every convolution; transposed ones stay as they are
    assert sum(isinstance(m.geometry, EarthConv2d) for m in layers) == earth > 0
    assert transposed > 0
    assert all(not list(m.geometry.parameters()) for m in layers)  # the weights moved


@pytest.mark.parametrize("method", METHODS)
def test_a_partial_convolution_draws_its_valid_values_products_and_keeps_its_mask(method):
    from esszoo.layers import PartialConv2d

    torch.manual_seed(0)
    plain = PartialConv2d(2, 3, 3, padding=1)
    x, mask = torch.randn(1, 2, 5, 6), (torch.rand(1, 1, 5, 6) > 0.5).float()
    mask[..., :3, :3] = 0  # a hole wider than the window: outputs there stay missing
    with torch.no_grad():
        expected, expected_mask = plain(x, mask)
        bayes = BayesianLayer(plain, Prior(1.0), rho=-1.0, method=method).eval()
        mean, new_mask = bayes(x, mask)
        assert torch.allclose(mean, expected, atol=1e-6) and torch.equal(new_mask, expected_mask)
        assert not new_mask.all()
        bayes.train()
        draws = 8000
        batch = {"weights": 1, "flipout": 10, "local": draws}[method]
        repeated = (x.expand(batch, -1, -1, -1), mask.expand(batch, -1, -1, -1))
        outputs = torch.cat([bayes(*repeated)[0] for _ in range(draws // batch)])
        padded, scale, valid = plain.window(x, mask)
        w, b = bayes.weight, bayes.bias
        variance = plain._convolve(padded.square(), w.sigma.square(), None) * (scale * valid) ** 2
        variance = variance + b.sigma.square().view(1, -1, 1, 1) * valid
    assert torch.all(outputs[:, :, ~expected_mask[0, 0].bool()] == 0)  # nothing where missing
    seen = expected_mask[0, 0].bool()
    spread = (variance[0] / draws).sqrt().max()
    assert torch.allclose(outputs.mean(0)[:, seen], expected[0][:, seen], atol=4 * spread)
    # flipout's draws of a batch share a perturbation: fewer independent ones
    assert torch.allclose(outputs.var(0)[:, seen], variance[0][:, seen], rtol=0.2)


def test_the_inpainting_network_converts_with_its_partial_convolutions():
    torch.manual_seed(0)
    small = esszoo.model_card("pconv_unet").small
    plain = esszoo.create_model("pconv_unet", **small, padding="earth").eval()
    x = torch.randn(2, small["in_channels"], 32, 64)
    mask = (torch.rand(2, 1, 32, 64) > 0.3).float()
    with torch.no_grad():
        expected = plain(x, mask)
        partial = sum(type(m).__name__ == "PartialConv2d" for m in plain.modules())
        bayes = to_bayesian(plain, method="local")
        assert torch.allclose(bayes(x, mask), expected, atol=1e-5)
        with sampling(bayes):
            assert not torch.allclose(bayes(x, mask), expected, atol=1e-5)
    layers = [m for m in bayes.modules() if isinstance(m, BayesianLayer)]
    assert sum(type(m.geometry).__name__ == "PartialConv2d" for m in layers) == partial > 0


def test_bad_bayesian_settings_get_one_clear_line():
    with pytest.raises(ModelError, match="not prior"):
        esszoo.create_model("mlp", in_channels=3, out_channels=1, bayesian={"prior": 1.0})
    with pytest.raises(ModelError, match="unknown Bayesian method 'mcmc'"):
        esszoo.create_model("mlp", in_channels=3, out_channels=1, bayesian={"method": "mcmc"})
    with pytest.raises(ModelError, match="positive scales"):
        esszoo.create_model("mlp", in_channels=3, out_channels=1, bayesian={"prior_sigma": 0})
    with pytest.raises(ModelError, match="no linear or convolutional layer"):
        to_bayesian(nn.Sequential(nn.ReLU()))


def test_a_bayesian_zoo_model_round_trips_through_its_checkpoint(tmp_path):
    model = esszoo.create_model(
        "resnet18", in_channels=2, num_classes=3, bayesian={"method": "local"}
    ).eval()
    esszoo.save(model, tmp_path)
    loaded = esszoo.load(tmp_path)
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert any(name.endswith("weight.rho") for name in loaded.net.state_dict())


def test_training_a_bayesian_emulator_adds_the_kl_term(tmp_path):
    from esszoo.training import train
    from tests.conftest import tiny_recipe_dict, write_recipe

    losses = {}
    for weight in (0.0, 1.0):
        recipe = tiny_recipe_dict(
            tmp_path / "runs",
            name=f"bayes{weight:g}",
            **{
                "model": {"name": "bnn_mlp", "depth": 2, "width": 16, "method": "local"},
                "task.kl_weight": weight,
                "trainer.max_epochs": 1,
            },
        )
        run_dir = train(write_recipe(tmp_path / f"b{weight:g}.yaml", recipe))
        with open(run_dir / "metrics.csv") as handle:
            (row,) = csv.DictReader(handle)
        losses[weight] = float(row["train_loss"])
    net = esszoo.load(run_dir).net
    samples = 0.7 * 8760  # about the TMY3 training hours
    kl = float(kl_divergence(net)) / samples
    # the same seed trains alike until the KL term pulls: the difference is about its size
    assert losses[1.0] - losses[0.0] > 0.3 * kl > 0
