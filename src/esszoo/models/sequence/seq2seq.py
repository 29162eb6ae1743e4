"""Sequence to sequence: one LSTM reads the past into a state, another writes the future.

Paper: Sutskever, Vinyals & Le (2014), "Sequence to sequence learning with neural
networks" (NeurIPS).

The model (sections 2 and 3.4): a deep LSTM encoder reads the input sequence one step at
a time; its final states (h and c of every layer) become the initial states of a deep LSTM
decoder, which writes the output one step at a time, each step reading the previous
output (the truth in training: teacher forcing; its own prediction when decoding; the
first step reads the <EOS> symbol that ends the input). 4 layers of 1,000 cells,
1,000-dimensional word embeddings, a softmax over the target vocabulary.

Reference configuration: 160,000 source and 80,000 target words, 4 layers of 1,000 cells,
embeddings of 1,000: the paper's "384M parameters"; 384,144,000 counted here (PyTorch's
two bias vectors per gate included).

Departures for Earth series (``source_vocab`` unset): the encoder's LSTM reads the
``in_channels`` values of each past step directly (its input weights are the embedding),
the decoder reads the previous step's ``out_channels`` (a learned start vector in place of
<EOS>) and a linear head writes the next. The paper reversed the source sentences, so that
the first words of the source sit next to the first words of the target (section 3.3); a
series is read forwards, since its last step, the one nearest the first forecast, is
already the last one read.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_series
from esszoo.registry import Paper, register_model


@register_model(
    name="seq2seq",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Sutskever, Vinyals & Le",
        year=2014,
        title="Sequence to sequence learning with neural networks",
        venue="NeurIPS",
        arxiv="1409.3215",
    ),
    reference=dict(source_vocab=160_000, target_vocab=80_000, width=1_000, depth=4),
    reference_params=384_144_000,
    reference_note="the paper's configuration counted here; the paper reports 384M",
    small=dict(in_channels=3, out_channels=2, horizon=4, width=16, depth=2),
    example_input=(4, 8, 3),
)
class Seq2Seq(nn.Module):
    """An LSTM encoder's final state handed to an LSTM decoder that writes the future."""

    def __init__(
        self,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        horizon: int = 1,
        source_vocab: int | None = None,
        target_vocab: int | None = None,
        width: int = 1_000,
        depth: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.text = source_vocab is not None
        if self.text == (target_vocab is None):
            raise ModelError("seq2seq for text needs both source_vocab and target_vocab")
        if not self.text and (in_channels is None or out_channels is None):
            raise ModelError("seq2seq needs in_channels and out_channels (or vocabularies)")
        self.horizon = horizon
        if self.text:
            self.embed_source = nn.Embedding(source_vocab, width)
            self.embed_target = nn.Embedding(target_vocab, width)
            in_channels = out_channels = width
            self.head = nn.Linear(width, target_vocab)  # the softmax's logits
        else:
            self.start = nn.Parameter(torch.zeros(out_channels))
            self.head = nn.Linear(width, out_channels)
        between = dropout if depth > 1 else 0.0
        self.encoder = nn.LSTM(in_channels, width, depth, batch_first=True, dropout=between)
        self.decoder = nn.LSTM(out_channels, width, depth, batch_first=True, dropout=between)
        for parameter in self.parameters():  # section 3.4: uniform in [-0.08, 0.08]
            nn.init.uniform_(parameter, -0.08, 0.08)

    def forward(self, x: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Text: source tokens (batch, Ts) and target tokens `teacher` (batch, Tt) -> logits
        (batch, Tt, target_vocab). Series: past values (batch, T, in_channels) -> the next
        steps (batch, horizon, out_channels), teacher-forced where `teacher` is given."""
        if self.text:
            if teacher is None:
                raise ModelError("a text seq2seq needs the target tokens as `teacher`")
            _, state = self.encoder(self.embed_source(x))
            states, _ = self.decoder(self.embed_target(teacher), state)
            return self.head(states)
        check_series(x, x.shape[1], "seq2seq")
        _, state = self.encoder(x)  # (h, c): (depth, batch, width) each, the past read
        start = self.start.expand(x.shape[0], 1, -1)  # (batch, 1, out_channels)
        if teacher is not None:  # one pass over the truth shifted right
            states, _ = self.decoder(torch.cat([start, teacher[:, :-1]], dim=1), state)
            return self.head(states)  # (batch, horizon, out_channels)
        step, steps = start, []
        for _ in range(self.horizon):  # each step reads the one written before it
            output, state = self.decoder(step, state)
            step = self.head(output)  # (batch, 1, out_channels)
            steps.append(step)
        return torch.cat(steps, dim=1)
