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
the batch, in ``kl``; the task adds ``task.kl_weight`` times it, per target value, to its
loss (`latent_kl`).

The likelihood's scale: a task's loss is a mean squared error per target value, which is
the negative log-likelihood of a Gaussian of standard deviation sigma_obs only once divided
by 2 sigma_obs^2. So that MSE + KL-term is the negative ELBO for the model's
``observation_std`` (the authors of the latent ODE fix it at 0.01), ``kl`` is kept
multiplied by 2 sigma_obs^2; at a sigma_obs of 1 / sqrt(2) it is the KL itself.
"""

from __future__ import annotations

import torch
from torch import nn


class GaussianLatent(nn.Module):
    """z from q(z | x) = N(mean, spread^2): a draw in training (or under `sampling()`), the
    mean otherwise; its KL from N(0, I), weighted for the likelihood's scale, in ``kl``."""

    def __init__(self, observation_std: float = 2**-0.5) -> None:
        super().__init__()
        self.sample = False
        self.kl: torch.Tensor | None = None
        self.weight = 2 * observation_std**2  # the KL against a mean squared error

    def forward(self, mean: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        variance = spread.square()
        kl = 0.5 * (mean.square() + variance - 1 - torch.log(variance)).sum(-1)
        self.kl = self.weight * kl.mean()
        if self.training or self.sample:
            return mean + spread * torch.randn_like(mean)
        return mean


def latent_kl(module: nn.Module) -> torch.Tensor | None:
    """The KL of the variational latents of `module` at its last forward, per sample (None
    where it has none)."""
    found = [m.kl for m in module.modules() if isinstance(m, GaussianLatent) and m.kl is not None]
    return sum(found) if found else None
