"""The Transformer: an encoder-decoder built on attention alone.

Paper: Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin (2017),
"Attention is all you need" (NeurIPS).

The model (section 3, figure 1):

- source and target token embeddings, multiplied by sqrt(width) (section 3.4), plus the
  fixed sinusoidal positional encodings (section 3.5), then dropout 0.1 (section 5.4);
- an encoder of N layers (self-attention, feed-forward) and a decoder of N layers (masked
  self-attention, attention to the encoder's output, feed-forward), each sublayer inside a
  residual connection followed by layer normalization (post-norm); ReLU feed-forward;
- the output linear layer before the softmax shares its weight matrix with the two
  embeddings (section 3.4); trained with teacher forcing (the decoder reads the target
  shifted right by one) and decoded one token at a time.

Reference configuration: the base model, N = 6, width 512, feed-forward 2,048, 8 heads,
dropout 0.1, a shared source-target vocabulary of about 37,000 byte-pair tokens (WMT 2014
English-German, section 5.1): 63,082,496 parameters counted here at a vocabulary of
37,000, against the paper's "65M" (table 3; its exact vocabulary is not given).

Earth series (``vocab_size`` unset), the departures: the encoder embeds the ``in_channels``
values of each past step linearly, the decoder the ``out_channels`` of each forecast step;
the decoder's first input is a learned start vector (the <GO> token of sequence models),
the next ones the previous step's values; a linear head gives the ``out_channels``. In
training the previous values are the true ones when ``teacher`` (batch, horizon,
out_channels) is given (teacher forcing), else the model's own; a forecast feeds its own
predictions back, step by step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.attention import sinusoidal_positions
from esszoo.layers.grid import check_series
from esszoo.layers.transformer import TransformerDecoderLayer, TransformerEncoderLayer
from esszoo.registry import Paper, register_model


@register_model(
    name="transformer",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin",
        year=2017,
        title="Attention is all you need",
        venue="NeurIPS",
        arxiv="1706.03762",
    ),
    reference=dict(vocab_size=37_000, depth=6, width=512, hidden=2_048, heads=8),
    reference_params=63_082_496,
    reference_note="the base model at a shared vocabulary of 37,000 tokens, embeddings tied "
    "with the output layer, counted here; the paper reports 65M",
    small=dict(in_channels=3, out_channels=2, horizon=4, depth=2, width=16, hidden=32, heads=2),
    example_input=(4, 8, 3),
)
class Transformer(nn.Module):
    """Encoder-decoder Transformer: the past encoded, the future decoded step by step."""

    def __init__(
        self,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        horizon: int = 1,
        vocab_size: int | None = None,
        context: int = 1_024,
        depth: int = 6,
        width: int = 512,
        hidden: int = 2_048,
        heads: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.text = vocab_size is not None
        if not self.text and (in_channels is None or out_channels is None):
            raise ModelError(
                "transformer needs in_channels and out_channels (or a vocab_size for text)"
            )
        self.horizon, self.width, self.context = horizon, width, context
        if self.text:  # one matrix: source embedding, target embedding, pre-softmax layer
            self.embed = nn.Embedding(vocab_size, width)
        else:
            self.embed_source = nn.Linear(in_channels, width)
            self.embed_target = nn.Linear(out_channels, width)
            self.start = nn.Parameter(torch.zeros(out_channels))  # <GO>
            self.head = nn.Linear(width, out_channels)
        self.register_buffer("positions", sinusoidal_positions(context, width), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            TransformerEncoderLayer(width, heads, hidden, dropout=dropout) for _ in range(depth)
        )
        self.decoder = nn.ModuleList(
            TransformerDecoderLayer(width, heads, hidden, dropout=dropout) for _ in range(depth)
        )
        for parameter in self.parameters():  # Glorot-uniform matrices, as tensor2tensor
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def _positioned(self, embedded: torch.Tensor, first: int = 0) -> torch.Tensor:
        length = first + embedded.shape[1]
        if length > self.context:
            raise ModelError(
                f"transformer encodes at most {self.context} positions, got {length}",
                "shorten the window or build the model with a larger context",
            )
        return self.dropout(embedded + self.positions[first:length])

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """Embedded source (batch, Ts, width) -> the encoder's output (batch, Ts, width)."""
        h = self._positioned(source)
        for layer in self.encoder:
            h = layer(h)
        return h

    def decode(
        self,
        target: torch.Tensor,
        memory: torch.Tensor,
        caches: list[dict] | None = None,
        first: int = 0,
    ) -> torch.Tensor:
        """Embedded target (batch, Tt, width), causally, attending to `memory`. Decoding
        step by step, `target` holds the steps from position `first` on, and `caches`
        (one dict per layer) the keys and values of the steps before it."""
        h = self._positioned(target, first)
        for i, layer in enumerate(self.decoder):
            h = layer(h, memory, causal=True, cache=None if caches is None else caches[i])
        return h

    def forward(self, x: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Text: source tokens (batch, Ts) and target tokens `teacher` (batch, Tt) -> logits
        (batch, Tt, vocab_size). Series: past values (batch, T, in_channels) -> the next
        steps (batch, horizon, out_channels), teacher-forced where `teacher` is given."""
        if self.text:
            if teacher is None:
                raise ModelError("a text transformer needs the target tokens as `teacher`")
            scale = math.sqrt(self.width)
            memory = self.encode(self.embed(x) * scale)
            return self.decode(self.embed(teacher) * scale, memory) @ self.embed.weight.T
        check_series(x, self.context, "transformer")
        memory = self.encode(self.embed_source(x))
        start = self.start.expand(x.shape[0], 1, -1)  # (batch, 1, out_channels)
        if teacher is not None:  # one pass: the decoder reads the truth shifted right
            previous = torch.cat([start, teacher[:, :-1]], dim=1)  # (batch, horizon, out)
            return self.head(self.decode(self.embed_target(previous), memory))
        # each step decoded from the ones before it, whose keys and values stay cached
        caches: list[dict] = [{} for _ in self.decoder]
        steps = [start]
        for position in range(self.horizon):
            h = self.decode(self.embed_target(steps[-1]), memory, caches, first=position)
            steps.append(self.head(h))
        return torch.cat(steps[1:], dim=1)  # (batch, horizon, out_channels)
