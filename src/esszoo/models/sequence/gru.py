"""The gated recurrent unit: an LSTM's gating with one state and two gates.

Paper: Cho, van Merrienboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio (2014),
"Learning phrase representations using RNN encoder-decoder for statistical machine
translation" (EMNLP), section 2.3. A reset gate r decides how much of the previous state
the candidate sees, an update gate z how much of the state the candidate replaces:

    r_t = sigmoid(W_r x_t + U_r h_{t-1})
    z_t = sigmoid(W_z x_t + U_z h_{t-1})
    n_t = tanh(W x_t + r_t * (U h_{t-1}))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

(eqs. 5-8; PyTorch applies r after the recurrent product, as cuDNN does, and keeps a bias
in each product.)

Reference configuration: the paper's encoder, 1,000 units over 100-dimensional word
embeddings, read out here to one value: 3,307,001 parameters counted here.

For Earth series: `RecurrentForecaster` (recurrent.py): the last state read out by a
linear head for the next ``horizon`` steps.
"""

from __future__ import annotations

from torch import nn

from esszoo.models.sequence.recurrent import RecurrentForecaster
from esszoo.registry import Paper, register_model


@register_model(
    name="gru",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Cho, van Merrienboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio",
        year=2014,
        title="Learning phrase representations using RNN encoder-decoder for statistical "
        "machine translation",
        venue="EMNLP",
        arxiv="1406.1078",
    ),
    reference=dict(in_channels=100, out_channels=1, horizon=1, width=1_000),
    reference_params=3_307_001,
    reference_note="the paper's encoder sizes read out to one value, counted here",
    small=dict(in_channels=3, out_channels=2, horizon=4, width=16, depth=2),
    example_input=(4, 8, 3),
)
class GRU(RecurrentForecaster):
    """Gated recurrent units over the past, a linear head for the next steps."""

    cell = nn.GRU
    label = "gru"
