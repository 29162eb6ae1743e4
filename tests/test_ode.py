"""Neural ODEs: the ODE block solves its equation, counts its cost, backpropagates through
the adjoint, refuses what it cannot do; ODE-Net's builds have the paper's sizes."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

import esszoo
from esszoo.data.source import open_source
from esszoo.errors import ModelError
from esszoo.layers.ode import ODEBlock


class Decay(nn.Module):
    """dh/dt = -rate h, whose solution is h(t) = exp(-rate t) h(0)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return -self.rate * h


def test_ode_block_returns_the_solution_at_the_end_time():
    block = ODEBlock(Decay(0.7), rtol=1e-7, atol=1e-9, integration_time=2.0)
    h0 = torch.tensor([[1.0, -3.0]], dtype=torch.float64)
    assert torch.allclose(block(h0), math.exp(-1.4) * h0, atol=1e-7)
    assert block.evaluations > 6  # dopri5: at least one step of six new evaluations


def test_fixed_steps_cost_four_evaluations_a_step_with_rk4():
    block = ODEBlock(Decay(1.0), solver="rk4", step_size=0.25)
    block(torch.ones(3, 2))
    assert block.evaluations == 4 * 4


def test_adjoint_gives_the_gradients_of_direct_backpropagation():
    h0 = torch.randn(4, 3, dtype=torch.float64)
    gradients = []
    for adjoint in (False, True):
        block = ODEBlock(Decay(0.5), rtol=1e-9, atol=1e-10, adjoint=adjoint).double()
        block(h0).square().sum().backward()
        gradients.append(block.dynamics.function.rate.grad)
    # d/d rate of sum (exp(-rate) h0)^2 = -2 exp(-2 rate) sum h0^2
    exact = -2 * math.exp(-1.0) * h0.square().sum()
    assert torch.allclose(gradients[0], exact, rtol=1e-6)
    assert torch.allclose(gradients[1], exact, rtol=1e-6)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(solver="rk45"), "unknown ODE solver 'rk45'"),
        (dict(solver="rk4"), "needs a step_size"),
        (dict(solver="rk4", step_size=2.0), "not in"),
        (dict(rtol=0.0), "must be positive"),
    ],
)
def test_bad_solver_settings_get_one_clear_line(settings, message):
    with pytest.raises(ModelError, match=message):
        esszoo.create_model("odenet", in_channels=1, num_classes=10, **settings)


def test_an_adaptive_solver_is_not_traced_into_frozen_steps():
    model = esszoo.create_model("odenet", in_channels=1, num_classes=3, width=8).eval()
    with pytest.raises(ModelError, match="fixed-step solver"), torch.no_grad():
        torch.jit.trace(model, torch.randn(2, 1, 28, 28), check_trace=False)


def test_odenet_and_its_resnet_have_the_sizes_of_their_builds():
    def count(**settings) -> int:
        return esszoo.count_parameters("odenet", in_channels=1, num_classes=10, **settings)

    assert count(variant="resnet") == 601_482  # the paper's 0.60M
    assert count() == 232_970
    assert count(downsampling="conv") == 208_266  # the authors' example script
    # the ODE block holds the parameters of one residual block's two convolutions (plus the
    # time channel) where the ResNet holds six blocks
    resnet = esszoo.create_model("odenet", in_channels=1, num_classes=10, variant="resnet")
    assert sum(1 for m in resnet.modules() if isinstance(m, ODEBlock)) == 0


def test_training_logs_function_evaluations_per_step(tmp_path):
    from esszoo.training import train
    from tests.conftest import write_recipe

    open_source("mnist5k").isel(sample=slice(0, 80)).to_netcdf(tmp_path / "digits.nc")
    recipe = {
        "name": "ode_digits",
        "model": {
            "name": "odenet",
            "width": 8,
            "solver": "rk4",
            "step_size": 0.5,
        },
        "data": {
            "source": str(tmp_path / "digits.nc"),
            "inputs": ["image"],
            "targets": ["label"],
            "split": {"dim": "sample", "shuffle": True},
        },
        "task": {"name": "classification"},
        "trainer": {"max_epochs": 2, "batch_size": 16, "progress_bar": False},
        "out_dir": str(tmp_path / "runs"),
    }
    run_dir = train(write_recipe(tmp_path / "ode.yaml", recipe))
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    # rk4, two steps of four evaluations per forward; no evaluations in backpropagation
    # through the solver's operations, and validation's are not counted
    assert [float(row["function_evaluations"]) for row in rows] == [8.0, 8.0]
