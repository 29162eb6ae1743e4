"""BERT: a bidirectional Transformer encoder pretrained by filling in what was masked.

Paper: Devlin, Chang, Lee & Toutanova (2019), "BERT: Pre-training of deep bidirectional
Transformers for language understanding" (NAACL).

The model (section 3 and figure 2):

- the input is the sum of token, segment (sentence A or B) and learned position
  embeddings, layer-normalized and dropped out;
- a stack of Transformer encoder layers as Vaswani et al. (2017) describe them (post-norm,
  every position attends to every other: bidirectional), with GELU in the feed-forward
  network of 4 x width and layer normalization with epsilon 1e-12;
- a pooler, a dense layer with tanh on the first token ([CLS]), for sentence-level tasks.
- Pretraining (section 3.1): 15% of the tokens are chosen and mostly replaced by [MASK];
  the network predicts the originals from both sides.

Reference configuration: BERT-base uncased, vocabulary 30,522, 512 positions, 2 segment
types, 12 layers of width 768 with 12 heads, with the pooler: 109,482,240 parameters, the
count of the released model (without the pretraining heads).

Earth series (``vocab_size`` unset), the departures: tokens become a linear embedding of
the ``in_channels`` values of each time step, and the steps to forecast are [MASK]
positions appended after the ``T`` observed ones, so a forecast is masked-value prediction
from the past: the segment embedding tells observed (A) from masked (B) steps, and a
linear head reads the ``out_channels`` of the ``horizon`` masked positions. ``hidden``
(batch, T) hides observed steps behind [MASK] as well (masked spans for pretraining), and
``every_position=True`` returns the head at all T + horizon positions. There is no pooler.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_series
from esszoo.layers.transformer import TransformerEncoderLayer
from esszoo.registry import Paper, register_model


@register_model(
    name="bert",
    family="sequence",
    tasks=("forecasting",),
    paper=Paper(
        authors="Devlin, Chang, Lee & Toutanova",
        year=2019,
        title="BERT: Pre-training of deep bidirectional Transformers for language understanding",
        venue="NAACL",
        arxiv="1810.04805",
    ),
    reference=dict(vocab_size=30_522, context=512, depth=12, width=768, heads=12),
    reference_params=109_482_240,
    reference_note="BERT-base uncased as released, with the pooler",
    small=dict(in_channels=3, out_channels=2, horizon=4, context=16, depth=2, width=16, heads=2),
    example_input=(4, 8, 3),
)
class BERT(nn.Module):
    """Bidirectional Transformer encoder: the masked future filled in from the past."""

    def __init__(
        self,
        *,
        in_channels: int | None = None,
        out_channels: int | None = None,
        horizon: int = 1,
        vocab_size: int | None = None,
        context: int = 512,
        segments: int = 2,
        depth: int = 12,
        width: int = 768,
        heads: int = 12,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.text = vocab_size is not None
        if not self.text and (in_channels is None or out_channels is None):
            raise ModelError("bert needs in_channels and out_channels (or a vocab_size for text)")
        self.context, self.horizon = context, horizon
        if self.text:
            self.embed = nn.Embedding(vocab_size, width)
        else:
            self.embed = nn.Linear(in_channels, width)
            self.mask = nn.Parameter(torch.zeros(width))  # the [MASK] embedding
        self.position = nn.Embedding(context, width)
        self.segment = nn.Embedding(segments, width)
        self.embed_norm = nn.LayerNorm(width, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(
                width, heads, 4 * width, dropout=dropout, activation="gelu", eps=1e-12
            )
            for _ in range(depth)
        )
        if self.text:
            self.pooler = nn.Linear(width, width)
        else:
            self.head = nn.Linear(width, out_channels)
        for module in self.modules():  # section A.2: truncated normal, std 0.02
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def encode(self, embedded: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """Embedded steps (batch, L, width) and their segments (batch, L) -> (batch, L, width)."""
        length = embedded.shape[1]
        if length > self.context:
            raise ModelError(
                f"bert sees at most {self.context} positions, got {length}",
                "shorten the window and horizon, or build the model with a larger context",
            )
        positions = torch.arange(length, device=embedded.device)
        h = embedded + self.position(positions) + self.segment(segments)
        h = self.dropout(self.embed_norm(h))
        for layer in self.layers:
            h = layer(h)
        return h

    def forward(
        self,
        x: torch.Tensor,
        *,
        segments: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
        every_position: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Text: tokens (batch, T) -> (states (batch, T, width), pooled (batch, width)).
        Series: values (batch, T, in_channels) -> the masked next steps (batch, horizon,
        out_channels); ``hidden`` (batch, T), True at observed steps to mask as well."""
        if self.text:
            segments = torch.zeros_like(x) if segments is None else segments
            h = self.encode(self.embed(x), segments)
            return h, torch.tanh(self.pooler(h[:, 0]))
        check_series(x, self.context - self.horizon, "bert")
        batch, length, _ = x.shape
        observed = self.embed(x)  # (batch, T, width)
        if hidden is not None:
            observed = torch.where(hidden[..., None], self.mask, observed)
        future = self.mask.expand(batch, self.horizon, -1)  # (batch, horizon, width)
        segments = torch.cat(
            [
                torch.zeros(batch, length, dtype=torch.long, device=x.device),
                torch.ones(batch, self.horizon, dtype=torch.long, device=x.device),
            ],
            dim=1,
        )
        h = self.encode(torch.cat([observed, future], dim=1), segments)
        out = self.head(h)  # (batch, T + horizon, out_channels)
        return out if every_position else out[:, length:]
