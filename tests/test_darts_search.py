"""DARTS's search: the supernet, the derivation of cells, the skip cap, and the
second-order step's finite-difference Hessian-vector product against autograd's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import esszoo
from esszoo.automl.darts import EDGES, Architect, SearchNetwork, derive
from esszoo.layers.nas import PRIMITIVES


def tiny(dense: bool = False, out: int = 3) -> SearchNetwork:
    torch.manual_seed(0)
    return SearchNetwork(in_channels=2, out_channels=out, width=4, cells=3, dense=dense)


def test_the_supernet_classifies_or_keeps_the_grid():
    x = torch.randn(2, 2, 9, 13)
    assert tiny()(x).shape == (2, 3)
    assert tiny(dense=True)(x).shape == (2, 3, 9, 13)
    net = tiny()
    assert net.alpha_normal.shape == (EDGES, len(PRIMITIVES)) == (14, 8)
    assert {id(p) for p in net.weights()}.isdisjoint({id(a) for a in net.alphas()})


def strong(choices: dict[int, str], default: str = "avg_pool_3x3") -> torch.Tensor:
    """Alpha with one operation made strongest on each edge (edge index -> operation)."""
    alpha = torch.zeros(EDGES, len(PRIMITIVES))
    for edge in range(EDGES):
        alpha[edge, PRIMITIVES.index(choices.get(edge, default))] = 1.0
    return alpha


def test_derivation_keeps_each_node_s_two_strongest_edges_and_ignores_none():
    alpha = strong({0: "sep_conv_3x3", 1: "dil_conv_5x5"}, default="max_pool_3x3")
    alpha[0, PRIMITIVES.index("sep_conv_3x3")] = 3.0  # node 2's two inputs, the first sure
    alpha[1, PRIMITIVES.index("dil_conv_5x5")] = 2.0
    alpha[2:5, PRIMITIVES.index("none")] = 9.0  # node 3: "none" wins, yet never chosen
    pairs = derive(alpha)
    assert len(pairs) == 8
    assert pairs[:2] == (("sep_conv_3x3", 0), ("dil_conv_5x5", 1))
    assert all(op != "none" for op, _ in pairs)
    for node in range(4):
        sources = [source for _, source in pairs[2 * node : 2 * node + 2]]
        assert len(set(sources)) == 2 and max(sources) < 2 + node


def test_the_skip_cap_leaves_at_most_two_skip_connections_in_the_normal_cell():
    alpha = strong({}, default="skip_connect")
    alpha[:, PRIMITIVES.index("sep_conv_3x3")] = 0.5  # the runner-up everywhere
    assert [op for op, _ in derive(alpha)].count("skip_connect") == 8
    capped = [op for op, _ in derive(alpha, skip_cap=2)]
    assert capped.count("skip_connect") == 2 and capped.count("sep_conv_3x3") == 6
    net = tiny()
    with torch.no_grad():
        net.alpha_normal.copy_(alpha)
    assert net.genotype("skip_cap").skip_share() <= (2 + 8) / 16


def test_the_finite_difference_hessian_vector_product_matches_autograd():
    net = tiny().double()
    x, y = torch.randn(4, 2, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 1])

    def loss(batch):
        return F.cross_entropy(net(batch["x"]), batch["y"])

    batch = {"x": x, "y": y}
    weights, alphas = net.weights(), net.alphas()
    vector = [torch.randn_like(w) for w in weights]
    architect = Architect(net, loss)
    # a step small enough not to cross ReLU and max-pool kinks: the paper's r = 0.01 is
    # coarser (a deliberate cheap approximation), the mathematics is the same
    approximate = architect.hessian_vector_product(vector, batch, r=1e-4)
    grads = torch.autograd.grad(loss(batch), weights, create_graph=True, allow_unused=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vector, strict=True) if g is not None)
    exact = torch.autograd.grad(dot, alphas)
    for a, e in zip(approximate, exact, strict=True):
        assert torch.allclose(a, e, rtol=1e-4, atol=1e-6 * e.abs().max().item())


def test_first_and_second_order_steps_move_alpha_and_leave_the_weights():
    results = {}
    for order in (1, 2):
        net = tiny()
        loss = lambda batch, net=net: F.cross_entropy(net(batch["x"]), batch["y"])  # noqa: E731
        torch.manual_seed(1)
        train = {"x": torch.randn(4, 2, 8, 8), "y": torch.tensor([0, 1, 2, 0])}
        val = {"x": torch.randn(4, 2, 8, 8), "y": torch.tensor([2, 1, 0, 0])}
        before = [w.detach().clone() for w in net.weights()]
        alpha = net.alpha_normal.detach().clone()
        Architect(net, loss, order=order).step(train, val, xi=0.025, weight_decay=3e-4)
        assert not torch.equal(net.alpha_normal, alpha)
        assert all(torch.equal(w, b) for w, b in zip(net.weights(), before, strict=True))
        results[order] = net.alpha_normal.detach() - alpha
    assert not torch.allclose(results[1], results[2])


def test_a_derived_cell_is_retrained_as_the_registered_darts_model():
    genotype = tiny().genotype()
    net = esszoo.create_model(
        "darts", in_channels=2, num_classes=3, genotype=genotype.to_dict(), width=4, cells=3
    )
    assert net(torch.randn(2, 2, 16, 16)).shape == (2, 3)


def test_the_auxiliary_skip_adds_the_input_outside_the_softmax():
    net = tiny(dense=True).eval()
    x = torch.randn(1, 2, 8, 8)
    plain = net(x)
    net.beta = 1.0
    assert not torch.allclose(net(x), plain)
    with pytest.raises(ValueError, match="first or second order"):
        Architect(net, lambda b: 0, order=3)
