"""Baselines every field task prints beside its model: what a model must beat to claim
anything. Each is fitted on the training split only, block by block, so that data left
on disk are fitted in the same one pass as the normalization.

- `Climatology`: the training-period mean at every grid point, by calendar month where
  the samples carry dates (a test month absent from training falls back to the mean
  over all training months; a point never observed to its channel's mean), else the
  training mean. Its name says which.
- `ClassClimatology`: the same for classes: the commonest class at every point (or of
  every sample, for classes of whole fields), by calendar month where there are dates.
- `PointRegression`: y_c(p) = sum_k a_ck(p) x_k(p) + b_c(p), a linear regression of each
  target channel on the input channels fitted at every grid point p, by its own normal
  equations (points with too few samples take the regression pooled over all points).

`headline_losses` compares a model's row with the baselines' rows on the task's headline
score, so that a model that loses to any of them is marked where its scores are printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from esszoo.data.coords import is_time
from esszoo.data.dataset import Table

ALL_MONTHS = 0  # the key of the mean over every training month
VALUES_PER_CHUNK = 2**22  # per-point regression: samples at a time hold this many numbers


def calendar_months(times: np.ndarray | None) -> np.ndarray | None:
    """The calendar month (1-12) of each date, or None if `times` are not dates."""
    if times is None or not len(times) or not is_time(np.asarray(times)):
        return None
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[M]").astype(int) % 12 + 1
    return np.array([t.month for t in times])


def _sample_times(table: Table, dim: str) -> np.ndarray | None:
    return table.coords.get(dim)


class Climatology:
    """Per-point means of target fields (N, C, *grid) by calendar month, accumulated."""

    def __init__(self, dim: str):
        self.dim = dim
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, torch.Tensor] = {}
        self.by_month = True

    def add(self, table: Table) -> Climatology:
        y = table.y.double()
        months = calendar_months(_sample_times(table, self.dim))
        if months is None:
            self.by_month, months = False, np.zeros(len(y), int)
        known = torch.isfinite(y)
        values = torch.where(known, y, 0.0)
        for month in {ALL_MONTHS, *np.unique(months).tolist()}:
            rows = (
                torch.ones(len(y), dtype=torch.bool)
                if month == ALL_MONTHS
                else (torch.from_numpy(months == month))
            )
            self.sums[month] = self.sums.get(month, 0) + values[rows].sum(0)
            self.counts[month] = self.counts.get(month, 0) + known[rows].sum(0)
        return self

    @property
    def monthly(self) -> bool:
        """Whether the training split spans more than one calendar month (with one, the
        monthly climatology is the training mean)."""
        return self.by_month and len(self.sums) > 2

    @property
    def name(self) -> str:
        return "climatology (calendar month)" if self.monthly else "climatology (training mean)"

    def fields(self) -> dict[int, torch.Tensor]:
        """The mean field of each month, and of all months, with the fallbacks applied."""
        overall = self.sums[ALL_MONTHS] / self.counts[ALL_MONTHS]
        channel = self.sums[ALL_MONTHS].flatten(1).sum(1) / self.counts[ALL_MONTHS].flatten(1).sum(
            1
        )
        overall = torch.where(
            torch.isfinite(overall), overall, channel.view(-1, *[1] * (overall.dim() - 1))
        )
        found = {ALL_MONTHS: overall}
        for month in self.sums:
            if month != ALL_MONTHS:
                field = self.sums[month] / self.counts[month]
                found[month] = torch.where(torch.isfinite(field), field, overall)
        return found

    def predictor(self) -> Callable[[Table], torch.Tensor]:
        fields = self.fields()

        def predict(table: Table) -> torch.Tensor:
            months = calendar_months(_sample_times(table, self.dim)) if self.monthly else None
            keys = months if months is not None else np.zeros(len(table), int)
            stacked = [fields.get(int(m), fields[ALL_MONTHS]) for m in keys]
            return torch.stack(stacked).reshape(table.y.shape).float()

        return predict


class ClassClimatology:
    """The commonest class of the training split by calendar month: at every point of
    class maps (N, *grid), or of the samples (N,); as one-hot logits."""

    def __init__(self, dim: str, classes: int):
        self.dim, self.classes = dim, classes
        self.counts: dict[int, torch.Tensor] = {}
        self.by_month = True

    def add(self, table: Table) -> ClassClimatology:
        labels = table.y
        months = calendar_months(_sample_times(table, self.dim))
        if months is None:
            self.by_month, months = False, np.zeros(len(labels), int)
        one_hot = torch.nn.functional.one_hot(labels.clamp(min=0), self.classes)
        one_hot = one_hot * (labels >= 0).unsqueeze(-1)  # unknown points count for none
        for month in {ALL_MONTHS, *np.unique(months).tolist()}:
            rows = (
                torch.ones(len(labels), dtype=torch.bool)
                if month == ALL_MONTHS
                else (torch.from_numpy(months == month))
            )
            self.counts[month] = self.counts.get(month, 0) + one_hot[rows].sum(0)
        return self

    @property
    def monthly(self) -> bool:
        """Whether the training split spans more than one calendar month."""
        return self.by_month and len(self.counts) > 2

    @property
    def name(self) -> str:
        return "climatology (calendar month)" if self.monthly else "climatology (training mode)"

    def predictor(self) -> Callable[[Table], torch.Tensor]:
        commonest = {month: counts.argmax(-1) for month, counts in self.counts.items()}

        def predict(table: Table) -> torch.Tensor:
            months = calendar_months(_sample_times(table, self.dim)) if self.monthly else None
            keys = months if months is not None else np.zeros(len(table), int)
            classes = torch.stack([commonest.get(int(m), commonest[ALL_MONTHS]) for m in keys])
            logits = torch.nn.functional.one_hot(classes, self.classes).float()
            return logits.movedim(-1, 1) if logits.dim() > 2 else logits

        return predict


class PointRegression:
    """Per-point least squares of (N, C_out, *grid) targets on (N, C_in, *grid) inputs,
    normal equations accumulated block by block in float64 (about the first block's
    per-point means, so that temperatures in K lose no precision)."""

    MIN_SAMPLES_PER_COEFFICIENT = 3

    def __init__(self) -> None:
        self.gram: torch.Tensor | None = None  # (P, C_in + 1, C_in + 1)
        self.cross: torch.Tensor | None = None  # (P, C_in + 1, C_out)

    @staticmethod
    def _points(t: torch.Tensor) -> torch.Tensor:
        """(N, C, *grid) -> (P, N, C) in float64."""
        return t.double().flatten(2).permute(2, 0, 1)

    @staticmethod
    def _chunk(x: torch.Tensor) -> int:
        """Samples at a time, so that a chunk's design matrix stays near 32 MB."""
        return max(1, VALUES_PER_CHUNK // max(1, x[0].numel() + x[0, 0].numel()))

    def add(self, x: torch.Tensor, y: torch.Tensor) -> PointRegression:
        chunk = self._chunk(x)
        for start in range(0, len(x), chunk):
            self._add(x[start : start + chunk], y[start : start + chunk])
        return self

    def _add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        inputs, targets = self._points(x), self._points(y)
        usable = torch.isfinite(inputs).all(2) & torch.isfinite(targets).all(2)  # (P, N)
        if self.gram is None:
            count = usable.sum(1, keepdim=True).clamp(min=1)
            self.shift = (torch.where(usable[..., None], inputs, 0.0).sum(1) / count)[:, None]
            size = inputs.shape[2] + 1
            self.gram = torch.zeros(len(inputs), size, size, dtype=torch.float64)
            self.cross = torch.zeros(len(inputs), size, targets.shape[2], dtype=torch.float64)
            self.samples = torch.zeros(len(inputs), dtype=torch.float64)
        design = self._design(inputs) * usable[..., None]
        targets = torch.where(usable[..., None], targets, 0.0)
        self.gram += design.transpose(1, 2) @ design
        self.cross += design.transpose(1, 2) @ targets
        self.samples += usable.sum(1)

    def _design(self, inputs: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(*inputs.shape[:2], 1, dtype=torch.float64)
        return torch.cat([torch.nan_to_num(inputs - self.shift), ones], 2)

    def predictor(
        self, fallback: Callable[[Table], torch.Tensor]
    ) -> Callable[[Table], torch.Tensor]:
        """The fitted regression; points with fewer than a few samples per coefficient
        take `fallback` (the pooled regression)."""
        size = self.gram.shape[1]
        enough = self.samples >= self.MIN_SAMPLES_PER_COEFFICIENT * size
        ridge = 1e-9 * torch.diagonal(self.gram, dim1=1, dim2=2).mean(1).clamp(min=1e-12)
        regular = self.gram + ridge[:, None, None] * torch.eye(size, dtype=torch.float64)
        solution = torch.linalg.solve(regular[enough], self.cross[enough])  # (P', C+1, C_out)

        def predict(table: Table) -> torch.Tensor:
            out = fallback(table).double()  # (N, C_out, *grid)
            flat = out.flatten(2)
            chunk = self._chunk(table.x)
            for start in range(0, len(table), chunk):
                x = table.x[start : start + chunk]
                design = self._design(self._points(x))[enough]  # (P', n, C + 1)
                flat[start : start + chunk, :, enough] = (design @ solution).permute(1, 2, 0)
            return flat.reshape(out.shape).float()

        return predict


def headline_losses(
    rows: list[dict[str, Any]], headline: tuple[str, str], model_rows: Iterable[str]
) -> None:
    """Mark every model row with the baselines that beat it on the headline score
    (`loses_to`, empty if none); `headline` is (score, "lower" or "higher")."""
    score, better = headline
    baselines = [r for r in rows if str(r["predictor"]).startswith("baseline: ")]
    for row in rows:
        if row["predictor"] not in model_rows or score not in row:
            continue
        own = row[score]
        winners = [
            b["predictor"].removeprefix("baseline: ")
            for b in baselines
            if score in b
            and np.isfinite(b[score])
            and (b[score] < own if better == "lower" else b[score] > own)
        ]
        row["loses_to"] = "; ".join(winners)
