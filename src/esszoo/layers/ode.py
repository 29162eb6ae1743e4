"""Continuous depth: a block whose output is the solution of an ODE its network defines.

Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential Equations",
NeurIPS, arXiv:1806.07366. A residual block computes h + f(h); a stack of them is Euler's
method for dh/dt = f(h(t), t) with a step of 1. The ODE block instead hands f to a solver
and returns h(T) (Eq. 1): the solver, not the architecture, chooses how many evaluations
of f the accuracy asked for costs. The solvers are torchdiffeq's (the paper's authors'
library): adaptive ones (dopri5, the default, with tolerances `rtol` and `atol`) and fixed
grids (rk4, euler, midpoint with `step_size`). `adjoint=True` backpropagates by solving
the adjoint ODE backwards (Section 2), in memory constant in the number of steps, at the
price of another solve.

Every block counts the evaluations of f it makes, forward and (with the adjoint) backward:
the number of function evaluations (NFE), the cost measure of the paper's Figure 3, which
`esszoo train` writes per optimizer step to metrics.csv.
"""

from __future__ import annotations

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from esszoo.errors import ModelError

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED = ("rk4", "euler", "midpoint", "explicit_adams", "implicit_adams")
SOLVERS = ADAPTIVE + FIXED


class ConcatConv2d(nn.Module):
    """A convolution that also sees the time: t as one more input channel, constant over
    the grid (the dynamics f(h, t) of the paper's MNIST network)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 1, out_channels, kernel_size, padding=padding)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        time = t.to(h.dtype).expand(h.shape[0], 1, *h.shape[2:])  # (B, 1, H, W)
        return self.conv(torch.cat([time, h], dim=1))  # (B, C + 1, H, W) -> (B, C', H, W)


class CountedDynamics(nn.Module):
    """f(t, h), counting its evaluations."""

    def __init__(self, function: nn.Module):
        super().__init__()
        self.function = function
        self.evaluations = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        return self.function(t, h)


class ODEBlock(nn.Module):
    """h(T) from h(0) = x and dh/dt = function(t, h), over t in [0, integration_time]."""

    def __init__(
        self,
        function: nn.Module,
        *,
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        step_size: float | None = None,
        adjoint: bool = False,
        integration_time: float = 1.0,
    ):
        super().__init__()
        check_solver(solver, rtol, atol, step_size, integration_time)
        self.dynamics = CountedDynamics(function)
        self.solver = solver
        self.rtol, self.atol = rtol, atol
        self.options = {"step_size": step_size} if step_size is not None else {}
        self.adjoint = adjoint
        self.register_buffer("times", torch.tensor([0.0, integration_time]), persistent=False)

    @property
    def evaluations(self) -> int:
        return self.dynamics.evaluations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() and self.solver in ADAPTIVE:
            # a trace would freeze the steps the solver took for the example input
            raise ModelError(
                f"an ODE block with the adaptive solver '{self.solver}' cannot be exported: "
                "its number of steps depends on the input",
                "build the model with a fixed-step solver (solver: rk4, step_size: ...) to export",
            )
        solve = odeint_adjoint if self.adjoint and torch.is_grad_enabled() else odeint
        times = self.times.to(x.dtype)
        trajectory = solve(
            self.dynamics,
            x,
            times,
            rtol=self.rtol,
            atol=self.atol,
            method=self.solver,
            options=self.options,
        )  # (2, *x.shape): h(0), h(T)
        return trajectory[-1]


def check_solver(
    solver: str, rtol: float, atol: float, step_size: float | None, integration_time: float
) -> None:
    """One clear line for a solver torchdiffeq does not have or settings it cannot use."""
    if solver not in SOLVERS:
        raise ModelError(f"unknown ODE solver '{solver}'", f"choose one of {SOLVERS}")
    if solver in FIXED and step_size is None:
        raise ModelError(
            f"the fixed-step solver '{solver}' needs a step_size",
            f"set step_size (e.g. {integration_time / 4:g}), or use an adaptive solver (dopri5)",
        )
    if step_size is not None and not 0 < step_size <= integration_time:
        raise ModelError(
            f"step_size {step_size} is not in (0, integration_time = {integration_time}]",
            "choose a step no longer than the integration time",
        )
    if rtol <= 0 or atol <= 0 or integration_time <= 0:
        raise ModelError(
            f"rtol ({rtol}), atol ({atol}) and integration_time ({integration_time}) must be "
            "positive"
        )


def ode_blocks(module: nn.Module) -> list[ODEBlock]:
    """The ODE blocks of `module` (whose `evaluations` count its cost)."""
    return [m for m in module.modules() if isinstance(m, ODEBlock)]
