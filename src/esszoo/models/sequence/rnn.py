"""The simple recurrent network: a hidden layer that reads its own previous state.

Paper: Elman (1990), "Finding structure in time" (Cognitive Science 14, 179-211). The
hidden units' activations are copied to context units at each step and fed back with the
next input, so the state carries the past: h_t = tanh(W x_t + U h_{t-1} + b) (figure 2,
with the logistic function there where PyTorch's recurrence uses tanh). Trained here by
back-propagation through the whole window, where Elman truncated it to one step.

Reference configuration: the word-order simulation (31 input and output units, 150 hidden
and 150 context units), read out to the next step's 31 units: 32,131 parameters counted
here (PyTorch's two bias vectors add 150 to the paper's 31,981).

For Earth series: `RecurrentForecaster` (recurrent.py): the last state read out by a
linear head for the next ``horizon`` steps.
"""

from __future__ import annotations

from torch import nn

from esszoo.models.sequence.recurrent import RecurrentForecaster
from esszoo.registry import Paper, register_model


@register_model(
    name="rnn",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Elman",
        year=1990,
        title="Finding structure in time",
        venue="Cognitive Science 14, 179-211",
        doi="10.1207/s15516709cog1402_1",
    ),
    reference=dict(in_channels=31, out_channels=31, horizon=1, width=150),
    reference_params=32_131,
    reference_note="the word-order simulation's sizes, counted here; the paper gives none",
    small=dict(in_channels=3, out_channels=2, horizon=4, width=16, depth=2),
    example_input=(4, 8, 3),
)
class RNN(RecurrentForecaster):
    """Elman's simple recurrent network over the past, a linear head for the next steps."""

    cell = nn.RNN
    label = "rnn"
