"""The Bayesian multilayer perceptron of Bayes by Backprop.

Paper: Blundell, Cornebise, Kavukcuoglu & Wierstra (2015), "Weight Uncertainty in Neural
Networks", ICML, arXiv:1505.05424. Every weight is a Gaussian q(w | mu, sigma), learnt by
minimising the variational free energy: the data's negative log-likelihood plus the KL
divergence of q from a prior (the layers and the loss term: `esszoo.layers.bayesian`).
A prediction is an average over draws of the weights, and their spread is the network's
uncertainty.

Paper to code (Section 5.1, MNIST): two hidden layers of 400, 800 or 1200 rectified
linear units and a softmax output over the 10 digits (here its logits); the prior is the
scale mixture of Eq. 7, pi N(0, sigma_1^2) + (1 - pi) N(0, sigma_2^2), searched over
-log sigma_1 in {0, 1, 2}, -log sigma_2 in {6, 7, 8}, pi in {1/4, 1/2, 3/4}: the defaults
take sigma_1 = 1, sigma_2 = e^-6, pi = 1/2. Weights are drawn once per minibatch
(``method="weights"``, Section 3.2).

Parameter count: Table 1 gives 2.4M weights for 1200 units (784-1200-1200-10: 2,395,210);
each has a mean and a scale here, 4,790,420 trainable parameters.

Departures: ``method="local"`` (local reparameterisation) and ``"flipout"`` draw per
sample with lower-variance gradients; ``depth``, ``width`` and ``activation`` as the zoo's
`mlp`, so that the Bayesian emulator and its deterministic twin differ only in the weights.
The means start from PyTorch's default initialisation (the paper gives none) and the
scales at softplus(rho) with rho = -5.
"""

from __future__ import annotations

import math

from torch import nn

from esszoo.layers import activation_layer
from esszoo.layers.bayesian import to_bayesian
from esszoo.registry import Paper, register_model


@register_model(
    family="bayesian",
    tasks=("regression",),
    paper=Paper(
        authors="Blundell, Cornebise, Kavukcuoglu & Wierstra",
        year=2015,
        title="Weight Uncertainty in Neural Networks",
        venue="ICML",
        arxiv="1505.05424",
    ),
    reference=dict(in_channels=784, out_channels=10, depth=2, width=1200),
    reference_params=4_790_420,
    reference_note="MNIST, 784-1200-1200-10 with ReLU (Section 5.1): the paper's Table 1 "
    "counts 2.4M weights (2,395,210); each has a mean and a scale parameter here",
    small=dict(in_channels=3, out_channels=2, depth=2, width=16),
    example_input=(4, 3),
)
def bnn_mlp(
    *,
    in_channels: int,
    out_channels: int,
    depth: int = 2,
    width: int = 1200,
    activation: str = "relu",
    method: str = "weights",
    prior_sigma: float = 1.0,
    prior_sigma_2: float | None = math.exp(-6),
    prior_pi: float = 0.5,
    rho: float = -5.0,
) -> nn.Module:
    """Bayes by Backprop MLP: Gaussian weights, a scale-mixture prior, draws per batch."""
    layers: list[nn.Module] = []
    features = in_channels
    for _ in range(depth):
        layers += [nn.Linear(features, width), activation_layer(activation)]
        features = width
    net = nn.Sequential(*layers, nn.Linear(features, out_channels))
    return to_bayesian(
        net,
        prior_sigma=prior_sigma,
        prior_sigma_2=prior_sigma_2,
        prior_pi=prior_pi,
        rho=rho,
        method=method,
    )
