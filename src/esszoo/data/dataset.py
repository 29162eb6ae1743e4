"""Data split and ready for a task: train, validation and test tables in physical units."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from esszoo.data.splits import Split
from esszoo.data.variables import Variable


@dataclass
class Table:
    """One split's samples: inputs ``x`` and targets ``y`` (tensors with samples first).

    Vectors: x (N, C_in), y (N, C_out). Fields: x (N, C, H, W) with NaN where missing;
    class labels y (N,) as int64.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class SplitData:
    """Train, validation and test tables with the variables they hold."""

    inputs: list[Variable]
    targets: list[Variable]
    tables: dict[str, Table]
    split: Split
    dims: tuple[str, ...]
    dropped: dict[str, int]  # samples dropped for missing values, per split
    physics: str | None = None
    classes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def train(self) -> Table:
        return self.tables["train"]

    @property
    def val(self) -> Table:
        return self.tables["val"]

    @property
    def test(self) -> Table:
        return self.tables["test"]
