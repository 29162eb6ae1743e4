"""Padding a grid up to a multiple of a network's total stride, and cropping back.

An encoder-decoder that halves its grid k times needs sides divisible by 2^k for its
skips and its output to line up with its input. Rather than refuse a 73 x 144 or a
721 x 1440 grid, the zoo's encoder-decoders pad every spatial side up to the next multiple
(half the extra points before, half after), run, and crop their output back to the input
grid with the index that `pad_to_multiple` returns. Latitude (and level) pad with zeros;
longitude pads with zeros too, or, on a global grid (``wrap_longitude``), with the columns
from the other side of the dateline (`earth_pad`), so the padding continues the field.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from esszoo.layers.padding import earth_pad


def pad_to_multiple(
    x: torch.Tensor, multiple: int, dims: int, wrap_longitude: bool = False
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the last `dims` dimensions of `x` up to multiples of `multiple`.

    Returns the padded tensor and the index (``out[index]``) that crops an output on the
    padded grid back to the grid of `x`, whatever its number of channels.
    """
    sizes = tuple(x.shape[-dims:])
    before = [(-size % multiple) // 2 for size in sizes]
    after = [-size % multiple - b for size, b in zip(sizes, before, strict=True)]
    crop = (Ellipsis, *(slice(b, b + size) for b, size in zip(before, sizes, strict=True)))
    if wrap_longitude and after[-1]:
        # earth_pad pads both sides alike: wrap the larger side's amount, drop the surplus
        x = earth_pad(x, 0, after[-1])[..., after[-1] - before[-1] :]
        before[-1] = after[-1] = 0
    # F.pad takes (last before, last after, second-to-last before, ...)
    pads = [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)]
    return (F.pad(x, pads) if any(pads) else x), crop
