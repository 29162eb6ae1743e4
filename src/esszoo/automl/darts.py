"""DARTS: differentiable architecture search (Liu, Simonyan & Yang 2019, ICLR).

The choice of an operation on each edge of a cell is relaxed into a softmax over all of
them, so that the architecture becomes continuous weights alpha that gradient descent can
train beside the network's weights w. The equations of the paper, and where they are:

- Eq. 1, the mixed operation: o_bar(x) = sum_o softmax(alpha)_o o(x), over the eight
  operations of `esszoo.layers.nas.PRIMITIVES` (``MixedOp``). Pooling is followed by batch
  norm without affine values, as in the authors' search code, so that its scale is the
  others'.
- Section 2.1, the cell (``SearchCell``): 2 input nodes, 4 intermediate nodes each the sum
  of mixed operations on every earlier node (14 edges), the output their concatenation;
  alpha has one row of 8 weights per edge, one matrix shared by the normal cells and one by
  the reduction cells (``SearchNetwork.alphas``).
- Eq. 3-4, the bilevel problem: min_alpha L_val(w*(alpha), alpha) with w* = argmin_w
  L_train(w, alpha). Eq. 5-6 (`Architect.step`), its approximation by one step:
  grad_alpha L_val(w - xi grad_w L_train(w, alpha), alpha); ``order=1`` sets xi = 0 (the
  first-order DARTS), ``order=2`` keeps it and the second term, -xi grad^2_{alpha,w}
  L_train(w, alpha) grad_w' L_val(w', alpha), Eq. 7, by the finite difference
  (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps) with
  w+- = w +- eps grad_w' L_val(w', alpha), eps = 0.01 / ||grad_w' L_val|| (Eq. 8).
- Section 2.4, the discrete cell (``derive``): for each intermediate node the 2 strongest
  incoming edges, each edge's strength its strongest operation other than none, and that
  operation kept.
- Section 3.1 and appendix A.1.1, the settings: the weights by SGD (momentum 0.9, learning
  rate 0.025 annealed by cosine to 0.001, weight decay 3e-4), the architecture by Adam
  (3e-4, betas 0.5 and 0.999, weight decay 1e-3), 8 cells of 16 channels, the training
  data split in halves for the two, xi equal to the weights' learning rate.

DARTS collapses onto skip connections as its search runs on (Zela et al. 2020; Chen et al.
2019): parameter-free operations win early. Two published remedies, ``remedy``:
``skip_cap`` (P-DARTS, Chen et al. 2019, section 3.3: the derived normal cell keeps at
most 2 skip connections, the others replaced by their edges' next strongest operation) and
``auxiliary_skip`` (DARTS-, Chu et al. 2021: every edge adds beta x, a skip outside the
softmax that takes the advantage of residual connections away from the competition, beta
decaying linearly from 1 to 0 over the search).

``dense=True`` is the search space for field-to-field tasks: every cell a normal cell, the
grid kept at every depth (no reduction), and a 1x1 convolution to the output channels, so
that a cell is chosen for segmentation or translation as for classification.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.layers.nas import OPS, PRIMITIVES, FactorizedReduce, ReLUConvBN
from esszoo.models.nas.darts import Genotype

STEPS = 4  # intermediate nodes of a cell
EDGES = sum(2 + node for node in range(STEPS))  # 14
SKIP_CAP = 2  # P-DARTS: skip connections kept in the normal cell, at most
REMEDIES = ("none", "skip_cap", "auxiliary_skip")


class MixedOp(nn.Module):
    """Eq. 1: the softmax-weighted sum of every operation on one edge."""

    def __init__(self, width: int, stride: int):
        super().__init__()
        self.ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = OPS[name](width, stride, False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(width, affine=False))
            self.ops.append(op)
        self.stride = stride

    def forward(self, x: torch.Tensor, weights: torch.Tensor, beta: float) -> torch.Tensor:
        mixed = sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))
        if beta and self.stride == 1:  # DARTS-'s auxiliary skip, outside the softmax
            mixed = mixed + beta * x
        return mixed


class SearchCell(nn.Module):
    """Section 2.1: every intermediate node sums the mixed operations on all earlier nodes."""

    def __init__(
        self, c_prev_prev: int, c_prev: int, width: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(c_prev_prev, width, False)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, width, 1, 1, 0, False)
        )
        self.preprocess1 = ReLUConvBN(c_prev, width, 1, 1, 0, False)
        self.edges = nn.ModuleList(
            MixedOp(width, 2 if reduction and source < 2 else 1)
            for node in range(STEPS)
            for source in range(2 + node)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, beta: float
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(STEPS):
            node = sum(
                self.edges[offset + j](state, weights[offset + j], beta)
                for j, state in enumerate(states)
            )
            offset += len(states)
            states.append(node)
        return torch.cat(states[-STEPS:], dim=1)  # (B, 4 * width, h, w)

    def sampled(
        self, s0: torch.Tensor, s1: torch.Tensor, pairs: tuple[tuple[str, int], ...]
    ) -> torch.Tensor:
        """One discrete cell of the shared weights (ENAS): each intermediate node the sum of
        its two (operation, input node) pairs, each run by that edge's own operation."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for node in range(STEPS):
            chosen = pairs[2 * node : 2 * node + 2]
            states.append(
                sum(
                    self.edges[offset + source].ops[PRIMITIVES.index(op)](states[source])
                    for op, source in chosen
                )
            )
            offset += 2 + node
        return torch.cat(states[-STEPS:], dim=1)


class SearchNetwork(nn.Module):
    """The supernet: a stem, `cells` search cells (reductions at 1/3 and 2/3 unless
    `dense`), and a classifier or, with `dense`, a 1x1 convolution to `out_channels`."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        width: int = 16,
        cells: int = 8,
        dense: bool = False,
    ):
        super().__init__()
        self.dense = dense
        stem = 3 * width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem)
        )
        c_prev_prev, c_prev, current = stem, stem, width
        reduction_prev = False
        self.cells = nn.ModuleList()
        for index in range(cells):
            reduction = not dense and index in (cells // 3, 2 * cells // 3)
            if reduction:
                current *= 2
            self.cells.append(SearchCell(c_prev_prev, c_prev, current, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, STEPS * current
        self.head = (
            nn.Conv2d(c_prev, out_channels, 1)
            if dense
            else nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_prev, out_channels)
            )
        )
        # alpha (section 2.1): small random values, as the authors start them
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(EDGES, len(PRIMITIVES)))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(EDGES, len(PRIMITIVES)))
        self.beta = 0.0  # DARTS-'s auxiliary skip weight, set by the search
        self.genotype_in_use: Genotype | None = None  # ENAS: run these cells alone

    def alphas(self) -> list[nn.Parameter]:
        """The architecture's weights: a dense network has no reduction cell to search."""
        return [self.alpha_normal] if self.dense else [self.alpha_normal, self.alpha_reduce]

    def weights(self) -> list[nn.Parameter]:
        """The network's weights w (everything but alpha)."""
        return [p for n, p in self.named_parameters() if not n.startswith("alpha_")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        if self.genotype_in_use is not None:  # ENAS: the sampled cells, nothing mixed
            cells = self.genotype_in_use
            for cell in self.cells:
                s0, s1 = s1, cell.sampled(s0, s1, cells.reduce if cell.reduction else cells.normal)
            return self.head(s1)
        normal = F.softmax(self.alpha_normal, dim=-1)
        reduce = F.softmax(self.alpha_reduce, dim=-1)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal, self.beta)
        return self.head(s1)

    def genotype(self, remedy: str = "none") -> Genotype:
        """Section 2.4: the discrete cells of the present alpha."""
        cap = SKIP_CAP if remedy == "skip_cap" else None
        concat = tuple(range(2, 2 + STEPS))
        normal = derive(self.alpha_normal, skip_cap=cap)
        return Genotype(  # a dense network's genotype repeats its normal cell as the reduction
            normal=normal,
            normal_concat=concat,
            reduce=normal if self.dense else derive(self.alpha_reduce),
            reduce_concat=concat,
        )


def derive(alpha: torch.Tensor, skip_cap: int | None = None) -> tuple[tuple[str, int], ...]:
    """For each intermediate node, its 2 strongest incoming edges (an edge's strength: its
    strongest operation but none) with that operation; with `skip_cap`, at most that many
    skip connections in the cell, the weakest others given their next strongest operation."""
    weights = F.softmax(alpha.detach(), dim=-1).cpu()
    none = PRIMITIVES.index("none")
    choices: list[list[tuple[float, str, int, torch.Tensor]]] = []
    offset = 0
    for node in range(STEPS):
        rows = weights[offset : offset + 2 + node]
        candidates = []
        for source, row in enumerate(rows):
            masked = row.clone()
            masked[none] = -1.0
            best = int(masked.argmax())
            candidates.append((float(masked[best]), PRIMITIVES[best], source, masked))
        candidates.sort(key=lambda c: -c[0])
        choices.append(candidates[:2])
        offset += 2 + node
    if skip_cap is not None:
        skip = PRIMITIVES.index("skip_connect")
        chosen = [
            (n, k) for n in range(STEPS) for k in range(2) if choices[n][k][1] == "skip_connect"
        ]
        chosen.sort(key=lambda nk: choices[nk[0]][nk[1]][0])  # weakest first
        for n, k in chosen[: max(len(chosen) - skip_cap, 0)]:
            strength, _, source, masked = choices[n][k]
            masked = masked.clone()
            masked[skip] = -1.0
            best = int(masked.argmax())
            choices[n][k] = (float(masked[best]), PRIMITIVES[best], source, masked)
    return tuple((op, source) for pair in choices for _, op, source, _ in pair)


class Architect:
    """Eq. 6-8: the architecture's step on a validation batch, first or second order."""

    def __init__(
        self,
        net: SearchNetwork,
        loss: callable,
        *,
        order: int = 2,
        lr: float = 3e-4,
        weight_decay: float = 1e-3,
    ):
        if order not in (1, 2):
            raise ValueError(f"DARTS is first or second order, not {order}")
        self.net, self.loss, self.order = net, loss, order
        self.optimizer = torch.optim.Adam(
            net.alphas(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay
        )

    def step(self, train_batch: dict, val_batch: dict, xi: float, weight_decay: float) -> None:
        """One step of alpha; `xi`: the weights' learning rate (Eq. 6), `weight_decay`: theirs."""
        self.optimizer.zero_grad()
        if self.order == 1:
            grads = torch.autograd.grad(self.loss(val_batch), self.net.alphas())
        else:
            grads = self.unrolled_gradient(train_batch, val_batch, xi, weight_decay)
        for alpha, grad in zip(self.net.alphas(), grads, strict=True):
            alpha.grad = grad
        self.optimizer.step()

    def unrolled_gradient(
        self, train_batch: dict, val_batch: dict, xi: float, weight_decay: float
    ) -> list[torch.Tensor]:
        """Eq. 7: grad_alpha L_val(w', alpha) - xi (finite-difference Hessian-vector product),
        w' = w - xi (grad_w L_train(w, alpha) + weight_decay w); w is left as it was."""
        weights, alphas = self.net.weights(), self.net.alphas()
        saved = [w.detach().clone() for w in weights]
        train_grads = torch.autograd.grad(self.loss(train_batch), weights, allow_unused=True)
        with torch.no_grad():  # w' (one step of plain SGD, as the authors unroll)
            for w, g in zip(weights, train_grads, strict=True):
                w.sub_(xi * ((g if g is not None else 0) + weight_decay * w))
        val_loss = self.loss(val_batch)
        found = torch.autograd.grad(val_loss, [*alphas, *weights], allow_unused=True)
        alpha_grads = [
            g if g is not None else torch.zeros_like(a) for g, a in zip(found, alphas, strict=False)
        ]
        vector = [
            g if g is not None else torch.zeros_like(w)
            for g, w in zip(found[len(alphas) :], weights, strict=True)
        ]
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
        hessian = self.hessian_vector_product(vector, train_batch)
        return [g - xi * h for g, h in zip(alpha_grads, hessian, strict=True)]

    def hessian_vector_product(
        self, vector: list[torch.Tensor], batch: dict, r: float = 1e-2
    ) -> list[torch.Tensor]:
        """Eq. 8: grad^2_{alpha,w} L_train(w, alpha) . vector, by central differences of
        grad_alpha L_train at w +- eps vector, eps = r / ||vector|| (the paper's r = 0.01;
        a step that coarse crosses ReLU and max-pool kinks, so it is an approximation of
        the derivative, as the authors intend; r = 1e-4 reproduces autograd's exactly)."""
        weights, alphas = self.net.weights(), self.net.alphas()
        saved = [w.detach().clone() for w in weights]
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        eps = r / norm.clamp(min=1e-12)

        def gradient_at(sign: float) -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                for w, s, v in zip(weights, saved, vector, strict=True):
                    w.copy_(s + sign * eps * v)
            return torch.autograd.grad(self.loss(batch), alphas)

        plus, minus = gradient_at(1.0), gradient_at(-1.0)
        with torch.no_grad():  # w exactly as it was
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
        return [(p - m) / (2 * eps) for p, m in zip(plus, minus, strict=True)]
