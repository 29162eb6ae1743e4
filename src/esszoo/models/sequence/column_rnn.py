"""A recurrent pass down and up a column: the vertically aware emulator of radiation.

Paper: Ukkonen (2022), "Exploring pathways to more accurate machine learning emulation of
atmospheric radiative transfer", JAMES 14, e2021MS002875. Radiation flows through a
column layer by layer: a feed-forward net sees the column as an unordered vector and
must learn the vertical dependence from data, where a recurrent net carries it in its
state. Ukkonen's bidirectional RNN, with an order of magnitude fewer parameters than the
feed-forward nets it was compared with, was considerably more accurate on shortwave
fluxes (heating-rate RMSE 0.16 K day-1 offline on a year of global data).

Here, as the two streams of the radiative transfer go:

    e_k   = W_e [profiles_k, scalars] + b_e                       every level k (embedding)
    d_k   = GRU_down(e_k, d_{k+1}),   d_top = tanh(W_d scalars)   top of the column down
    u_k   = GRU_up([e_k, d_k], u_{k-1}), u_0 = tanh(W_u scalars)   surface up
    out_k = W_o [d_k, u_k] + b_o                                  the profiles, per level
    fluxes = W_f [d_surface, u_top] + b_f                         the scalars

with the scalar inputs (surface temperature, CO2, the Sun's angle, albedo) both broadcast
to every level and setting the initial states, as Ukkonen feeds the boundary conditions
of each stream. Departures: GRU cells (Cho et al. 2014) rather than the paper's choice of
cell; heating rates are predicted directly rather than differenced from predicted flux
profiles (so that the targets are those of the MLP beside it); the boundary fluxes are
read from the two passes' final states. The paper gives no exact size: ``hidden`` 64 is
chosen here (63,556 parameters for the longwave recipe, against 237,345 of its MLP).

Input layout (`esszoo.data.columns`): ``profile_inputs`` profiles of ``levels`` levels,
each level after another and surface first, then the scalars; outputs alike with
``profile_outputs`` profiles.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.registry import Paper, register_model


@register_model(
    name="column_rnn",
    family="sequence",
    tasks=("column_emulation",),
    paper=Paper(
        authors="Ukkonen",
        year=2022,
        title="Exploring pathways to more accurate machine learning emulation of "
        "atmospheric radiative transfer",
        venue="Journal of Advances in Modeling Earth Systems 14, e2021MS002875",
        doi="10.1029/2021MS002875",
    ),
    reference=dict(
        in_channels=4 * 30 + 2,
        out_channels=30 + 3,
        levels=30,
        profile_inputs=4,
        profile_outputs=1,
        hidden=64,
    ),
    reference_params=63_556,
    reference_note="the longwave emulator of recipes/emulate_rrtmg_lw.yaml (4 profiles of "
    "30 levels and 2 scalars in; heating on 30 levels and 3 fluxes out), counted here: "
    "the paper gives no exact size",
    small=dict(
        in_channels=2 * 5 + 2,
        out_channels=5 + 3,
        levels=5,
        profile_inputs=2,
        profile_outputs=1,
        hidden=8,
    ),
    example_input=(4, 12),
)
class ColumnRNN(nn.Module):
    """GRUs down and up the column; per-level profiles and boundary fluxes out."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        levels: int | None = None,
        profile_inputs: int = 0,
        profile_outputs: int = 0,
        hidden: int = 64,
    ):
        super().__init__()
        if not levels or profile_inputs < 1 or profile_outputs < 1:
            raise ValueError(
                "column_rnn reads columns: it needs profiles of one number of levels among "
                "the inputs and the targets (task column_emulation sets levels, "
                "profile_inputs and profile_outputs from the data)"
            )
        self.levels = levels
        self.profile_inputs, self.profile_outputs = profile_inputs, profile_outputs
        self.scalar_inputs = in_channels - profile_inputs * levels
        self.scalar_outputs = out_channels - profile_outputs * levels
        if self.scalar_inputs < 0 or self.scalar_outputs < 0:
            raise ValueError(
                f"column_rnn: {in_channels} inputs and {out_channels} outputs cannot hold "
                f"{profile_inputs} and {profile_outputs} profiles of {levels} levels"
            )
        per_level = profile_inputs + self.scalar_inputs
        self.embed = nn.Linear(per_level, hidden)
        boundary = max(self.scalar_inputs, 1)
        self.start_down = nn.Linear(boundary, hidden)
        self.start_up = nn.Linear(boundary, hidden)
        self.down = nn.GRU(hidden, hidden, batch_first=True)
        self.up = nn.GRU(2 * hidden, hidden, batch_first=True)
        self.profile_head = nn.Linear(2 * hidden, profile_outputs)
        self.flux_head = nn.Linear(2 * hidden, max(self.scalar_outputs, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        split = self.profile_inputs * self.levels
        # (B, P*L) -> (B, L, P): level k's profile values; scalars (B, S)
        profiles = x[:, :split].reshape(batch, self.profile_inputs, self.levels).transpose(1, 2)
        scalars = x[:, split:]
        boundary = scalars if self.scalar_inputs else x.new_zeros(batch, 1)
        broadcast = scalars.unsqueeze(1).expand(batch, self.levels, self.scalar_inputs)
        embedded = self.embed(torch.cat([profiles, broadcast], dim=2))  # (B, L, H)
        # downward pass from the top of the column (the last level) to the surface
        start = torch.tanh(self.start_down(boundary)).unsqueeze(0)  # (1, B, H)
        down, last_down = self.down(embedded.flip(1), start)
        down = down.flip(1)  # (B, L, H), surface first again
        start = torch.tanh(self.start_up(boundary)).unsqueeze(0)
        up, last_up = self.up(torch.cat([embedded, down], dim=2), start)  # (B, L, H)
        both = torch.cat([down, up], dim=2)  # (B, L, 2H)
        profile_out = self.profile_head(both).transpose(1, 2).reshape(batch, -1)  # (B, Po*L)
        fluxes = self.flux_head(torch.cat([last_down[0], last_up[0]], dim=1))  # (B, So)
        if not self.scalar_outputs:
            return profile_out
        return torch.cat([profile_out, fluxes], dim=1)
