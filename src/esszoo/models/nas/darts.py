"""A network of DARTS cells: the architecture that a differentiable search found, retrained.

Paper: Liu, Simonyan & Yang (2019), "DARTS: Differentiable Architecture Search", ICLR,
arXiv:1806.09055. The search (`esszoo.automl`) finds two cells, a normal cell that keeps the
grid and a reduction cell that halves it; this file stacks them into the network that is
trained from scratch and evaluated (section 3.3, appendix A.2), as the paper's CIFAR-10
networks are.

Paper to code:

- Section 2.1 and figure 1, a cell: a directed acyclic graph of N = 7 nodes. Its two
  inputs are the outputs of the two previous cells (``preprocess0`` and ``preprocess1``
  bring them to the cell's width: a 1x1 ReLU-conv-BN, or a `FactorizedReduce` where the
  cell before last had a finer grid); each of the 4 intermediate nodes is the sum of two
  operations on two earlier nodes (the genotype's pairs (operation, input node)); the
  output is the concatenation of the intermediate nodes (``concat``), 4x the cell's width.
- Section 3.1: in a reduction cell the operations next to the inputs have stride 2.
- Appendix A.2, the evaluation network: a 3x3 convolution stem of 3C channels and batch
  norm, then L cells, the ones at 1/3 and 2/3 of the depth reduction cells that double the
  width (C = 36 and L = 20 for CIFAR-10), global average pooling and a linear classifier;
  an auxiliary classifier at 2/3 of the depth (weight 0.4) and drop-path (0.2 in the
  paper's training), which the recipe's ``aux`` and ``drop_path`` turn on.
- Table 1 and figure 5: the cells that the second-order search found on CIFAR-10
  (``DARTS_V2``) and the first-order ones (``DARTS_V1``), as the authors release them.

Departures, and why:

- The auxiliary head pools its 8 x 8 map (of a 32 x 32 input) by a 5 x 5 average of
  stride 3 to 2 x 2; here an adaptive average to 2 x 2, so that it runs on any grid (the
  same output shape; on 8 x 8 the windows are 4 x 4 blocks instead of overlapping 5 x 5).
- `FactorizedReduce` pads the shifted grid by one point so that odd sides work; on even
  sides it is the authors' operation.

Reference configuration (the card's count): DARTS_V2 cells, C = 36, L = 20, 3 input
channels, 10 classes, counted without the auxiliary head as the paper counts ("3.3M").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers.grid import check_grid
from esszoo.layers.nas import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN, drop_path
from esszoo.layers.padding import set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)  # strided operations keep at least one point
PAPER = Paper(
    authors="Liu, Simonyan & Yang",
    year=2019,
    title="DARTS: Differentiable Architecture Search",
    venue="ICLR",
    arxiv="1806.09055",
)


@dataclass(frozen=True)
class Genotype:
    """Two cells as their operations: pairs (operation, input node) for each intermediate
    node in turn (two per node), and the nodes the output concatenates; node 0 and 1 are
    the cell's inputs."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    @classmethod
    def of(cls, value: str | dict[str, Any] | Genotype) -> Genotype:
        """A genotype by name (``DARTS_V2``), or from its dict (as a search writes it)."""
        if isinstance(value, Genotype):
            return value
        if isinstance(value, str):
            if value not in GENOTYPES:
                raise ModelError(f"unknown genotype '{value}'", f"known: {', '.join(GENOTYPES)}")
            return GENOTYPES[value]
        try:
            genotype = cls(
                normal=tuple((str(op), int(node)) for op, node in value["normal"]),
                normal_concat=tuple(int(n) for n in value["normal_concat"]),
                reduce=tuple((str(op), int(node)) for op, node in value["reduce"]),
                reduce_concat=tuple(int(n) for n in value["reduce_concat"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(
                f"a genotype is a name or a mapping of normal, normal_concat, reduce and "
                f"reduce_concat ({error})"
            ) from None
        for op, node in genotype.normal + genotype.reduce:
            if op not in PRIMITIVES:
                raise ModelError(f"genotype operation '{op}' is not one of {PRIMITIVES}")
            if node < 0:
                raise ModelError(f"genotype input node {node} is negative")
        return genotype

    def to_dict(self) -> dict[str, Any]:
        return {
            "normal": [list(pair) for pair in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(pair) for pair in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def skip_share(self) -> float:
        """The share of the cells' operations that are skip connections (DARTS's collapse
        onto them shows here)."""
        ops = [op for op, _ in self.normal + self.reduce]
        return sum(op == "skip_connect" for op in ops) / len(ops)


GENOTYPES = {
    "DARTS_V1": Genotype(
        normal=(
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("skip_connect", 2),
        ),
        normal_concat=(2, 3, 4, 5),
        reduce=(
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("avg_pool_3x3", 0),
        ),
        reduce_concat=(2, 3, 4, 5),
    ),
    "DARTS_V2": Genotype(
        normal=(
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 0),
            ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1),
            ("skip_connect", 0),
            ("skip_connect", 0),
            ("dil_conv_3x3", 2),
        ),
        normal_concat=(2, 3, 4, 5),
        reduce=(
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("max_pool_3x3", 1),
        ),
        reduce_concat=(2, 3, 4, 5),
    ),
}


class Cell(nn.Module):
    """Figure 1 (d): a derived cell, each intermediate node the sum of its two operations."""

    def __init__(
        self,
        genotype: Genotype,
        c_prev_prev: int,
        c_prev: int,
        width: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, width, True)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, width, 1, 1, 0, True)
        )
        self.preprocess1 = ReLUConvBN(c_prev, width, 1, 1, 0, True)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.inputs = [node for _, node in pairs]
        for step, node in enumerate(self.inputs):
            if node >= 2 + step // 2:
                raise ModelError(
                    f"genotype: operation {step} of a cell reads node {node}, which comes later"
                )
        self.ops = nn.ModuleList(
            OPS[op](width, 2 if reduction and node < 2 else 1, True) for op, node in pairs
        )
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # (B, C, h, w) each
        for first in range(0, len(self.ops), 2):
            total = 0
            for op, node in ((self.ops[k], self.inputs[k]) for k in (first, first + 1)):
                h = op(states[node])
                if self.training and drop > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop)
                total = total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, multiplier * C, ...)


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier at 2/3 of the depth (appendix A.2)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),  # the authors: AvgPool2d(5, stride=3) of an 8 x 8 map
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DARTSNetwork(nn.Module):
    """Appendix A.2: stem, `cells` cells (reductions at 1/3 and 2/3), pooling, classifier."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        genotype: Genotype,
        width: int,
        cells: int,
        aux: bool,
        drop_path: float,
    ):
        super().__init__()
        self.drop_path = drop_path
        self.aux = aux
        stem = 3 * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem)
        )
        c_prev_prev, c_prev, current = stem, stem, width
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_after = 2 * cells // 3
        aux_channels = c_prev
        for index in range(cells):
            reduction = index in (cells // 3, 2 * cells // 3)
            if reduction:
                current *= 2
            cell = Cell(genotype, c_prev_prev, c_prev, current, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * current
            if index == self.aux_after:
                aux_channels = c_prev
        self.aux_head = AuxiliaryHead(aux_channels, num_classes) if aux else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_grid(x, MIN_SIZE, "darts")
        # x: (B, C_in, H, W) -> (B, 3C, H, W) -> cells, halving the grid twice
        s0 = s1 = self.stem(x)
        aux = None
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path)
            if index == self.aux_after and self.aux_head is not None and self.training:
                aux = self.aux_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))  # (B, num_classes)
        return (logits, aux) if aux is not None else logits


@register_model(
    family="nas",
    tasks=("classification",),
    paper=PAPER,
    reference=dict(in_channels=3, num_classes=10),
    reference_params=3_349_342,
    reference_note="the CIFAR-10 evaluation network of appendix A.2 with the second-order "
    "cells (DARTS_V2): C 36, 20 cells, counted without the auxiliary head as the paper "
    "counts (Table 1: 3.3M; the authors' train.py prints 3.349342 MB)",
    small=dict(in_channels=3, num_classes=5, width=4, cells=5),
    example_input=(2, 3, 20, 28),
    min_size=MIN_SIZE,
)
def darts(
    *,
    in_channels: int,
    num_classes: int,
    genotype: str | dict[str, Any] = "DARTS_V2",
    width: int = 36,
    cells: int = 20,
    aux: bool = False,
    drop_path: float = 0.0,
    padding: str = "zeros",
) -> DARTSNetwork:
    """DARTS (Liu et al. 2019): a network of the cells a search found (a genotype by name, or
    the mapping a search writes), `cells` deep and `width` wide, as the paper retrains them."""
    if cells < 3:
        raise ModelError(f"a DARTS network needs at least 3 cells (two reduce), got {cells}")
    net = DARTSNetwork(
        in_channels=in_channels,
        num_classes=num_classes,
        genotype=Genotype.of(genotype),
        width=width,
        cells=cells,
        aux=aux,
        drop_path=drop_path,
    )
    return set_padding(net, padding)


class DenseDARTSNetwork(nn.Module):
    """The dense search space's network: stem, `cells` normal cells on the input's grid
    (no reduction cell), and a 1x1 convolution to the output channels."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        genotype: Genotype,
        width: int,
        cells: int,
        drop_path: float,
    ):
        super().__init__()
        self.drop_path = drop_path
        stem = 3 * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem)
        )
        c_prev_prev, c_prev = stem, stem
        self.cells = nn.ModuleList()
        for _ in range(cells):
            cell = Cell(genotype, c_prev_prev, c_prev, width, False, False)
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, cell.multiplier * width
        self.head = nn.Conv2d(c_prev, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, MIN_SIZE, "darts_dense")
        s0 = s1 = self.stem(x)  # (B, 3C, H, W), the grid kept throughout
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_path)
        return self.head(s1)  # (B, out_channels, H, W)


@register_model(
    family="nas",
    tasks=("segmentation", "translation"),
    paper=PAPER,
    reference=dict(in_channels=1, out_channels=2),
    reference_params=27_346,
    reference_note="no published configuration, counted here: the network of esszoo's dense "
    "DARTS search space (esszoo.automl.darts, dense=True) at its defaults, the DARTS_V2 normal "
    "cell, C 16, 4 cells, one input channel and two outputs; the grid kept at every depth",
    small=dict(in_channels=3, out_channels=2, width=4, cells=2),
    example_input=(2, 3, 9, 13),
    min_size=MIN_SIZE,
)
def darts_dense(
    *,
    in_channels: int,
    out_channels: int,
    genotype: str | dict[str, Any] = "DARTS_V2",
    width: int = 16,
    cells: int = 4,
    drop_path: float = 0.0,
    padding: str = "zeros",
) -> DenseDARTSNetwork:
    """DARTS cells for field-to-field tasks: `cells` normal cells of a genotype (a name, or
    the mapping a dense search writes) on the input's grid, and a 1x1 head."""
    net = DenseDARTSNetwork(
        in_channels=in_channels,
        out_channels=out_channels,
        genotype=Genotype.of(genotype),
        width=width,
        cells=cells,
        drop_path=drop_path,
    )
    return set_padding(net, padding)
