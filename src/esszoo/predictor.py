"""A zoo model in physical units: what `esszoo.load` returns and what `esszoo export` writes.

Networks train on normalized numbers; scientists and Fortran models speak in kelvin and
pascal. `Predictor` wraps a network with the normalization statistics of its training
split (inputs and, for regression, outputs), and, for a hybrid model, with the cheap
physics whose residual the network learned. Its forward takes inputs in the units of the
data it was trained on and returns outputs in the units of the targets (classifiers:
logits).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from esszoo.data.variables import Variable
from esszoo.errors import ModelError
from esszoo.physics import physics_function


def _stat(values: Sequence | torch.Tensor | None) -> torch.Tensor | None:
    """A statistic per channel (C,), or per channel and grid point (C, *grid)."""
    return None if values is None else torch.as_tensor(values, dtype=torch.float32)


def broadcast_stat(
    stat: torch.Tensor, like: torch.Tensor, channels_last: bool = False
) -> torch.Tensor:
    """A statistic per channel (C,), or per channel and grid point (C, *grid), shaped to
    broadcast over `like`: (batch, C, ...), or (batch, ..., C) with `channels_last`."""
    if channels_last:  # (C,) -> (1, ..., 1, C)
        return stat.view(*([1] * (like.dim() - 1)), -1).to(like.dtype)
    if stat.dim() > 1:  # per grid point (C, *grid): anomalies from a mean field
        if tuple(stat.shape[1:]) != tuple(like.shape[2:]):
            raise ModelError(
                f"this model removes a mean field of grid {tuple(stat.shape[1:])}, "
                f"and the data have grid {tuple(like.shape[2:])}",
                "give fields on the grid the model was trained on",
            )
        return stat.unsqueeze(0).to(like.dtype)
    # (C,) -> (1, C, 1, ...) to broadcast over a batch of vectors or fields
    return stat.view(1, -1, *([1] * (like.dim() - 2))).to(like.dtype)


def physics_base(
    function: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]],
    columns: Sequence[int | Sequence[int]],
    x: torch.Tensor,
) -> torch.Tensor:
    """A physics function of some features of `x` (batch, features), each a scalar's
    feature or a profile's (see `esszoo.data.tabular.physics_columns`), as (batch,
    outputs): its outputs side by side, a profile's a level after another."""
    arguments = [
        x[:, column] if isinstance(column, int) else x[:, list(column)] for column in columns
    ]
    values = function(*arguments)
    values = values if isinstance(values, tuple) else (values,)
    return torch.cat([v if v.dim() == 2 else v.unsqueeze(1) for v in values], dim=1)


class Predictor(nn.Module):
    """``net`` between input normalization and output denormalization (plus a physics base)."""

    def __init__(
        self,
        net: nn.Module,
        *,
        input_mean: Sequence[float] | torch.Tensor | None = None,
        input_std: Sequence[float] | torch.Tensor | None = None,
        output_mean: Sequence[float] | torch.Tensor | None = None,
        output_std: Sequence[float] | torch.Tensor | None = None,
        base: str | None = None,
        base_columns: Sequence[int | Sequence[int]] = (),
        fill_missing: bool = False,
        mask_channels: bool = False,
        output_lower: Sequence[float] | torch.Tensor | None = None,
        output_upper: Sequence[float] | torch.Tensor | None = None,
        output_min: Sequence[float] | torch.Tensor | None = None,
        output_max: Sequence[float] | torch.Tensor | None = None,
        channels_last: bool = False,
        distribution: str | None = None,
    ):
        super().__init__()
        self.net = net
        self.register_buffer("input_mean", _stat(input_mean))
        self.register_buffer("input_std", _stat(input_std))
        self.register_buffer("output_mean", _stat(output_mean))
        self.register_buffer("output_std", _stat(output_std))
        self.base = base
        self.base_columns = list(base_columns)
        self._base_function = physics_function(base).function if base else None
        self.fill_missing = fill_missing
        self.mask_channels = mask_channels
        self.register_buffer("output_lower", _stat(output_lower))  # physical bounds, per
        self.register_buffer("output_upper", _stat(output_upper))  # output channel
        self.register_buffer("output_min", _stat(output_min))  # the range of the training
        self.register_buffer("output_max", _stat(output_max))  # targets, per channel
        self.clip = True
        self.counts: dict[str, torch.Tensor] | None = None  # see `counting`
        # series (batch, time, channels) keep their channels last; fields (batch, C, ...)
        self.channels_last = channels_last
        self.channel_axis = -1 if channels_last else 1
        # outputs that are distributions: "gaussian" gives a location and a scale per target
        # channel ([loc_1..loc_C, scale_1..scale_C]); the network's scale is made positive
        # by softplus here, in normalized units, before it is scaled to physical ones
        self.distribution = distribution

    def _channels(self, stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return broadcast_stat(stat, like, self.channels_last)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Physical inputs -> the network's normalized inputs.

        With ``fill_missing`` (fields), missing points (NaN) become 0 after normalization:
        the training mean of their channel.
        """
        if self.input_mean is not None:
            x = (x - self._channels(self.input_mean, x)) / self._channels(self.input_std, x)
        if self.fill_missing:
            x = torch.nan_to_num(x, nan=0.0)
        return x

    def denormalize(self, out: torch.Tensor) -> torch.Tensor:
        """The network's normalized outputs -> physical units (before the physics base)."""
        if self.distribution == "gaussian":
            location, scale = out.chunk(2, dim=self.channel_axis)
            scale = nn.functional.softplus(scale) + 1e-6
            out = torch.cat([location, scale], dim=self.channel_axis)
        if self.output_mean is None:
            return out
        return out * self._channels(self.output_std, out) + self._channels(self.output_mean, out)

    def base_prediction(self, x: torch.Tensor) -> torch.Tensor:
        """The physics base of a hybrid model, (batch, outputs), from physical inputs."""
        return physics_base(self._base_function, self.base_columns, x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs for inputs `x` (and, for models that take one, the validity `mask`)."""
        z = self.normalize(x)
        if mask is None:
            out = self.net(z)
        elif self.mask_channels:  # a model without a mask argument sees it as channels
            out = self.net(torch.cat([z, mask.expand_as(z)], dim=1))
        else:
            out = self.net(z, mask)
        out = self.denormalize(out)
        if self._base_function is not None:
            out = out + self.base_prediction(x)
        if self.counts is not None:
            self._count(out, mask)
        if self.clip and self.output_lower is not None:
            lower = self._channels(self.output_lower, out)
            upper = self._channels(self.output_upper, out)
            out = torch.minimum(torch.maximum(out, lower), upper)
        return out

    @contextlib.contextmanager
    def counting(self) -> Iterator[dict[str, torch.Tensor]]:
        """Count, per output channel, the outputs below and above the physical bounds
        (before clipping) and outside the range of the training targets; where a mask is
        given, only the outputs at missing points (those that are used)."""
        self.counts = {}
        try:
            yield self.counts
        finally:
            self.counts = None

    def _count(self, out: torch.Tensor, mask: torch.Tensor | None) -> None:
        # a field's mask (inpainting) marks the outputs that are used; a series' (channels
        # last) marks the observed steps of its past, and every output is used
        if mask is None or self.channels_last:
            used = torch.ones_like(out)
        else:
            used = (1 - mask).expand_as(out)
        dims = [d for d in range(out.dim()) if d != self.channel_axis % out.dim()]
        found = {"outputs": used}
        for key, limit, below in (
            ("below_bounds", self.output_lower, True),
            ("above_bounds", self.output_upper, False),
            ("below_training_range", self.output_min, True),
            ("above_training_range", self.output_max, False),
        ):
            if limit is not None:
                limit = self._channels(limit, out)
                found[key] = used * ((out < limit) if below else (out > limit))
        for key, flags in found.items():
            total = flags.sum(dims).double().cpu()
            self.counts[key] = self.counts.get(key, 0) + total

    def set_training_range(self, low: torch.Tensor, high: torch.Tensor) -> Predictor:
        """The range of the training targets per output channel, to count outputs beyond."""
        self.output_min, self.output_max = _stat(low), _stat(high)
        return self

    def bound(self, targets: Sequence[Variable]) -> Predictor:
        """Clip the outputs to the physical bounds of the target variables, where any has
        bounds: one output channel per target, or a group of them per parameter of a
        distribution (each quantile bounded alike; a gaussian's scale is not a value). A
        profile's channels (one per level) share its bounds."""
        targets = [v for v in targets for _ in range(v.levels or 1)]  # a profile: per level
        if any(v.bounded for v in targets):
            lower = [-math.inf if v.valid_min is None else v.valid_min for v in targets]
            upper = [math.inf if v.valid_max is None else v.valid_max for v in targets]
            groups = 1 if self.output_mean is None else len(self.output_mean) // len(targets)
            free = [-math.inf] * len(targets), [math.inf] * len(targets)
            if self.distribution == "gaussian":  # the location is bounded, the scale free
                lower, upper = lower + free[0], upper + free[1]
            else:
                lower, upper = lower * groups, upper * groups
            self.output_lower, self.output_upper = _stat(lower), _stat(upper)
        return self

    @contextlib.contextmanager
    def unbounded(self) -> Iterator[Predictor]:
        """The outputs as the network gives them, before any clipping to bounds."""
        self.clip = False
        try:
            yield self
        finally:
            self.clip = True


@torch.inference_mode()
def predict_in_batches(
    predict: Callable[..., torch.Tensor], *inputs: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """Predictions for all samples of `inputs`, a batch at a time (8192 vectors, 1024 series
    or 32 fields)."""
    size = batch_size or {2: 8192, 3: 1024}.get(inputs[0].dim(), 32)  # vectors, series, fields
    count = len(inputs[0])
    return torch.cat([predict(*(t[i : i + size] for t in inputs)) for i in range(0, count, size)])
