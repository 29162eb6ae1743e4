"""GPT: a decoder-only Transformer that learns by predicting what comes next.

Papers: Radford, Narasimhan, Salimans & Sutskever (2018), "Improving language understanding
by generative pre-training" (GPT), and Radford, Wu, Child, Luan, Amodei & Sutskever (2019),
"Language models are unsupervised multitask learners" (GPT-2), whose layout this follows.

The model (GPT-2, section 2.3):

- token embeddings plus learned position embeddings, then dropout;
- a stack of Transformer decoder blocks without cross-attention: masked self-attention
  (position t attends to positions <= t only) and a feed-forward network of 4 x width
  with GELU (its tanh approximation), each a residual sublayer with the layer normalization
  moved to its input (pre-norm), and a last layer normalization after the stack;
- the output projection to the vocabulary tied to the token embedding (one matrix);
- initial weights N(0, 0.02), those of the projections into the residual stream scaled by
  1 / sqrt(2 x depth), since each block adds two of them to the stream.

Reference configuration: GPT-2 small, vocabulary 50,257, context 1,024, 12 layers of width
768 with 12 heads: 124,439,808 parameters, the count of the released model (the tied output
projection counted once).

Earth series (``vocab_size`` unset), the departures: the token embedding becomes a linear
embedding of the ``in_channels`` values of each time step, and the tied projection to the
vocabulary becomes a linear head that forecasts the next ``horizon`` steps of the
``out_channels`` from every position, as decoder-only forecasters do (TimesFM, Das et al.
2024). With horizon 1 that is GPT's next-token objective; a forecast of several steps is
read at the last position, with no predictions fed back (so the forecast variables need
not be among the inputs). ``every_position=True`` returns the forecasts made at every
position, for training on all of them at once as GPT trains.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_series
from esszoo.layers.transformer import TransformerEncoderLayer
from esszoo.registry import Paper, register_model


@register_model(
    name="gpt",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Radford, Wu, Child, Luan, Amodei & Sutskever",
        year=2019,
        title="Language models are unsupervised multitask learners",
        venue="OpenAI technical report",
    ),
    reference=dict(vocab_size=50_257, context=1_024, depth=12, width=768, heads=12),
    reference_params=124_439_808,
    reference_note="GPT-2 small as released (tied token embedding and output projection)",
    small=dict(in_channels=3, out_channels=2, horizon=4, context=16, depth=2, width=16, heads=2),
    example_input=(4, 8, 3),
)
class GPT(nn.Module):
    """Decoder-only Transformer: causal self-attention over the past, next steps out."""

    def __init__(
        self,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        horizon: int = 1,
        vocab_size: int | None = None,
        context: int = 1_024,
        depth: int = 12,
        width: int = 768,
        heads: int = 12,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.text = vocab_size is not None
        if not self.text and (in_channels is None or out_channels is None):
            raise ModelError("gpt needs in_channels and out_channels (or a vocab_size for text)")
        self.context, self.horizon, self.out_channels = context, horizon, out_channels
        if self.text:
            self.embed = nn.Embedding(vocab_size, width)  # w_te
        else:
            self.embed = nn.Linear(in_channels, width)  # a value embedding per time step
        self.position = nn.Embedding(context, width)  # w_pe, learned
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerEncoderLayer(
                width, heads, 4 * width, dropout=dropout, activation="gelu:tanh", norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)  # ln_f
        # text: logits by the tied token embedding; series: the next `horizon` steps
        self.head = None if self.text else nn.Linear(width, horizon * out_channels)
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # the two projections into the residual stream
            for projection in (block.attention.out, block.feedforward.contract):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * depth))

    def forward(self, x: torch.Tensor, *, every_position: bool = False) -> torch.Tensor:
        """Text: tokens (batch, T) -> logits (batch, T, vocab_size). Series: values
        (batch, T, in_channels) -> the next steps (batch, horizon, out_channels), or with
        ``every_position`` the forecasts made at each position (batch, T, horizon, out)."""
        if not self.text:
            check_series(x, self.context, "gpt")
        length = x.shape[1]
        positions = torch.arange(length, device=x.device)
        h = self.dropout(self.embed(x) + self.position(positions))  # (batch, T, width)
        for block in self.blocks:
            h = block(h, causal=True)
        h = self.norm(h)
        if self.text:
            return h @ self.embed.weight.T  # (batch, T, vocab_size)
        if not every_position:
            h = h[:, -1:]  # the forecast is read at the last position
        forecasts = self.head(h).unflatten(-1, (self.horizon, self.out_channels))
        return forecasts if every_position else forecasts[:, 0]  # (batch, horizon, out)
