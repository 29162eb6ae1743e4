"""Data split and ready for a task: train, validation and test tables in physical units."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from esszoo.data.grid import Grid
from esszoo.data.splits import Split
from esszoo.data.variables import Variable


@dataclass
class Table:
    """One split's samples: inputs ``x`` and targets ``y`` (tensors with samples first).

    Vectors: x (N, C_in), y (N, C_out). Fields: x (N, C, H, W) with NaN where missing;
    class labels y (N,) as int64. ``mask`` (inpainting): (N, 1 or C, H, W), 1 where a value
    is observed, 0 where it is hidden or missing. ``coords``: coordinates of each sample
    along the sample dimension (e.g. its time), for baselines that need them.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None
    coords: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def rows(self, start: int, stop: int) -> Table:
        """Samples [start, stop) (views, no copy)."""
        return Table(
            self.x[start:stop],
            self.y[start:stop],
            None if self.mask is None else self.mask[start:stop],
            {name: values[start:stop] for name, values in self.coords.items()},
        )

    def head(self, count: int) -> Table:
        return self.rows(0, count)

    def blocks(self) -> Iterator[Table]:
        """The split as blocks of samples for passes that accumulate (statistics, scores):
        in memory, one block; streamed from disk (`esszoo.data.stream`), many."""
        yield self


@dataclass
class SplitData:
    """Train, validation and test tables with the variables they hold."""

    inputs: list[Variable]
    targets: list[Variable]
    tables: dict[str, Table]
    split: Split
    dims: tuple[str, ...]
    dropped: dict[str, int | None]  # samples dropped for missing values, per split
    physics: str | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)
    grid: Grid | None = None  # the grid of fields (None for tables of points)
    window: tuple[int, int] | None = None  # (past, future) frames of windows of fields
    frame_step: float | None = None  # seconds between the frames of windows, if regular
    notes: list[str] = field(default_factory=list)  # what the run should say of its data

    @property
    def streamed(self) -> bool:
        """Whether the splits stay on disk and are read a block at a time."""
        return not isinstance(self.tables["train"], Table)

    @property
    def train(self) -> Table:
        return self.tables["train"]

    @property
    def val(self) -> Table:
        return self.tables["val"]

    @property
    def test(self) -> Table:
        return self.tables["test"]
