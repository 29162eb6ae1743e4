"""Sequence to sequence with attention: the decoder looks back at every encoded step.

Paper: Bahdanau, Cho & Bengio (2015), "Neural machine translation by jointly learning to
align and translate" (ICLR), the RNNsearch model.

A fixed-length state is a bottleneck for long inputs (section 1); here the decoder reads,
at each output step i, its own context c_i, a weighted sum of all the encoder's
annotations (section 3 and appendix A):

- encoder: a bidirectional GRU; the annotation h_j = [forward h_j; backward h_j] of step j
  summarizes the input around it (section 3.2);
- alignment: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j), alpha_ij = softmax_j(e_ij),
  c_i = sum_j alpha_ij h_j (eqs. 5-6; `esszoo.layers.attention.AdditiveAttention`);
- decoder: a GRU whose state s_i reads the previous output y_{i-1} and c_i (eq. 4), and
  starts from s_0 = tanh(W_s backward h_1) (appendix A.2.2);
- deep output: t_i = maxout(U_o s_i + V_o y_{i-1} + C_o c_i), pairs of units pooled by
  their maximum, then a linear layer to the output (appendix A.2.2; the appendix writes
  s_{i-1} where eq. 4 conditions on s_i, which is what this follows).

Reference configuration: RNNsearch, vocabularies of 30,000 words, embeddings of 620,
1,000 units per direction and in the decoder, an alignment model of 1,000 units, 500
maxout units: 80,452,000 parameters counted here (the paper gives no count).

Departures for Earth series (``vocab_size`` unset): the encoder reads the ``in_channels``
values of each past step, the decoder's previous output is the previous step's
``out_channels`` (a learned start vector at the first step), and the deep output's linear
layer gives the ``out_channels``; teacher forcing in training where `teacher` is given.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.attention import AdditiveAttention
from esszoo.layers.grid import check_series
from esszoo.registry import Paper, register_model


@register_model(
    name="seq2seq_attention",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Bahdanau, Cho & Bengio",
        year=2015,
        title="Neural machine translation by jointly learning to align and translate",
        venue="ICLR",
        arxiv="1409.0473",
    ),
    reference=dict(vocab_size=30_000, embedding=620, width=1_000, maxout=500),
    reference_params=80_452_000,
    reference_note="RNNsearch's sizes (appendix A.2), counted here; the paper gives no count",
    small=dict(in_channels=3, out_channels=2, horizon=4, width=16, maxout=8),
    example_input=(4, 8, 3),
)
class Seq2SeqAttention(nn.Module):
    """A bidirectional GRU encoder and a GRU decoder with additive attention over it."""

    def __init__(
        self,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        horizon: int = 1,
        vocab_size: int | None = None,
        embedding: int = 620,
        width: int = 1_000,
        maxout: int = 500,
    ):
        super().__init__()
        self.text = vocab_size is not None
        if not self.text and (in_channels is None or out_channels is None):
            raise ModelError("seq2seq_attention needs in_channels and out_channels (or a vocab)")
        self.horizon = horizon
        if self.text:  # source and target vocabularies of the same size, apart
            self.embed_source = nn.Embedding(vocab_size, embedding)
            self.embed_target = nn.Embedding(vocab_size, embedding)
            in_channels = previous = embedding
            out_channels = vocab_size
        else:
            self.start = nn.Parameter(torch.zeros(out_channels))
            previous = out_channels
        self.encoder = nn.GRU(in_channels, width, batch_first=True, bidirectional=True)
        self.initial = nn.Linear(width, width)  # W_s
        self.attention = AdditiveAttention(width, 2 * width, width)  # annotations of 2 x width
        self.decoder = nn.GRUCell(previous + 2 * width, width)
        self.deep_output = nn.Linear(width + previous + 2 * width, 2 * maxout)  # U_o, V_o, C_o
        self.head = nn.Linear(maxout, out_channels)  # W_o

    def _step(
        self,
        previous: torch.Tensor,
        state: torch.Tensor,
        annotations: torch.Tensor,
        projected: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoder step: y_{i-1} (batch, P) and s_{i-1} (batch, width) -> (output, s_i)."""
        context, _ = self.attention(state, annotations, projected)  # c_i: (batch, 2 width)
        state = self.decoder(torch.cat([previous, context], dim=-1), state)  # s_i
        pieces = self.deep_output(torch.cat([state, previous, context], dim=-1))
        t = pieces.unflatten(-1, (-1, 2)).amax(-1)  # maxout over pairs: (batch, maxout)
        return self.head(t), state

    def forward(self, x: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Text: source tokens (batch, Ts) and target tokens `teacher` (batch, Tt) -> logits
        (batch, Tt, vocab_size), each step reading the token before it. Series: past
        values (batch, T, in_channels) -> the next steps (batch, horizon, out_channels)."""
        if self.text:
            if teacher is None:
                raise ModelError("a text seq2seq_attention needs the target tokens as `teacher`")
            source, previous = self.embed_source(x), self.embed_target(teacher)
            steps = teacher.shape[1]
        else:
            check_series(x, x.shape[1], "seq2seq_attention")
            source, steps = x, self.horizon
            start = self.start.expand(x.shape[0], 1, -1)
            previous = None if teacher is None else torch.cat([start, teacher[:, :-1]], dim=1)
        annotations, last = self.encoder(source)  # (batch, T, 2 width); last: (2, batch, width)
        projected = self.attention.project(annotations)  # U_a h_j, once for all steps
        # s_0 = tanh(W_s backward h_1): the backward GRU's state after reading back to step 1
        state = torch.tanh(self.initial(last[1]))
        outputs = []
        step = None if self.text or previous is not None else start[:, 0]
        for i in range(steps):
            if previous is not None:  # the truth (teacher forcing, and text)
                step = previous[:, i]
            output, state = self._step(step, state, annotations, projected)
            outputs.append(output)
            step = output  # decoding: the next step reads this one
        return torch.stack(outputs, dim=1)  # (batch, steps, out)
