"""Long short-term memory: a recurrent cell whose memory is guarded by gates.

Paper: Hochreiter & Schmidhuber (1997), "Long short-term memory" (Neural Computation 9,
1735-1780). A memory cell c_t carries the past along a path without squashing (the
"constant error carousel", section 4), so gradients neither vanish nor explode over long
lags; multiplicative input and output gates decide what enters it and what it shows:

    i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)       input gate
    f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)       forget gate
    g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)          candidate
    o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)       output gate
    c_t = f_t * c_{t-1} + i_t * g_t,   h_t = o_t * tanh(c_t)

Departure: the forget gate f_t is not in the 1997 paper (there c_t = c_{t-1} + i_t g_t);
Gers, Schmidhuber & Cummins (2000) added it so that a cell can reset, and every LSTM
since, PyTorch's among them, has it. No peephole connections.

Reference configuration: the LSTM of Kratzert et al. (2018, HESS 22, 6005-6022), the
rainfall-runoff model that made LSTMs a hydrological standard: 5 meteorological inputs,
two layers of 20 cells, a linear output of the day's discharge: 5,541 parameters counted
here (PyTorch's two bias vectors included).

For Earth series: `RecurrentForecaster` (recurrent.py): the last state read out by a
linear head for the next ``horizon`` steps.
"""

from __future__ import annotations

from torch import nn

from esszoo.models.sequence.recurrent import RecurrentForecaster
from esszoo.registry import Paper, register_model


@register_model(
    name="lstm",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Hochreiter & Schmidhuber",
        year=1997,
        title="Long short-term memory",
        venue="Neural Computation 9, 1735-1780",
        doi="10.1162/neco.1997.9.8.1735",
    ),
    reference=dict(in_channels=5, out_channels=1, horizon=1, width=20, depth=2),
    reference_params=5_541,
    reference_note="Kratzert et al. 2018 (doi:10.5194/hess-22-6005-2018), counted here",
    small=dict(in_channels=3, out_channels=2, horizon=4, width=16, depth=2),
    example_input=(4, 8, 3),
)
class LSTM(RecurrentForecaster):
    """Long short-term memory over the past, a linear head for the next steps."""

    cell = nn.LSTM
    label = "lstm"
