"""Boxes on a grid, and on a grid that goes round the globe.

A box is (cx, cy, w, h): its centre and size as fractions of the grid's width (columns,
x) and height (rows, y), with the edges of grid cells as its edges, DETR's normalized
format (Carion et al. 2020, section 3.2); ``(x0, y0, x1, y1)`` are its corners. On a global
grid the first column neighbours the last, so a box may cross that edge (the dateline of
the grid): it is then one box whose x0 < 0 or x1 > 1, its centre kept in [0, 1). Two boxes
on such a grid are compared through the copy of one, shifted by a whole turn, that lies
nearest the other (`nearest_copy`); on any other grid, as they are.
"""

from __future__ import annotations

import numpy as np
import torch


def to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def to_centres(corners: torch.Tensor) -> torch.Tensor:
    """(..., 4) (x0, y0, x1, y1) -> (cx, cy, w, h)."""
    x0, y0, x1, y1 = corners.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def nearest_copy(boxes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`boxes` (..., 4) shifted by whole turns in x to the copy whose centre lies nearest
    the centre of `reference` (broadcast against it): how a box on a global grid is
    compared with another."""
    turns = torch.round(reference[..., 0] - boxes[..., 0])
    return torch.cat([(boxes[..., 0] + turns)[..., None], boxes[..., 1:]], dim=-1)


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalized IoU (Rezatofighi et al. 2019, Algorithm 1) of every box of `a` (N, 4)
    with every box of `b` (M, 4 or N, M, 4, already paired), both (cx, cy, w, h): (N, M).
    GIoU = IoU - |C minus (A union B)| / |C|, C the smallest box around both; in [-1, 1]."""
    first = to_corners(a)[:, None, :]  # (N, 1, 4)
    second = to_corners(b if b.dim() == 3 else b[None])  # (N or 1, M, 4)
    low = torch.maximum(first[..., :2], second[..., :2])
    high = torch.minimum(first[..., 2:], second[..., 2:])
    intersection = (high - low).clamp(min=0).prod(-1)
    area_a = (first[..., 2:] - first[..., :2]).prod(-1)
    area_b = (second[..., 2:] - second[..., :2]).prod(-1)
    union = area_a + area_b - intersection
    iou = intersection / union.clamp(min=1e-12)
    hull = (
        torch.maximum(first[..., 2:], second[..., 2:])
        - torch.minimum(first[..., :2], second[..., :2])
    ).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-12)


def region_boxes(labels: np.ndarray, count: int, wraps: bool) -> np.ndarray:
    """The box (cx, cy, w, h) around each region 1..`count` of a labelled map (H, W), the
    cells of a region inside it, as (count, 4). With `wraps`, a region that touches both
    side edges is boxed across them: its columns are a set on a circle, and the box spans
    them all but the widest run of columns the region leaves empty."""
    height, width = labels.shape
    boxes = np.zeros((count, 4))
    for region in range(1, count + 1):
        rows, columns = np.nonzero(labels == region)
        y0, y1 = rows.min(), rows.max() + 1
        x0, x1 = columns.min(), columns.max() + 1
        if wraps and x0 == 0 and x1 == width:
            x0, x1 = _around(np.unique(columns), width)
        cx = ((x0 + x1) / 2 / width) % 1.0
        boxes[region - 1] = (cx, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    return boxes


def _around(columns: np.ndarray, width: int) -> tuple[int, int]:
    """The shortest span [x0, x1) on a circle of `width` columns holding the sorted
    `columns`: from the column after the widest gap between them to the one before it
    (x1 may pass `width`: the span crosses the edge)."""
    gaps = np.diff(np.r_[columns, columns[0] + width]) - 1  # empty columns after each
    widest = int(np.argmax(gaps))
    x0 = int(columns[(widest + 1) % len(columns)])
    return x0, x0 + (int(columns[widest]) - x0) % width + 1
