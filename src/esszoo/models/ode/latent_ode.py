"""Latent ODE: a series as the trajectory of an ODE in a latent space, read from an
irregular past by an ODE-RNN.

Papers: Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential
Equations", NeurIPS, Section 5 (the latent ODE), and Rubanova, Chen & Duvenaud (2019),
"Latent ODEs for Irregularly-Sampled Time Series", NeurIPS, arXiv:1907.03907, Section 3
(its ODE-RNN encoder). A series observed at any times t_0..t_N is the image of one latent
trajectory: z_0 ~ p(z_0) = N(0, I), z(t) the solution of dz/dt = f(z) from z_0, and each
observation x_i ~ p(x | z(t_i)). The posterior q(z_0 | x) comes from an ODE-RNN (Algorithm
1) run backwards in time over the observations, whose state moves by an ODE between them
and is updated by a GRU at each. Forecasting is extrapolation (Section 4.2): the latent
trajectory is solved over the future times and decoded there.

Paper to code (the authors' code, latent_ode/lib):

- Times: the window's steps at t_i = i * ``time_step`` (the authors scale a series' times
  to [0, 1]; 0.05 spans 20 steps in 1); a gap in the past is a step whose mask is 0, so
  series of one batch may be observed at different times, as the authors' union of times.
- Recognition: ODE-RNN backwards (`esszoo.layers.ode.ODERNN`), ``width`` state units
  (their rec-dims), its ODE a tanh net of ``rec_layers`` hidden layers of ``units``, its
  GRU gates of ``gru_units``; Euler's method between two steps (``encoder_solver``, one
  evaluation a step, as theirs where the gap is short). Observations enter as [x * mask,
  mask].
- q(z_0 | x) = N(mu, sigma^2), [mu, sigma] = a net of 100 tanh units on the final state's
  mean and spread (``transform_z0``), sigma = |.|; z_0 drawn by reparameterisation in
  training (`esszoo.layers.variational`), its mean otherwise.
- Generative ODE dz/dt = f(z): a tanh net of ``gen_layers`` hidden layers of ``units``,
  solved by dopri5 at rtol 1e-3 and atol 1e-4 (``solver``) over the future steps; the
  decoder one linear layer from z(t) to the outputs. As the authors' code extrapolates,
  the solution starts from z_0 at the first time to predict (its solver is handed the
  times to predict), not at t_0 as the paper's figure draws it: solved through the 24
  months of the past first, the Nino forecast did not train here (a training loss of
  0.68 against 0.25 after 30 epochs).
- Loss: the task's loss of the future values (for a point forecast, the mean squared
  error: the Gaussian log-likelihood of the fixed ``observation_std``, 0.01 in normalized
  units as the authors' obsrv_std) plus ``task.kl_weight`` times KL[q(z_0 | x) || N(0, I)]
  per target value scaled to that likelihood (`esszoo.layers.variational`): the negative
  ELBO (Eq. 5 of Chen et al.) at kl_weight 1.

Reference configuration: the authors' PhysioNet command (41 variables; 20 latents,
rec-dims 40, rec-layers 3, gen-layers 3, units 50, gru-units 50): 67,071 parameters,
counted here (none is published): recognition ODE 11,740, GRU unit 32,610, transform_z0
12,140, generative ODE 9,720, decoder 861.

Departures: one draw of z_0 per series in training (the authors average 3), and the KL
at its full weight from the first step (the authors raise it from 0 over the first few
hundred iterations, 1 - 0.99^(iteration - 10)); the decoder
reads out the future only (extrapolation), not the past as well; a distributional
forecast (``task.distribution``) takes its location and scale from the decoder, where the
authors fix the observation noise.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_series
from esszoo.layers.ode import ODERNN, Autonomous, ODEBlock
from esszoo.layers.variational import GaussianLatent
from esszoo.registry import Paper, register_model

TRANSFORM_UNITS = 100  # the authors' transform_z0
RUBANOVA_2019 = Paper(
    authors="Rubanova, Chen & Duvenaud",
    year=2019,
    title="Latent ODEs for Irregularly-Sampled Time Series",
    venue="NeurIPS",
    arxiv="1907.03907",
)


def window_times(steps: int, time_step: float, like: torch.Tensor) -> torch.Tensor:
    """The model times of `steps` consecutive steps of a series: 0, time_step, ..."""
    return torch.arange(steps, device=like.device, dtype=like.dtype) * time_step


def observed(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x with its unobserved values set to 0 (they may be NaN), and the mask (1 observed)."""
    if mask is None:
        mask = torch.isfinite(x).to(x.dtype)
    return torch.where(mask > 0, x, torch.zeros_like(x)), mask


@register_model(
    name="latent_ode",
    family="neural_ode",
    tasks=("forecasting",),
    paper=RUBANOVA_2019,
    reference=dict(in_channels=41, out_channels=41, horizon=1),
    reference_params=67_071,
    reference_note="the authors' PhysioNet configuration (41 variables; 20 latents, rec-dims "
    "40, rec-layers 3, gen-layers 3, units 50, gru-units 50), counted here; no count is "
    "published",
    small=dict(
        in_channels=3,
        out_channels=2,
        horizon=4,
        latents=4,
        width=8,
        units=8,
        gru_units=8,
        solver="rk4",
        step_size=0.05,
    ),
    example_input=(4, 8, 3),
    inputs=("x", "mask"),
    export=("torchscript",),
    export_note="TorchScript with a fixed-step solver (solver: rk4, step_size: ...), for "
    "the window length it was traced at; an adaptive solver's steps depend on the input and "
    "cannot be traced. ONNX: torch.export cannot follow torchdiffeq's checks on the time "
    "grid (data-dependent guards)",
)
class LatentODE(nn.Module):
    """Latent ODE with an ODE-RNN encoder: z_0 from the irregular past, its ODE solved on."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        horizon: int = 1,
        latents: int = 20,
        width: int = 40,
        units: int = 50,
        gru_units: int = 50,
        rec_layers: int = 3,
        gen_layers: int = 3,
        time_step: float = 0.05,
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float | None = None,
        encoder_solver: str = "euler",
        adjoint: bool = False,
        observation_std: float = 0.01,
    ):
        super().__init__()
        if observation_std <= 0 or time_step <= 0:
            raise ModelError(
                f"latent_ode needs a positive observation_std and time_step, got "
                f"{observation_std} and {time_step}",
                "e.g. observation_std: 0.01 (normalized units), time_step: 0.05",
            )
        self.horizon, self.out_channels, self.time_step = horizon, out_channels, time_step
        encoder_step = time_step if encoder_solver != "dopri5" else None
        self.encoder = ODERNN(
            in_channels,
            width,
            units=units,
            layers=rec_layers,
            gru_units=gru_units,
            solver=encoder_solver,
            step_size=encoder_step,
            integration_time=time_step,
        )
        self.to_z0 = nn.Sequential(
            nn.Linear(2 * width, TRANSFORM_UNITS),
            nn.Tanh(),
            nn.Linear(TRANSFORM_UNITS, 2 * latents),
        )
        self.z0 = GaussianLatent(observation_std)
        self.dynamics = ODEBlock(
            Autonomous(latents, units, gen_layers),
            solver=solver,
            rtol=rtol,
            atol=atol,
            step_size=step_size,
            adjoint=adjoint,
            integration_time=time_step,
        )
        self.decoder = nn.Linear(latents, out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_series(x, x.shape[1], "latent_ode")  # any length: times, not positions
        x, mask = observed(x, mask)  # (B, T, C), gaps 0 and their mask
        past = x.shape[1]
        times = window_times(past + self.horizon, self.time_step, x)
        state, spread = self.encoder(x, mask, times[:past], backwards=True)  # at t_0
        mean, sigma = self.to_z0(torch.cat([state, spread], -1)).chunk(2, -1)
        z0 = self.z0(mean, sigma.abs() + 1e-6)  # (B, latents), KL kept for the loss
        # as the authors' code extrapolates: the solution starts at the first time to
        # predict, from z_0
        z = self.dynamics.trajectory(z0, times[past:])  # (H, B, latents)
        return self.decoder(z).transpose(0, 1)  # (B, H, out_channels)
