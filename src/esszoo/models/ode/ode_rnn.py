"""ODE-RNN, and the recurrent net told the time gaps that it is measured against.

Paper: Rubanova, Chen & Duvenaud (2019), "Latent ODEs for Irregularly-Sampled Time
Series", NeurIPS, arXiv:1907.03907, Section 2 and Algorithm 1. A recurrent net's state
stays put between two observations however far apart they are; the ODE-RNN lets it
follow an ODE, h'_i = ODESolve(f, h_{i-1}, (t_{i-1}, t_i)), before the GRU update with
the observation, h_i = GRU(h'_i, x_i) (`esszoo.layers.ode.ODERNN`). To forecast
(extrapolation, Section 4.2), the state after the last observation follows the same ODE
to the future times, each decoded by one linear layer.

``variant="delta_t"`` is the paper's RNN-Delta-t baseline: a GRU cell that reads, at every
step of the window, [x * mask, mask, Delta t], Delta t the time since the series' last
observation, and keeps its state where nothing was observed; its last state is read out
by a linear layer for all future steps at once, as the zoo's recurrent forecasters are.
It is the recurrent net given the time gaps, against which the ODE's value is measured.

Times are the window's steps at i * ``time_step`` (0.05: 20 steps span 1, as the authors
scale a series' times to [0, 1]). The ODE of the state is a tanh net of ``layers`` hidden
layers of ``units`` (the authors' create_net), solved by Euler's method with one step
between two steps of the window (``solver`` and ``step_size`` choose others); the GRU's
gates have ``gru_units``.

Reference configuration: 41 variables (PhysioNet's) at the sizes of the authors' PhysioNet
runs (a state of 20, its ODE 3 hidden layers of 50 units, GRU gates of 50 units): 33,111
parameters, counted here (none is published): the ODE 9,720, the GRU unit 22,530, the
decoder 861. ``variant="delta_t"`` at the same sizes: 7,161.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_series
from esszoo.layers.ode import ODERNN as ODERNNLayer
from esszoo.models.ode.latent_ode import RUBANOVA_2019, observed, window_times
from esszoo.registry import register_model

VARIANTS = ("ode", "delta_t")


@register_model(
    name="ode_rnn",
    family="neural_ode",
    tasks=("forecasting",),
    paper=RUBANOVA_2019,
    reference=dict(in_channels=41, out_channels=41, horizon=1),
    reference_params=33_111,
    reference_note="41 variables (PhysioNet's) at the sizes of the authors' PhysioNet runs "
    "(state 20, ODE of 3 x 50 units, GRU gates of 50), counted here; no count is published; "
    "variant='delta_t' (RNN-Delta-t) at the same sizes: 7,161",
    small=dict(in_channels=3, out_channels=2, horizon=4, width=8, units=8, gru_units=8),
    example_input=(4, 8, 3),
    inputs=("x", "mask"),
    export=("torchscript",),
    export_note="TorchScript with its fixed-step solver (euler, rk4, ...), for the window "
    "length it was traced at. ONNX: torch.export cannot follow torchdiffeq's checks on the "
    "time grid (data-dependent guards)",
)
class ODERNN(nn.Module):
    """ODE-RNN: a GRU whose state follows an ODE between irregular observations."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        horizon: int = 1,
        width: int = 20,
        units: int = 50,
        gru_units: int = 50,
        layers: int = 3,
        variant: str = "ode",
        time_step: float = 0.05,
        solver: str = "euler",
        step_size: float | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ModelError(f"ode_rnn has no variant '{variant}'", f"choose one of {VARIANTS}")
        self.variant, self.horizon, self.out_channels = variant, horizon, out_channels
        self.time_step = time_step
        if variant == "ode":
            self.recurrence = ODERNNLayer(
                in_channels,
                width,
                units=units,
                layers=layers,
                gru_units=gru_units,
                solver=solver,
                step_size=step_size or (time_step if solver != "dopri5" else None),
                integration_time=time_step,
            )
            self.decoder = nn.Linear(width, out_channels)
        else:
            self.cell = nn.GRUCell(2 * in_channels + 1, width)
            self.head = nn.Linear(width, horizon * out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_series(x, x.shape[1], "ode_rnn")  # any length: times, not positions
        x, mask = observed(x, mask)  # (B, T, C), gaps 0 and their mask
        past = x.shape[1]
        times = window_times(past + self.horizon, self.time_step, x)
        if self.variant == "delta_t":
            return self._delta_t(x, mask, times[:past])
        state, _ = self.recurrence(x, mask, times[:past])  # after the last step
        future = self.recurrence.ode.trajectory(state, times[past - 1 :])[1:]  # (H, B, width)
        return self.decoder(future).transpose(0, 1)  # (B, H, out_channels)

    def _delta_t(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """RNN-Delta-t: the GRU told the time since the last observation at every step."""
        state = x.new_zeros(x.shape[0], self.cell.hidden_size)
        last_seen = torch.zeros_like(x[:, 0, :1])  # (B, 1): the time of the last observation
        for i in range(x.shape[1]):
            seen = (mask[:, i].sum(-1, keepdim=True) > 0).to(x.dtype)
            gap = times[i] - last_seen
            step = self.cell(torch.cat([x[:, i] * mask[:, i], mask[:, i], gap], -1), state)
            state = seen * step + (1 - seen) * state
            last_seen = seen * times[i] + (1 - seen) * last_seen
        return self.head(state).unflatten(-1, (self.horizon, self.out_channels))
