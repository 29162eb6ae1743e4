"""Transformer layers, once for the zoo (Vaswani et al. 2017, section 3.1 and figure 1).

An encoder layer is self-attention then a position-wise feed-forward network, each inside a
residual connection with layer normalization; a decoder layer puts attention to the
encoder's output (cross-attention) between the two. The paper normalizes after each
residual sum (post-norm: x = LayerNorm(x + Sublayer(x)), as BERT does); GPT-2 moved the
normalization to the input of each sublayer (pre-norm: x = x + Sublayer(LayerNorm(x)),
Radford et al. 2019, section 2.3), which trains deep stacks more stably: ``norm_first``.

DETR adds positional encodings to the queries and keys of every layer but not to the
values (Carion et al. 2020, section 3.2 and figure 10): ``position`` and ``memory_position``.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.layers.activations import activation_layer
from esszoo.layers.attention import MultiHeadAttention


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 (eq. 2), applied at every position alike; GPT
    and BERT use GELU in place of the ReLU."""

    def __init__(self, width: int, hidden: int, *, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.expand = nn.Linear(width, hidden)
        self.activation = activation_layer(activation)
        self.contract = nn.Linear(hidden, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, T, width) -> (batch, T, hidden) -> (batch, T, width)
        return self.dropout(self.contract(self.dropout(self.activation(self.expand(x)))))


def _with(x: torch.Tensor, position: torch.Tensor | None) -> torch.Tensor:
    return x if position is None else x + position


class TransformerEncoderLayer(nn.Module):
    """Self-attention and feed-forward, each a residual sublayer with layer normalization."""

    def __init__(
        self,
        width: int,
        heads: int,
        hidden: int,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(width, heads, dropout=dropout)
        self.feedforward = FeedForward(width, hidden, activation=activation, dropout=dropout)
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.feedforward_norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)  # on each sublayer's output (section 5.4)

    def _attend(
        self,
        x: torch.Tensor,
        position: torch.Tensor | None,
        causal: bool,
        padding: torch.Tensor | None,
    ) -> torch.Tensor:
        keyed = _with(x, position)
        return self.dropout(self.attention(keyed, keyed, x, causal=causal, padding=padding))

    def forward(
        self,
        x: torch.Tensor,
        *,
        position: torch.Tensor | None = None,
        causal: bool = False,
        padding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # x: (batch, T, width) -> (batch, T, width)
        if self.norm_first:
            x = x + self._attend(self.attention_norm(x), position, causal, padding)
            return x + self.feedforward(self.feedforward_norm(x))
        x = self.attention_norm(x + self._attend(x, position, causal, padding))
        return self.feedforward_norm(x + self.feedforward(x))


class TransformerDecoderLayer(nn.Module):
    """Masked self-attention, attention to the encoder's output, and feed-forward (figure 1,
    right), each a residual sublayer with layer normalization."""

    def __init__(
        self,
        width: int,
        heads: int,
        hidden: int,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(width, heads, dropout=dropout)
        self.cross_attention = MultiHeadAttention(width, heads, dropout=dropout)
        self.feedforward = FeedForward(width, hidden, activation=activation, dropout=dropout)
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.cross_attention_norm = nn.LayerNorm(width, eps=eps)
        self.feedforward_norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        position: torch.Tensor | None = None,
        memory_position: torch.Tensor | None = None,
        causal: bool = True,
        memory_padding: torch.Tensor | None = None,
        cache: dict[str, dict] | None = None,
    ) -> torch.Tensor:
        """x: (batch, Tq, width), the decoder's states; memory: (batch, Tk, width), the
        encoder's output. ``causal``: each output position sees the earlier ones only (the
        autoregressive decoder); DETR's object queries see each other (causal=False).
        ``cache``: a dict this layer keeps its keys and values in while it decodes one
        step at a time (x then holds the new steps only)."""
        own = None if cache is None else cache.setdefault("self", {})
        encoder = None if cache is None else cache.setdefault("memory", {})

        def attend(y: torch.Tensor) -> torch.Tensor:
            keyed = _with(y, position)
            return self.dropout(self.attention(keyed, keyed, y, causal=causal, cache=own))

        def cross(y: torch.Tensor) -> torch.Tensor:
            keys = _with(memory, memory_position)
            attended = self.cross_attention(
                _with(y, position), keys, memory, padding=memory_padding, cache=encoder, fixed=True
            )
            return self.dropout(attended)

        if self.norm_first:
            x = x + attend(self.attention_norm(x))
            x = x + cross(self.cross_attention_norm(x))
            return x + self.feedforward(self.feedforward_norm(x))
        x = self.attention_norm(x + attend(x))
        x = self.cross_attention_norm(x + cross(x))
        return self.feedforward_norm(x + self.feedforward(x))
