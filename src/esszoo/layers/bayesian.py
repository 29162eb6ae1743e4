"""Bayes by Backprop: layers whose weights are distributions, and the switch that makes any
zoo model Bayesian.

Blundell, Cornebise, Kavukcuoglu & Wierstra (2015), "Weight Uncertainty in Neural
Networks", ICML, arXiv:1505.05424. Each weight has a Gaussian posterior q(w | theta) with
mean mu and standard deviation sigma = log(1 + exp(rho)) (Section 3.2, so that sigma stays
positive); training minimises the variational free energy (Eq. 1-2)

    F = KL[q(w | theta) || P(w)] - E_q[log P(D | w)],

whose minibatch form (Eq. 8) adds KL / N (N training samples) to the mean negative
log-likelihood of a batch: the task adds ``kl_weight * kl_divergence(net) / N`` to its
loss (`esszoo.tasks.base.Task`). The prior P(w) is a Gaussian N(0, sigma_p^2), whose KL is
closed-form, or the paper's scale mixture pi N(0, sigma_1^2) + (1 - pi) N(0, sigma_2^2)
(Eq. 7), whose KL is estimated from one draw of the weights, as the paper does.

How a forward pass draws from q (``method``):

- ``"weights"``: a draw of every weight per batch (the paper's Section 3.2): all samples
  of the batch share it, so the gradient's noise does not fall with the batch size.
- ``"local"``: the local reparameterisation trick (Kingma, Salimans & Welling 2015,
  arXiv:1506.02557): the pre-activations of a Gaussian layer are Gaussian, with mean
  x * mu and variance x^2 * sigma^2; a draw of them per sample, at the cost of two
  products.
- ``"flipout"`` (Wen, Vicol, Ba, Tran & Grosse 2018, arXiv:1803.04386): one draw of the
  weights' perturbation per batch, decorrelated between samples by random signs on the
  inputs and outputs: x * mu + ((x . s_in) * (sigma . eps)) . s_out.

In eval mode a layer uses the posterior means (a deterministic network, as exported);
`sampling(net)` makes it draw, for predictions with a spread.

`to_bayesian(net, ...)` converts the linear and convolutional layers of any network
(as bayesian-torch's dnn_to_bnn does): each posterior mean starts from the layer's own
weights (those of a trained network, for transfer, or its initialisation), and the layer
keeps its geometry and its padding (earth padding included). A partial convolution
(`esszoo.layers.partial_conv`) stays one: its window's rescaling and mask update are those
of Liu et al. (2018), the weights that act on the valid values are drawn, so the
inpainting networks become Bayesian as the others do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.partial_conv import _PartialConv

METHODS = ("local", "flipout", "weights")
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Prior:
    """P(w): N(0, sigma^2), or the scale mixture pi N(0, sigma^2) + (1 - pi) N(0, sigma_2^2)."""

    def __init__(self, sigma: float = 1.0, sigma_2: float | None = None, pi: float = 0.5):
        if sigma <= 0 or (sigma_2 is not None and sigma_2 <= 0) or not 0 < pi <= 1:
            raise ModelError(
                f"a prior needs positive scales and 0 < pi <= 1, got sigma {sigma}, "
                f"sigma_2 {sigma_2}, pi {pi}",
                "e.g. prior_sigma: 1.0, or the scale mixture prior_sigma: 1.0, "
                "prior_sigma_2: 0.0025, prior_pi: 0.5",
            )
        self.sigma, self.sigma_2, self.pi = sigma, sigma_2, pi

    @property
    def gaussian(self) -> bool:
        return self.sigma_2 is None

    def log_density(self, w: torch.Tensor) -> torch.Tensor:
        first = torch.distributions.Normal(0.0, self.sigma).log_prob(w)
        if self.gaussian:
            return first.sum()
        second = torch.distributions.Normal(0.0, self.sigma_2).log_prob(w)
        rest = math.log1p(-self.pi) if self.pi < 1 else -math.inf
        mixture = torch.logaddexp(first + math.log(self.pi), second + rest)
        return mixture.sum()


class BayesianParameter(nn.Module):
    """A tensor of weights as a Gaussian posterior: mean mu, sigma = softplus(rho)."""

    def __init__(self, mean: torch.Tensor, rho: float):
        super().__init__()
        self.mu = nn.Parameter(mean.detach().clone())
        self.rho = nn.Parameter(torch.full_like(mean, rho))

    @property
    def sigma(self) -> torch.Tensor:
        return F.softplus(self.rho)

    def draw(self) -> torch.Tensor:
        return self.mu + self.sigma * torch.randn_like(self.mu)

    def kl(self, prior: Prior) -> torch.Tensor:
        """KL[q || P]: closed form for a Gaussian prior; one draw's log q - log P otherwise."""
        sigma = self.sigma
        if prior.gaussian:
            ratio = (sigma / prior.sigma).square()
            return 0.5 * (ratio + (self.mu / prior.sigma).square() - 1 - ratio.log()).sum()
        w = self.mu + sigma * torch.randn_like(self.mu)
        posterior = torch.distributions.Normal(self.mu, sigma).log_prob(w).sum()
        return posterior - prior.log_density(w)


class BayesianLayer(nn.Module):
    """A linear or convolutional layer with Gaussian weights; `layer` gives its geometry
    (its `_conv_forward`, with any padding) and the starting means."""

    def __init__(self, layer: nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d, prior: Prior,
                 rho: float = -5.0, method: str = "local"):  # fmt: skip
        super().__init__()
        if method not in METHODS:
            raise ModelError(f"unknown Bayesian method '{method}'", f"choose one of {METHODS}")
        self.prior, self.method = prior, method
        self.weight = BayesianParameter(layer.weight, rho)
        self.bias = None if layer.bias is None else BayesianParameter(layer.bias, rho)
        del layer._parameters["weight"], layer._parameters["bias"]
        layer.bias = None
        self.geometry = layer  # holds no parameters now
        self.sample = False  # draw in eval mode too (`sampling`)

    def _apply_layer(
        self, x: torch.Tensor, weight: torch.Tensor, bias: Any, squared: bool = False
    ) -> torch.Tensor:
        if isinstance(self.geometry, nn.Linear):
            return F.linear(x, weight, bias)
        return self.geometry._conv_forward(x, weight, bias)

    def _add_bias(self, out: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return out + self._per_channel(bias, out)

    def _per_channel(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """`values`, (channels,) or (batch, channels), shaped to broadcast over `like`:
        its channels are last for a linear layer, second for a convolution."""
        spread = [1] * (like.dim() - 2)  # the dimensions between batch and channels, or after
        if isinstance(self.geometry, nn.Linear):
            return values if values.dim() == 1 else values.view(values.shape[0], *spread, -1)
        return values.view(*values.shape, *spread)

    def _signs(self, like: torch.Tensor, channels: int) -> torch.Tensor:
        """Flipout's random signs, one per sample and channel."""
        signs = torch.empty(like.shape[0], channels, device=like.device, dtype=like.dtype)
        return self._per_channel(signs.bernoulli_(0.5) * 2 - 1, like)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(self.geometry, _PartialConv):
            return self._draw(x, self._apply_layer, self._add_bias)
        # a partial convolution (Liu et al. 2018, Eq. 1-2): the weights act on the valid
        # values of each window, rescaled by sum(1) / sum(M); the bias only where valid
        padded, scale, valid = self.geometry.window(x, mask)
        scale = scale * valid

        def apply(inputs: torch.Tensor, weight: torch.Tensor, bias: Any, squared: bool = False):
            out = self.geometry._convolve(inputs, weight, None) * (
                scale.square() if squared else scale
            )
            return out if bias is None else add_bias(out, bias)

        def add_bias(out: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            return out + self._per_channel(bias, out) * valid

        return self._draw(padded, apply, add_bias), valid

    def _draw(self, x: torch.Tensor, apply: Any, add_bias: Any) -> torch.Tensor:
        """The layer's outputs, `apply(x, weight, bias, squared)` its map (`squared`: of the
        variances), with weights as `method` draws them (the means in eval mode)."""
        w, b = self.weight, self.bias
        if not (self.training or self.sample):  # the posterior means
            return apply(x, w.mu, None if b is None else b.mu)
        if self.method == "weights":  # one draw of the weights for the batch
            return apply(x, w.draw(), None if b is None else b.draw())
        if self.method == "local":  # a draw of each pre-activation
            mean = apply(x, w.mu, None if b is None else b.mu)
            variance = apply(
                x.square(), w.sigma.square(), None if b is None else b.sigma.square(), True
            )
            spread = torch.where(variance > 0, variance.clamp_min(1e-16).sqrt(), 0.0)
            return mean + spread * torch.randn_like(mean)
        # flipout: one perturbation of the weights, its signs flipped per sample; the bias
        # drawn per sample
        mean = apply(x, w.mu, None)
        perturbation = w.sigma * torch.randn_like(w.mu)
        flipped = apply(x * self._signs(x, w.mu.shape[1]), perturbation, None)
        out = mean + flipped * self._signs(mean, w.mu.shape[0])
        if b is None:
            return out
        noise = torch.randn(x.shape[0], len(b.mu), device=x.device, dtype=out.dtype)
        return add_bias(out, b.mu + b.sigma * noise)

    def kl(self) -> torch.Tensor:
        total = self.weight.kl(self.prior)
        return total if self.bias is None else total + self.bias.kl(self.prior)


def bayesian_layers(net: nn.Module) -> list[BayesianLayer]:
    return [m for m in net.modules() if isinstance(m, BayesianLayer)]


def kl_divergence(net: nn.Module) -> torch.Tensor:
    """KL[q(w) || P(w)] summed over the Bayesian layers of `net` (0 if it has none)."""
    layers = bayesian_layers(net)
    return torch.stack([layer.kl() for layer in layers]).sum() if layers else torch.zeros(())


def to_bayesian(
    net: nn.Module,
    *,
    prior_sigma: float = 1.0,
    prior_sigma_2: float | None = None,
    prior_pi: float = 0.5,
    rho: float = -5.0,
    method: str = "local",
) -> nn.Module:
    """`net` with each linear and convolutional layer (`nn.Linear`, `nn.Conv1d/2d/3d`,
    their earth-padded twins and partial convolutions) replaced in place by a
    `BayesianLayer` around it."""
    prior = Prior(prior_sigma, prior_sigma_2, prior_pi)
    converted = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if _convertible(child):
                bayesian = BayesianLayer(child, prior, rho, method).train(child.training)
                setattr(parent, name, bayesian)
                converted += 1
    if converted == 0:
        raise ModelError(
            f"{type(net).__name__} has no linear or convolutional layer to make Bayesian",
            "choose a model built of nn.Linear and nn.Conv layers",
        )
    return net


def _convertible(module: nn.Module) -> bool:
    """Plain linear and convolutional layers, convolutions that only change how they pad
    (`_conv_forward`), and partial convolutions (`esszoo.layers.partial_conv`)."""
    if type(module) is nn.Linear or isinstance(module, _PartialConv):
        return True
    return isinstance(module, CONVOLUTIONS) and type(module).forward in (
        c.forward for c in CONVOLUTIONS
    )


@contextmanager
def sampling(net: nn.Module) -> Iterator[nn.Module]:
    """Within the block, the Bayesian layers of `net` draw their weights in eval mode too,
    and its variational latents (`esszoo.layers.variational`) draw from their posterior."""
    from esszoo.layers.variational import GaussianLatent

    layers = bayesian_layers(net) + [m for m in net.modules() if isinstance(m, GaussianLatent)]
    for layer in layers:
        layer.sample = True
    try:
        yield net
    finally:
        for layer in layers:
            layer.sample = False
