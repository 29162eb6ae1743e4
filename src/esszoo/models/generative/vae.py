"""Variational autoencoder: the autoencoder's code made a distribution, to draw new fields.

Paper: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", ICLR, arXiv:1312.6114.
An autoencoder's decoder, given a code it never saw, gives nothing in particular: its
codes fill a small, irregular part of their space. The variational autoencoder makes the
encoder give a distribution q(z | x) instead of a code, and trains encoder and decoder
together to maximise the evidence lower bound (ELBO, Eq. 3):

    log p(x) >= E_q[log p(x | z)] - KL[q(z | x) || p(z)],    p(z) = N(0, I),

the first term a reconstruction (here a Gaussian likelihood: a mean squared error), the
second pulling every q towards the prior, so that codes drawn from N(0, I) decode to
fields like the training fields. Kingma & Welling draw z = mu + sigma * eps (eps ~ N(0,
I)) so that the gradient passes through the draw (the reparameterisation trick, Section
2.4), and the KL of two Gaussians is in closed form (Appendix B); both are
`esszoo.layers.variational.GaussianLatent`. Higgins et al. (2017, "beta-VAE", ICLR) weight
the KL by beta: the recipe's ``task.kl_weight`` (1: the ELBO).

Paper to code:

- Encoder and decoder: the convolutional autoencoder of `autoencoder.py` (``depth``
  stride-2 stages, nearest upsampling and convolutions back), whose bottleneck gives two
  numbers per code number: the mean and the log-variance of q (Kingma & Welling's
  Gaussian MLP encoder, Appendix C.2, with convolutions).
- The code is a field of ``latent_channels`` on a grid 2^depth times coarser, each of its
  numbers an independent N(0, 1) under the prior, so a VAE of any grid draws fields of
  any grid (`sample`); `interpolate` walks between two real fields' codes.
- Out of training the code is the mean of q (a deterministic reconstruction); under
  `esszoo.layers.bayesian.sampling()` it is drawn, as in training.

The "fuzzy decoder": a Gaussian likelihood of fixed variance makes the decoder's output
the mean of p(x | z), which, for a code that leaves the small scales undetermined,
averages them away. VAE samples of rain are therefore smoother than rain; the power
spectra of the generation benchmark show how much.
"""

from __future__ import annotations

import torch

from esszoo.layers.variational import GaussianLatent
from esszoo.models.encoder_decoder.autoencoder import MIN_SIZE, ConvAutoencoder
from esszoo.registry import Paper, register_model

LOG_VARIANCE = (-30.0, 20.0)  # kept within exp's range: a start far off cannot overflow


@register_model(
    name="vae",
    family="generative",
    tasks=("generation", "translation"),
    paper=Paper(
        authors="Kingma & Welling",
        year=2014,
        title="Auto-Encoding Variational Bayes",
        venue="ICLR",
        arxiv="1312.6114",
    ),
    reference=dict(in_channels=1, width=32, depth=3, latent_channels=4),
    reference_params=457_353,
    reference_note="the paper's networks are fully connected (one hidden layer, MNIST and "
    "Frey faces); the convolutional autoencoder's defaults on one variable, its bottleneck "
    "giving a mean and a log-variance per code number, counted here",
    small=dict(in_channels=3, out_channels=3, width=4, depth=2, latent_channels=2),
    example_input=(2, 3, 20, 36),
    min_size=MIN_SIZE,
)
class ConvVAE(ConvAutoencoder):
    """Convolutional variational autoencoder: a Gaussian code, drawn by reparameterisation.

    The convolutional autoencoder whose bottleneck gives the mean and log-variance of
    q(z | x) for each of its ``latent_channels`` x (H/2^depth) x (W/2^depth) code numbers;
    `sample` decodes draws of the N(0, I) prior, `interpolate` walks between two fields.
    """

    numbers_per_code = 2  # the mean and the log-variance of q(z | x)

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int | None = None,
        width: int = 32,
        depth: int = 3,
        latent_channels: int = 4,
        activation: str = "relu",
        padding: str = "zeros",
        observation_std: float = 2**-0.5,
    ):
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            width=width,
            depth=depth,
            latent_channels=latent_channels,
            activation=activation,
            padding=padding,
        )
        self.latent = GaussianLatent(observation_std)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and standard deviation of q(z | x), each (B, latent_channels, h, w)."""
        mean, log_variance = super().encode(x).chunk(2, dim=1)
        return mean, torch.exp(0.5 * log_variance.clamp(*LOG_VARIANCE))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of fields x: a draw of q(z | x) in training (its KL kept for the loss),
        its mean otherwise."""
        mean, spread = self.posterior(x)
        return self.latent(mean.flatten(1), spread.flatten(1)).view_as(mean)

    def sample(
        self, count: int, grid: tuple[int, int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """`count` fields on `grid` (H, W) decoded from codes drawn from the prior N(0, I)."""
        parameter = next(self.parameters())
        shape = (count, self.latent_channels, *self.latent_grid(*grid))
        code = torch.randn(shape, generator=generator, dtype=parameter.dtype)
        return self.decode(code.to(parameter.device), grid)

    def interpolate(self, first: torch.Tensor, last: torch.Tensor, steps: int) -> torch.Tensor:
        """Fields decoded along the straight line between the posterior means of two fields
        (1, C, H, W): (steps, out_channels, H, W), the first and last their reconstructions."""
        start, end = self.posterior(first)[0], self.posterior(last)[0]
        weights = torch.linspace(0, 1, steps, device=start.device).view(-1, 1, 1, 1)
        return self.decode(start + weights * (end - start), tuple(first.shape[-2:]))
