"""Class labels derived from real fields by documented rules.

A scene rule (`rain_category`) maps one field per sample (physical units, NaN where
missing) to a class index; it is applied at the data's native resolution, before any
coarsening of the inputs, so the labels do not depend on what the model is shown. A point
rule (`rain_intensity`) gives every grid point a class, for segmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from esszoo.errors import RecipeError, choices_hint

RAIN_RATE_WET = 0.5  # mm h-1: the radar detects rain
RAIN_RATE_CONVECTIVE = 10.0  # mm h-1: convective cores (about 40 dBZ)
WET_AREA_DRY = 0.02  # a scene is dry below 2% wet area
CONVECTIVE_AREA = 0.001  # a scene is convective above 0.1% of its area in cores


def rain_category(amount_5min: np.ndarray) -> np.ndarray:
    """Radar scene class from 5-minute rainfall sums (mm), fields (N, H, W) -> (N,).

    rain rate = 12 x 5-minute sum (mm h-1); over the area the radar covers (non-NaN):
      0 dry         wet area (rate >= 0.5 mm/h) below 2% of the scene;
      1 stratiform  wetter than that, convective cores (rate >= 10 mm/h) on less than 0.1%;
      2 convective  cores on at least 0.1% of the scene (e.g. 43 km2 of a 190 x 228 km scene).
    """
    rate = 12.0 * amount_5min
    covered = np.isfinite(rate).sum(axis=(1, 2)).clip(min=1)
    with np.errstate(invalid="ignore"):
        wet = (rate >= RAIN_RATE_WET).sum(axis=(1, 2)) / covered
        cores = (rate >= RAIN_RATE_CONVECTIVE).sum(axis=(1, 2)) / covered
    labels = np.ones(len(rate), dtype=np.int64)
    labels[wet < WET_AREA_DRY] = 0
    labels[(wet >= WET_AREA_DRY) & (cores >= CONVECTIVE_AREA)] = 2
    return labels


def rain_intensity(amount_5min: np.ndarray) -> np.ndarray:
    """Rain intensity class of every point from 5-minute sums (mm), (..., H, W) -> same shape.

    rain rate = 12 x 5-minute sum (mm h-1), classes of the AMS Glossary of Meteorology
    ("rain"): 0 none (< 0.1 mm/h), 1 light (< 2.5), 2 moderate (2.5 to 7.6), 3 heavy (>= 7.6);
    -1 where the radar has no value (ignored by losses and scores).
    """
    rate = 12.0 * amount_5min
    classes = np.digitize(np.nan_to_num(rate, nan=0.0), RAIN_INTENSITY_BOUNDS).astype(np.int64)
    classes[~np.isfinite(rate)] = -1
    return classes


RAIN_INTENSITY_BOUNDS = (0.1, 2.5, 7.6)  # mm h-1


@dataclass(frozen=True)
class LabelRule:
    name: str
    function: Callable[[np.ndarray], np.ndarray]
    classes: tuple[str, ...]
    variable: str  # CF standard name of the field the rule reads
    units: str


RULES = {
    rule.name: rule
    for rule in (
        LabelRule(
            "rain_category",
            rain_category,
            ("dry", "stratiform", "convective"),
            "rainfall_amount",
            "kg",
        ),
        LabelRule(
            "rain_intensity",
            rain_intensity,
            ("none", "light", "moderate", "heavy"),
            "rainfall_amount",
            "kg",
        ),
    )
}


def label_rule(name: str) -> LabelRule:
    if name not in RULES:
        raise RecipeError(f"unknown label rule '{name}'", choices_hint(name, RULES))
    return RULES[name]
