"""Classical infilling, the baselines every learned reconstruction is printed beside.

Each method takes a table of fields with hidden points (x: NaN where not observed, mask:
1 where observed) and returns complete fields in physical units:

- climatology: the mean of the training fields for the same calendar month at each grid
  point (the mean of all training fields where a month or the point is absent);
- nearest and linear interpolation of the observed points of each field (scipy's
  griddata on latitude-longitude, with longitudes repeated across the dateline so that
  the grid wraps; linear leaves no point outside the observed points' hull, nearest fills
  those);
- iterative EOF infilling in the manner of DINEOF (Beckers & Rixen 2003, J. Atmos.
  Oceanic Technol. 20, 1839-1856): the training fields and the gapped fields form one
  (sample x ocean point) matrix of anomalies; hidden entries start at zero and are
  replaced, until they settle, by a reconstruction from the leading k EOFs; k is chosen by
  cross-validation on observed points held out for it. A time step scored under several
  gap patterns goes into a separate matrix for each pattern, so the copies never fill one
  another's holes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.linalg
import torch
from scipy.interpolate import griddata

from esszoo.data.dataset import SplitData, Table
from esszoo.tasks.baselines import calendar_months


def climatology(data: SplitData, time_dim: str = "time"):
    train = data.train.y.double().numpy()  # (N, C, H, W), NaN where missing
    times = data.train.coords.get(time_dim)
    with warnings.catch_warnings():  # points never observed (land) have no mean: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        # a point without training values takes the mean over all points of its channel
        overall = np.nanmean(train, axis=0)
        overall = np.where(
            np.isnan(overall), np.nanmean(train, axis=(0, 2, 3))[:, None, None], overall
        )
        by_month = {}
        months = calendar_months(times)  # dates of any calendar, or None
        if months is not None:
            for month in np.unique(months):
                field = np.nanmean(train[months == month], axis=0)
                by_month[month] = np.where(np.isnan(field), overall, field)

    def predict(table: Table) -> torch.Tensor:
        months = calendar_months(table.coords.get(time_dim))
        fields = []
        for k in range(len(table)):
            month = int(months[k]) if months is not None else None
            fields.append(by_month.get(month, overall))
        return torch.from_numpy(np.nan_to_num(np.stack(fields))).float()

    return predict


def interpolation(data: SplitData, method: str):
    grid_lat, grid_lon = data.grid.latitude, data.grid.longitude  # of every point (H, W)
    targets = np.column_stack([grid_lat.ravel(), grid_lon.ravel()])

    def field(values: np.ndarray, observed: np.ndarray) -> np.ndarray:
        points = np.column_stack([grid_lat[observed], grid_lon[observed]])
        known = values[observed]
        # repeat across the dateline so the interpolation wraps around the globe
        points = np.concatenate([points, points + [0, 360], points - [0, 360]])
        known = np.concatenate([known, known, known])
        out = griddata(points, known, targets, method=method)
        if method != "nearest":
            holes = np.isnan(out)
            out[holes] = griddata(points, known, targets[holes], method="nearest")
        return out.reshape(grid_lat.shape)

    def predict(table: Table) -> torch.Tensor:
        x = table.x.double().numpy()
        mask = np.broadcast_to(table.mask.numpy() > 0, x.shape)
        out = np.empty_like(x)
        for k in range(x.shape[0]):
            for c in range(x.shape[1]):
                observed = mask[k, c] & np.isfinite(x[k, c])
                out[k, c] = field(x[k, c], observed) if observed.any() else np.nan
        return torch.from_numpy(np.nan_to_num(out)).float()

    return predict


MODE_CHOICES = (1, 2, 3, 5, 8, 12, 20)


def dineof(
    data: SplitData,
    time_dim: str = "time",
    held_out: float = 0.03,
    iterations: int = 50,
    tolerance: float = 1e-4,
    seed: int = 0,
):
    train = data.train.y.double().numpy()
    sea = np.isfinite(train).all(axis=0)  # points every training field has
    outside = climatology(data, time_dim)  # for points outside `sea`
    # each training field appears once per gap pattern drawn for it: keep one of each
    train = train[np.unique(train[:, sea], axis=0, return_index=True)[1]]

    def reconstruct(matrix: np.ndarray, known: np.ndarray, modes: int) -> np.ndarray:
        filled = np.where(known, matrix, 0.0)
        scale = np.sqrt(np.mean(filled[known] ** 2)) or 1.0
        for _ in range(iterations):
            # LAPACK's gesvd: slower than the default gesdd, but it converges where that fails
            u, s, vt = scipy.linalg.svd(filled, full_matrices=False, lapack_driver="gesvd")
            low_rank = (u[:, :modes] * s[:modes]) @ vt[:modes]
            change = np.sqrt(np.mean((low_rank[~known] - filled[~known]) ** 2))
            filled[~known] = low_rank[~known]
            if change < tolerance * scale:
                break
        return filled

    def fill(x: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """The sea points of gapped fields (N, points), from one matrix with the training
        fields."""
        rows = np.concatenate([train[:, sea], x])  # (N_train + N, points)
        known = np.concatenate([np.ones_like(train[:, sea], bool), observed])
        mean = np.nanmean(np.where(known, rows, np.nan), axis=0)
        anomalies = np.where(known, rows - mean, 0.0)
        # choose the number of modes on observed points of the gapped fields held out for it
        rng = np.random.default_rng(seed)
        check = known.copy()
        check[: len(train)] = False
        check &= rng.random(known.shape) < held_out
        best, best_error = 1, np.inf
        for modes in [m for m in MODE_CHOICES if m < min(anomalies.shape)]:
            trial = reconstruct(anomalies, known & ~check, modes)
            error = np.sqrt(np.mean((trial[check] - anomalies[check]) ** 2))
            if error < best_error:
                best, best_error = modes, error
        return reconstruct(anomalies, known, best)[len(train) :] + mean

    def predict(table: Table) -> torch.Tensor:
        x = table.x.double().numpy()
        observed = np.broadcast_to(table.mask.numpy() > 0, x.shape) & np.isfinite(x)
        out = outside(table).double().numpy()
        # a record holds each time once: a time scored under several gap patterns enters
        # one matrix per pattern, never beside its own copies (whose holes lie elsewhere)
        times = table.coords.get(time_dim)
        copy = (
            np.zeros(len(x), int) if times is None else pd.Series(times).groupby(times).cumcount()
        )
        for k in np.unique(copy):
            rows = np.flatnonzero(np.asarray(copy) == k)
            block = out[rows]
            block[:, sea] = fill(x[rows][:, sea], observed[rows][:, sea])
            out[rows] = block
        return torch.from_numpy(out).float()

    return predict
