"""Attention, once for the zoo: the Transformer's scaled dot-product attention over several
heads (Vaswani et al. 2017) and the additive attention of Bahdanau, Cho & Bengio (2015).

Shapes follow the batch-first convention of the sequence models: queries (batch, Tq, width),
keys and values (batch, Tk, width). DETR (Carion et al. 2020) adds positional encodings to
the queries and keys but not to the values, so the three inputs are given apart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, section 3.2.2):
    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K,
    V W_i^V), with Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V (eq. 1), d_k = width / h.

    The h projections of each of Q, K and V are one ``width x width`` linear layer, split into
    heads after it (the same parameters as h separate ones of width / h).
    """

    def __init__(self, width: int, heads: int, *, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not a multiple of {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(width, width, bias=bias)
        self.key = nn.Linear(width, width, bias=bias)
        self.value = nn.Linear(width, width, bias=bias)
        self.out = nn.Linear(width, width, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, T, width) -> (batch, heads, T, width / heads)
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        causal: bool = False,
        padding: torch.Tensor | None = None,
        cache: dict[str, torch.Tensor] | None = None,
        fixed: bool = False,
    ) -> torch.Tensor:
        """Attend from `query` to `key` and `value` (self-attention where they are not
        given). ``causal``: position i sees positions <= i only (a decoder's mask, section
        3.2.3); ``padding``: (batch, Tk), True at keys to ignore.

        ``cache``, for a decoder that runs one step at a time: a dict where the projected
        keys and values stay between calls, so that a step projects its new positions
        only. Keys and values of earlier steps are appended to (self-attention), or, with
        ``fixed``, projected once and reused (attention to the encoder's output)."""
        key = query if key is None else key
        value = key if value is None else value
        batch, length, width = query.shape
        q = self._split(self.query(query))
        if cache is not None and fixed and "key" in cache:
            k, v = cache["key"], cache["value"]
        else:
            k, v = self._split(self.key(key)), self._split(self.value(value))
            if cache is not None and not fixed and "key" in cache:
                k, v = torch.cat([cache["key"], k], 2), torch.cat([cache["value"], v], 2)
        if cache is not None:
            cache["key"], cache["value"] = k, v
        mask = None
        if padding is not None:
            mask = ~padding[:, None, None, :]  # (batch, 1, 1, Tk), True where attended
        if causal:  # the queries are the last `length` of the keys' positions
            earlier = k.shape[2] - length
            seen = torch.ones(length, k.shape[2], dtype=torch.bool, device=q.device)
            seen = seen.tril(diagonal=earlier)
            mask = seen if mask is None else mask & seen
        # softmax(q k^T / sqrt(d_k)) v: (batch, heads, Tq, width / heads)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


class AdditiveAttention(nn.Module):
    """Bahdanau, Cho & Bengio (2015), section 3.1 and appendix A.1.2: the alignment model
    e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j) scores each encoder state h_j against the
    decoder's previous state s_{i-1}; the context c_i = sum_j softmax_j(e_ij) h_j."""

    def __init__(self, query_width: int, key_width: int, width: int):
        super().__init__()
        self.query = nn.Linear(query_width, width, bias=False)  # W_a
        self.key = nn.Linear(key_width, width)  # U_a (the bias of the sum lives here)
        self.score = nn.Linear(width, 1, bias=False)  # v_a

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, projected_keys: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (batch, key_width) and weights (batch, T) for one decoder state `query`
        (batch, query_width) over `keys` (batch, T, key_width). U_a h_j does not change
        while decoding: pass it once computed as `projected_keys` (see `project`)."""
        projected = self.project(keys) if projected_keys is None else projected_keys
        energy = self.score(torch.tanh(self.query(query)[:, None, :] + projected))  # (batch, T, 1)
        weights = torch.softmax(energy.squeeze(-1), dim=-1)  # alpha_ij: (batch, T)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (batch, key_width)
        return context, weights

    def project(self, keys: torch.Tensor) -> torch.Tensor:
        """U_a h_j for every encoder state: (batch, T, width)."""
        return self.key(keys)


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """The fixed positional encodings of Vaswani et al. 2017, section 3.5:
    PE(pos, 2i) = sin(pos / 10000^(2i/width)), PE(pos, 2i+1) = cos(...), as (length, width)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    encoding = torch.zeros(length, width)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return encoding


def sine_positions_2d(
    height: int, width: int, channels: int, *, temperature: float = 10000.0
) -> torch.Tensor:
    """DETR's fixed encodings of the points of a (height, width) map (Carion et al. 2020,
    section 3.2 and appendix A.4): the sinusoids of section 3.5 of Vaswani et al. applied to
    the row and the column apart, each over half the channels, with the coordinates scaled
    to (0, 2 pi] (the official code's ``normalize=True``). Returns (channels, height, width):
    the row's encodings first, then the column's."""
    if channels % 4:
        raise ValueError(f"2-D sine encodings need channels divisible by 4, got {channels}")
    half = channels // 2
    # coordinates 1..n over n, times 2 pi (the official code's cumulative sum of the valid map)
    rows = torch.arange(1, height + 1, dtype=torch.float32) / (height + 1e-6) * 2 * math.pi
    columns = torch.arange(1, width + 1, dtype=torch.float32) / (width + 1e-6) * 2 * math.pi
    # temperature^(2i / half) for the pair (2i, 2i + 1): sin on the first, cos on the second
    exponent = 2 * (torch.arange(half, dtype=torch.float32) // 2) / half
    frequency = temperature**exponent  # (half,)

    def encode(coordinate: torch.Tensor) -> torch.Tensor:
        phase = coordinate[:, None] / frequency  # (n, half)
        return torch.stack([phase[:, 0::2].sin(), phase[:, 1::2].cos()], dim=2).flatten(1)

    by_row = encode(rows).T[:, :, None].expand(half, height, width)
    by_column = encode(columns).T[:, None, :].expand(half, height, width)
    return torch.cat([by_row, by_column], dim=0)
