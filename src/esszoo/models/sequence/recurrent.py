"""What the recurrent forecasters share: a recurrent encoder read out by a linear head.

A recurrent net (`rnn`, `lstm`, `gru`) carries a state along the series; after the last
observed step its top layer's state summarizes the past, and one linear layer maps it to
the next ``horizon`` steps of the ``out_channels`` at once (the direct multi-step
strategy, as neuralforecast's RNN forecasters read their encoders out), so no prediction
is fed back. The recurrences themselves are PyTorch's (`nn.RNN`, `nn.LSTM`, `nn.GRU`):
the equations of the papers, computed by the fused kernels of CPUs and GPUs. They keep
two bias vectors per gate (b_i* and b_h*, the cuDNN layout); their sum acts as the one
bias of the papers, so each layer counts ``gates x width`` parameters more.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.layers.grid import check_series


class RecurrentForecaster(nn.Module):
    """A stack of recurrent layers over the past, a linear head for the next steps."""

    cell: type[nn.RNNBase] = nn.RNN
    label = "rnn"

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        horizon: int = 1,
        width: int = 64,
        depth: int = 1,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.horizon, self.out_channels = horizon, out_channels
        self.encoder = self.cell(
            in_channels,
            width,
            num_layers=depth,
            batch_first=True,
            dropout=dropout if depth > 1 else 0.0,  # between layers, as Zaremba et al. 2014
        )
        self.head = nn.Linear(width, horizon * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_series(x, x.shape[1], self.label)  # any length: a recurrence has no context
        states, _ = self.encoder(x)  # (batch, T, width): the top layer's state at each step
        last = states[:, -1]  # (batch, width), the summary of the whole past
        return self.head(last).unflatten(-1, (self.horizon, self.out_channels))
