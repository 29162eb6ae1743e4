"""The scores of the nowcasting field, by lead time, from pysteps' verification module.

A nowcast of rain is judged on what a forecaster sees, not only on its mean squared error,
which rewards a blurred field (the mean of the possible futures) over a sharp one that is
slightly misplaced. pysteps (Pulkkinen et al. 2019) implements the field's scores; esszoo
accumulates them over the windows of a test split, lead time by lead time:

- Categorical scores at rain thresholds (`categorical`): the critical success index CSI
  = hits / (hits + misses + false alarms), the probability of detection POD and the false
  alarm ratio FAR, of the points at or above each threshold (pysteps.verification
  `det_cat_fct`).
- The fractions skill score (`fractions_skill`; Roberts & Lean 2008): the fractions of
  points above a threshold in windows of several scales compared, 1 for a perfect
  forecast; a forecast is useful at a scale where FSS > 0.5 + f/2, f the observed
  fraction (pysteps.verification `fss`).
- For ensembles (`ensemble`): the continuous ranked probability score CRPS (pysteps'
  `CRPS`) and the rank histogram of the observations among the members (`rankhist`),
  flat for a calibrated ensemble, U-shaped for one whose spread is too small.
- The radially averaged power spectrum (`power_spectrum`; pysteps.utils.spectral
  `rapsd`): how much of a field's variance is at each wavelength. A model trained on the
  mean squared error loses power at the small scales (the blur); a generative model
  should keep the observed spectrum. `radial_spectrum` is the same, batched in torch,
  for the generation task's validation at every epoch (tested equal to pysteps').

Forecasts and observations are arrays (N, T, H, W) in the same units (N windows, T lead
times); missing observations are left out of every score.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from types import SimpleNamespace

import numpy as np
import torch


def pysteps_verification() -> SimpleNamespace:
    """pysteps' verification and spectral modules, imported on first use."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pysteps import verification
        from pysteps.utils import spectral

    return SimpleNamespace(verification=verification, spectral=spectral)


def categorical(
    forecast: np.ndarray, observed: np.ndarray, thresholds: list[float]
) -> dict[str, np.ndarray]:
    """CSI, POD and FAR at each threshold and lead: arrays (thresholds, T) under their
    names."""
    scores = pysteps_verification().verification
    found = {name: np.zeros((len(thresholds), forecast.shape[1])) for name in ("CSI", "POD", "FAR")}
    for i, threshold in enumerate(thresholds):
        for lead in range(forecast.shape[1]):
            table = scores.det_cat_fct_init(threshold)
            for f, o in zip(forecast[:, lead], observed[:, lead], strict=True):
                scores.det_cat_fct_accum(table, f, o)
            result = scores.det_cat_fct_compute(table, ["CSI", "POD", "FAR"])
            for name in found:
                found[name][i, lead] = result[name]
    return found


def fractions_skill(
    forecast: np.ndarray, observed: np.ndarray, thresholds: list[float], scales: list[int]
) -> np.ndarray:
    """FSS at each threshold, scale (in grid points) and lead: (thresholds, scales, T)."""
    scores = pysteps_verification().verification
    found = np.zeros((len(thresholds), len(scales), forecast.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a window without rain above the threshold
        for i, threshold in enumerate(thresholds):
            for j, scale in enumerate(scales):
                for lead in range(forecast.shape[1]):
                    table = scores.fss_init(threshold, scale)
                    for f, o in zip(forecast[:, lead], observed[:, lead], strict=True):
                        scores.fss_accum(table, f, o)
                    found[i, j, lead] = scores.fss_compute(table)
    return found


def ensemble(
    members: np.ndarray, observed: np.ndarray, threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """CRPS by lead (T,) of an ensemble (N, M, T, H, W), and its rank histogram (M + 1,)
    over all leads: the share of the observations at each rank among the members, of the
    points where the observation or a member reaches `threshold` (points where all are
    below it carry no rank)."""
    scores = pysteps_verification().verification
    crps = np.zeros(members.shape[2])
    ranks = scores.rankhist_init(members.shape[1], threshold)
    for lead in range(members.shape[2]):
        table = scores.CRPS_init()
        for m, o in zip(members[:, :, lead], observed[:, lead], strict=True):
            scores.CRPS_accum(table, m, o)
            scores.rankhist_accum(ranks, m, o)
        crps[lead] = scores.CRPS_compute(table)
    return crps, scores.rankhist_compute(ranks)


def power_spectrum(fields: np.ndarray, spacing_km: float) -> tuple[np.ndarray, np.ndarray]:
    """The radially averaged power spectrum of fields (N, H, W), averaged over the fields,
    and its wavelengths in km (largest first). Missing points count as 0."""
    spectral = pysteps_verification().spectral
    spectra, frequencies = [], None
    for field in fields:
        power, frequencies = spectral.rapsd(
            np.nan_to_num(field), fft_method=np.fft, return_freq=True, normalize=False
        )
        spectra.append(power)
    frequencies = np.asarray(frequencies)[1:]  # without the mean (wavelength infinite)
    return np.mean(spectra, axis=0)[1:], spacing_km / frequencies


def radial_spectrum(fields: torch.Tensor) -> torch.Tensor:
    """pysteps' `rapsd` of each of fields (B, H, W), batched: the power of the centred 2-D
    Fourier transform, |F|^2 / (H W), averaged over rings of equal rounded radius (in
    wavenumbers from the centre), 0 to max(H, W) / 2 exclusive (inclusive for odd sizes):
    (B, rings)."""
    height, width = fields.shape[-2:]
    power = torch.fft.fftshift(torch.fft.fft2(fields), dim=(-2, -1)).abs() ** 2 / (height * width)
    y = torch.arange(height, device=fields.device) - height // 2
    x = torch.arange(width, device=fields.device) - width // 2
    radius = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2).round().long().flatten()
    size = max(height, width)
    rings = size // 2 + 1 if size % 2 else size // 2
    inside = radius < rings
    flat = power.flatten(-2)[..., inside]
    sums = torch.zeros(*flat.shape[:-1], rings, dtype=flat.dtype, device=flat.device)
    sums.index_add_(-1, radius[inside], flat)
    counts = torch.bincount(radius[inside], minlength=rings).to(flat.dtype)
    return sums / counts
