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

import itertools

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
        return self.trajectory(x, self.times.to(x.dtype))[-1]

    def trajectory(self, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """h at each of `times` (increasing or decreasing), from h(times[0]) = x:
        (len(times), *x.shape)."""
        if torch.jit.is_tracing() and self.solver in ADAPTIVE:
            # a trace would freeze the steps the solver took for the example input
            raise ModelError(
                f"an ODE block with the adaptive solver '{self.solver}' cannot be exported: "
                "its number of steps depends on the input",
                "build the model with a fixed-step solver (solver: rk4, step_size: ...) to export",
            )
        solve = odeint_adjoint if self.adjoint and torch.is_grad_enabled() else odeint
        return solve(
            self.dynamics,
            x,
            times,
            rtol=self.rtol,
            atol=self.atol,
            method=self.solver,
            options=self.options,
        )


class Autonomous(nn.Module):
    """dh/dt = f(h), f a fully connected net with tanh between its layers: the dynamics of
    the latent and recognition ODEs of Rubanova et al. (2019), which do not see t (their
    ``create_net``: `layers` hidden layers of `units`)."""

    def __init__(self, dim: int, units: int, layers: int):
        super().__init__()
        sizes = [dim] + [units] * (layers + 1) + [dim]
        stack: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            stack += [nn.Tanh()] if i else []
            stack.append(nn.Linear(n_in, n_out))
        self.net = nn.Sequential(*stack)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class GRUUpdate(nn.Module):
    """The GRU unit of Rubanova et al. (2019): an observation updates a state held as a mean
    and a spread, each gate a small net on [mean, spread, observation]; series with nothing
    observed at the step keep their state.

        u = sigmoid(U [m, s, x]),  r = sigmoid(R [m, s, x])
        m~, s~ = N [m r, s r, x]   (|s~|)
        m' = (1 - u) m~ + u m,  s' = (1 - u) s~ + u s
    """

    def __init__(self, state: int, inputs: int, units: int):
        super().__init__()

        def gate(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(2 * state + inputs, units), nn.Tanh(), nn.Linear(units, out)
            )

        self.update, self.reset, self.new_state = gate(state), gate(state), gate(2 * state)

    def forward(
        self, mean: torch.Tensor, spread: torch.Tensor, x: torch.Tensor, seen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, inputs) the observation, `seen` (B, 1) 1 where anything was observed."""
        both = torch.cat([mean, spread, x], -1)
        update, reset = torch.sigmoid(self.update(both)), torch.sigmoid(self.reset(both))
        new_mean, new_spread = self.new_state(
            torch.cat([mean * reset, spread * reset, x], -1)
        ).chunk(2, -1)
        new_mean = (1 - update) * new_mean + update * mean
        new_spread = (1 - update) * new_spread.abs() + update * spread
        return seen * new_mean + (1 - seen) * mean, seen * new_spread + (1 - seen) * spread


class ODERNN(nn.Module):
    """Rubanova et al. (2019), Algorithm 1: a recurrent net whose state follows an ODE
    between observations, h'_i = ODESolve(f, h_{i-1}, (t_{i-1}, t_i)), and is updated by
    each observation, h_i = GRUUpdate(h'_i, x_i), so that the time between two
    observations, not their count, decides how far the state moves. Observations are
    values and their mask ([x * mask, mask]), so a step may observe some channels only.
    """

    def __init__(
        self, inputs: int, state: int, *, units: int, layers: int, gru_units: int, **solver
    ):
        super().__init__()
        self.ode = ODEBlock(Autonomous(state, units, layers), **solver)
        self.gru = GRUUpdate(state, 2 * inputs, gru_units)
        self.state = state

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor, backwards: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The state's mean and spread (B, state) after reading x and mask (B, T, C) at
        `times` (T,), from the last step to the first where `backwards`."""
        mean = x.new_zeros(x.shape[0], self.state)
        spread = torch.zeros_like(mean)
        steps = range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])
        previous = None
        for i in steps:
            if previous is not None:
                mean = self.ode.trajectory(mean, times[[previous, i]])[-1]
            seen = (mask[:, i].sum(-1, keepdim=True) > 0).to(x.dtype)
            observation = torch.cat([x[:, i] * mask[:, i], mask[:, i]], -1)
            mean, spread = self.gru(mean, spread, observation, seen)
            previous = i
        return mean, spread


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
