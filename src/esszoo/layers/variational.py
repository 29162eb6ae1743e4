"""A variational latent: a Gaussian posterior q(z | x), drawn by reparameterisation.

Kingma & Welling (2014), "Auto-encoding variational Bayes", ICLR, arXiv:1312.6114: an
encoder gives the mean and standard deviation of q(z | x) = N(mu, sigma^2); in training
z = mu + sigma * eps with eps ~ N(0, I), so that the draw is differentiable in mu and
sigma (Section 2.4), and the evidence lower bound adds the KL divergence of q from the
prior N(0, I), in closed form (Appendix B):

    KL = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2).

Out of training the latent is its mean (a deterministic prediction); `sampling()`
(`esszoo.layers.bayesian`) makes it draw, as it makes Bayesian layers draw, so that the
uncertainty switch samples the posterior. Each draw keeps its KL per sample, averaged over
the batch, in ``kl``; the task adds ``task.kl_weight`` times it, per target value, to the
loss (`latent_kl`), which then is the negative evidence lower bound.
"""

from __future__ import annotations

import torch
from torch import nn


class GaussianLatent(nn.Module):
    """z from q(z | x) = N(mean, spread^2): a draw in training (or under `sampling()`), the
    mean otherwise; its KL from N(0, I) in ``kl``."""

    def __init__(self) -> None:
        super().__init__()
        self.sample = False
        self.kl: torch.Tensor | None = None

    def forward(self, mean: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        variance = spread.square()
        kl = 0.5 * (mean.square() + variance - 1 - torch.log(variance)).sum(-1)
        self.kl = kl.mean()
        if self.training or self.sample:
            return mean + spread * torch.randn_like(mean)
        return mean


def latent_kl(module: nn.Module) -> torch.Tensor | None:
    """The KL of the variational latents of `module` at its last forward, per sample (None
    where it has none)."""
    found = [m.kl for m in module.modules() if isinstance(m, GaussianLatent) and m.kl is not None]
    return sum(found) if found else None
