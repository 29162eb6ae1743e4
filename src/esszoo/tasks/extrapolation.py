"""Nowcasts along the observed motion, by pysteps: the references of radar nowcasting.

Eulerian persistence (the last frame kept, `translation.persistence`) ignores that rain
moves. The references the field judges a nowcast against move it (Germann & Zawadzki
2002, Mon. Wea. Rev. 130; Bowler, Seed & Pierce 2006, Q. J. R. Meteorol. Soc. 132), as
pysteps, the community's open nowcasting library, computes them (Pulkkinen et al. 2019,
Geosci. Model Dev. 12):

- Extrapolation (Lagrangian persistence): the motion field of the last three frames by
  Lucas-Kanade optical flow (pysteps.motion "LK"), and the last frame advected along it,
  semi-Lagrangian (pysteps.nowcasts "extrapolation"). Its rain keeps its intensity and
  moves; only where rain would enter from outside the frame does it not know what comes
  (pysteps leaves those points missing: they are taken as no rain).
- STEPS (Short-Term Ensemble Prediction System; Bowler et al. 2006, Seed et al. 2013):
  the field split into a cascade of spatial scales, each evolving in the moving frame by
  its own AR(2) process fitted to the last three frames, so that small scales lose their
  predictability first; stochastic noise with the field's own spectrum and perturbed
  motion make an ensemble of `members` (pysteps.nowcasts "steps", its nonparametric noise,
  "bps" motion perturbations and incremental rain mask). Its members are sharp and its
  spread grows with lead time; scored as one field, it is the members' mean.

Both run as pysteps' examples run them: on rain rates (mm/h) in decibels, 10 log10 R, with
rates under 0.1 mm/h as no rain (-15 dB). A window of frames (N, past, H, W) (or a
volume (N, 1, past, H, W)) gives the next `future` frames in the data's units, shaped as
the targets. Missing points of the inputs (outside the radar) are taken as no rain.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from types import SimpleNamespace

import numpy as np
import torch
from pydantic import Field

from esszoo.data.dataset import SplitData
from esszoo.data.variables import Variable

RAIN_THRESHOLD = 0.1  # mm/h: below it no rain
NO_RAIN_DB = -15.0  # the decibels of no rain
MOTION_FRAMES = 3  # optical flow of the last three frames, as pysteps' examples take it
AR_ORDER = 2  # STEPS's autoregression: its input is the last AR_ORDER + 1 frames

# standard names of rain: amounts per frame, and rates
AMOUNTS = {"rainfall_amount", "precipitation_amount", "thickness_of_rainfall_amount"}
RATES = {"rainfall_rate", "precipitation_rate", "rainfall_flux", "precipitation_flux"}


def members_option() -> int:
    """The recipe key of the STEPS ensemble's size (`task.steps_members`)."""
    return Field(default=20, ge=2, description="members of the STEPS baseline of radar nowcasts")


def pysteps() -> SimpleNamespace:
    """pysteps' modules (imported on first use: it prints where its configuration is)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pysteps import motion, nowcasts
        from pysteps.utils import transformation

    return SimpleNamespace(motion=motion, nowcasts=nowcasts, transformation=transformation)


def rain_rate_factor(variable: Variable, frame_step: float | None) -> float | None:
    """What turns values of `variable` into rain rates in mm/h: 3600 / step for amounts per
    frame (kg m-2 = mm; DWD's RADOLAN files say "kg"), 1 for mm/h, 3600 for kg m-2 s-1;
    None where the variable is not rain, or its units or time step are not known."""
    name, units = variable.standard_name, variable.units.replace(" ", "").replace("**", "")
    if name in AMOUNTS and units in {"kgm-2", "mm", "kg"}:
        return 3600.0 / frame_step if frame_step else None
    if name in RATES:
        per_hour = {"mmh-1", "mm/h", "mmhr-1", "mm/hr", "mm/hour"}
        return 1.0 if units in per_hour else {"kgm-2s-1": 3600.0, "mms-1": 3600.0}.get(units)
    return None


def frames_of(x: torch.Tensor) -> np.ndarray:
    """Windows (N, past, H, W) or volumes (N, 1, past, H, W) as float64 frames (N, past, H, W)."""
    return (x[:, 0] if x.dim() == 5 else x).double().numpy()


class MotionNowcasts:
    """Extrapolation and STEPS nowcasts of windows of rain, in the data's units."""

    def __init__(
        self,
        factor: float,
        future: int,
        kmperpixel: float | None,
        minutes: float | None,
        members: int = 20,
        seed: int = 0,
    ):
        self.factor, self.future = factor, future
        self.kmperpixel, self.minutes = kmperpixel, minutes
        self.members, self.seed = members, seed
        self.steps = pysteps()
        self.fallbacks = 0  # windows whose STEPS members are the extrapolation

    @property
    def calibrated(self) -> bool:
        """Whether STEPS can run: its motion perturbations and rain mask are in km and
        minutes, which need the grid spacing and the time step."""
        return bool(self.kmperpixel and self.minutes)

    def decibels(self, frames: np.ndarray) -> np.ndarray:
        """Rain rates of frames in the data's units, in dB (no rain at -15)."""
        rate = np.nan_to_num(frames * self.factor, nan=0.0)
        rate = np.where(rate < RAIN_THRESHOLD, 0.0, rate)
        with np.errstate(divide="ignore"):
            return np.where(rate > 0, 10.0 * np.log10(np.maximum(rate, 1e-12)), NO_RAIN_DB)

    def units(self, decibels: np.ndarray) -> np.ndarray:
        """dB back to the data's units (no rain: 0; points rain would enter from: 0)."""
        rate = np.where(decibels > NO_RAIN_DB + 1e-6, 10.0 ** (decibels / 10.0), 0.0)
        return np.nan_to_num(rate, nan=0.0) / self.factor

    def motion(self, decibels: np.ndarray) -> np.ndarray:
        """The motion field (2, H, W), in pixels per frame, of the last frames of a window."""
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return self.steps.motion.get_method("LK")(decibels[-MOTION_FRAMES:])

    def extrapolation(self, x: torch.Tensor) -> torch.Tensor:
        """The last frame of every window advected along its motion: (N, future, H, W)."""
        out = []
        for frames in frames_of(x):
            decibels = self.decibels(frames)
            advect = self.steps.nowcasts.get_method("extrapolation")
            moved = advect(decibels[-1], self.motion(decibels), self.future)
            out.append(self.units(moved))
        return torch.from_numpy(np.stack(out)).float()

    def ensemble(self, x: torch.Tensor) -> torch.Tensor:
        """STEPS members of every window: (N, members, future, H, W). A window without rain
        in its last frames gives members without rain (STEPS has nothing to perturb); one
        with too little rain for STEPS to fit its autoregression or its noise (pysteps
        fails on it) gives the extrapolation for every member, and the windows it does so
        for are counted in ``fallbacks``."""
        out, before = [], self.fallbacks
        for index, frames in enumerate(frames_of(x)):
            decibels = self.decibels(frames)[-(AR_ORDER + 1) :]
            if not (decibels > NO_RAIN_DB).any():
                out.append(np.zeros((self.members, self.future, *frames.shape[1:])))
                continue
            try:
                out.append(self.units(self._steps(frames, decibels, seed=self.seed + index)))
            except (ValueError, np.linalg.LinAlgError):
                self.fallbacks += 1
                moved = self.extrapolation(torch.from_numpy(frames)[None])[0].double().numpy()
                out.append(np.repeat(moved[None], self.members, axis=0))
        if self.fallbacks > before:
            print(
                f"note: STEPS found too little rain to fit in {self.fallbacks - before} of "
                f"{len(out)} windows: their members are the extrapolation"
            )
        return torch.from_numpy(np.stack(out)).float()

    def _steps(self, frames: np.ndarray, decibels: np.ndarray, seed: int) -> np.ndarray:
        """pysteps' STEPS members of one window, in dB."""
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            members = self.steps.nowcasts.get_method("steps")(
                decibels,
                self.motion(self.decibels(frames)),
                self.future,
                n_ens_members=self.members,
                n_cascade_levels=cascade_levels(frames.shape[1:]),
                precip_thr=10.0 * np.log10(RAIN_THRESHOLD),
                kmperpixel=self.kmperpixel,
                timestep=self.minutes,
                noise_method="nonparametric",
                vel_pert_method="bps",
                mask_method="incremental",
                seed=seed,
            )
        return members  # missing where rain would enter from outside: no rain (`units`)


def cascade_levels(shape: tuple[int, ...]) -> int:
    """Scales of STEPS's cascade: pysteps' 8 on its 1000-km grids, fewer on small grids
    (each level halves the scale; the coarsest keeps at least 2 wavelengths across)."""
    return int(np.clip(np.floor(np.log2(min(shape) / 2)), 2, 8))


def motion_nowcasts(data: SplitData, members: int, seed: int) -> MotionNowcasts | None:
    """The nowcasts along the motion of windows of one rain variable on a 2-D grid, with at
    least three past frames; None for other data."""
    if data.window is None or data.grid is None or len(data.grid.shape) != 2:
        return None
    past, future = data.window
    factor = rain_rate_factor(data.inputs[0], data.frame_step)
    if factor is None or past < MOTION_FRAMES:
        return None
    minutes = data.frame_step / 60 if data.frame_step else None
    return MotionNowcasts(factor, future, data.grid.spacing_km(), minutes, members, seed)
