"""Which architectures fit a data set and a task: the zoo's candidates, ranked, with reasons.

"Model architectures are task specific": a choice follows from what the data are, before
any training. `suggest` reads a data set (a file or a built-in name) and measures what
decides: whether the variables are fields (and on which grid, global or regional), series
or tables of points; how many samples there are along time; how many channels; whether
values are missing; whether a vertical dimension holds profiles. Each task's rules then
rank the zoo's models for it, each with the reasons that put it there, and a recipe's
search space over the top few, which `esszoo search` turns into measured evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from esszoo.data.coords import horizontal, time_dim
from esszoo.data.grid import Grid
from esszoo.errors import DataError, RecipeError, choices_hint
from esszoo.registry import list_models, model_card

VERTICAL = ("lev", "level", "plev", "pressure", "z", "height", "depth", "layer", "pfull")
SMALL_DATA = 5_000  # samples: below this, small networks and strong priors
LARGE_GRID = 128  # points on a side: multi-scale context starts to matter
SAMPLE_STEPS = 200  # time steps read to measure missing values


@dataclass
class Profile:
    """What the data are, as far as choosing an architecture goes."""

    variables: list[str]
    kind: str  # "fields", "series" or "points"
    samples: int  # along time (or the first dimension)
    grid: tuple[int, ...] = ()
    wraps: bool = False
    levels: int = 0
    missing: float = 0.0  # share of missing values
    fixed: float = 0.0  # share of the values at points missing at every time (land, say)

    def describe(self) -> str:
        where = f" on a {' x '.join(map(str, self.grid))} grid" if self.grid else ""
        wrap = " going round the globe" if self.wraps else ""
        levels = f", {self.levels} levels" if self.levels else ""
        return (
            f"{len(self.variables)} variable(s) ({', '.join(self.variables)}): {self.kind}"
            f"{where}{wrap}{levels}, {self.samples} samples, {self.missing:.1%} missing"
            + (f" ({self.fixed:.1%} at points missing at every time)" if self.fixed else "")
        )

    @property
    def gaps(self) -> float:
        """The share of values missing at points observed at other times."""
        return self.missing - self.fixed


@dataclass
class Suggestion:
    model: str
    score: float
    reasons: list[str]


def profile(dataset: xr.Dataset, variables: list[str] | None = None) -> Profile:
    """Measure `dataset`'s variables (all data variables with the most dimensions if none
    are named)."""
    names = variables or _main_variables(dataset)
    missing_names = [name for name in names if name not in dataset.data_vars]
    if missing_names:
        raise DataError(
            f"the data hold no variable {', '.join(missing_names)}",
            f"variables here: {', '.join(map(str, dataset.data_vars))}",
        )
    array = dataset[names[0]]
    time = time_dim(array)
    sample_dim = time or (array.dims[0] if array.dims else None)
    rest = [d for d in array.dims if d != sample_dim]
    vertical = [d for d in rest if str(d).lower() in VERTICAL]
    spatial = [d for d in rest if d not in vertical]
    has_horizontal = horizontal(array, "latitude") is not None or len(spatial) >= 2
    kind = "fields" if len(spatial) >= 2 and has_horizontal else ("series" if time else "points")
    if kind == "series" and vertical:
        kind = "points"  # profiles at points in time: columns
    grid = tuple(array.sizes[d] for d in spatial[-2:]) if kind == "fields" else ()
    wraps = kind == "fields" and Grid.of(array, tuple(spatial[-2:])).wraps
    head = {sample_dim: slice(0, SAMPLE_STEPS)} if sample_dim else {}
    missing, fixed = [], []
    for name in names:
        values = dataset[name].isel(head)
        finite = np.isfinite(np.asarray(values.values, dtype=np.float64))
        axis = values.dims.index(sample_dim) if sample_dim in values.dims else None
        never = ~finite.any(axis=axis, keepdims=True) if axis is not None else ~finite
        missing.append(float(np.mean(~finite)))
        fixed.append(float(np.mean(np.broadcast_to(never, finite.shape))))
    samples = int(array.sizes[sample_dim]) if sample_dim else 1
    levels = int(array.sizes[vertical[0]]) if vertical else 0
    return Profile(
        list(names),
        kind,
        samples,
        grid,
        wraps,
        levels,
        float(np.mean(missing)),
        float(np.mean(fixed)),
    )


def _main_variables(dataset: xr.Dataset) -> list[str]:
    if not dataset.data_vars:
        raise DataError("the data hold no variables")
    most = max(len(v.dims) for v in dataset.data_vars.values())
    return [str(n) for n, v in dataset.data_vars.items() if len(v.dims) == most]


# -- the rules of each task ----------------------------------------------------------------


def _fields_only(task: str, found: Profile) -> None:
    if found.kind != "fields":
        raise DataError(
            f"{task} learns from fields on a grid; these data are {found.kind}",
            "name gridded variables (time, lat, lon) or choose a task for "
            + ("series: forecasting" if found.kind == "series" else "points: regression"),
        )


def _size_reason(found: Profile) -> str:
    if found.samples < SMALL_DATA:
        return (
            f"{found.samples} samples are few: a small network (reduce `width`) and early stopping"
        )
    return f"{found.samples} samples carry a deep network"


def _classification(found: Profile) -> list[Suggestion]:
    _fields_only("classification", found)
    small_grid = min(found.grid) < 64
    few = found.samples < SMALL_DATA
    found_missing = found.gaps > 0
    rows = [
        Suggestion(
            "resnet18", 3.0, ["residual blocks train reliably at any depth", _size_reason(found)]
        ),
        Suggestion(
            "lenet5",
            2.5 if small_grid and few else 1.0,
            [
                "few parameters for a small grid and few samples"
                if small_grid and few
                else "built for 32 x 32 digits: a large grid is coarsened through it"
            ],
        ),
        Suggestion(
            "densenet121",
            2.0 if not few else 1.5,
            ["feature reuse: accurate per parameter", _size_reason(found)],
        ),
        Suggestion("resnet50", 2.5 if not few else 1.2, [_size_reason(found)]),
    ]
    if found_missing:
        for row in rows:
            if row.model.startswith("resnet"):
                row.reasons.append(
                    f"{found.gaps:.1%} missing: `partial_conv: true` ignores the holes"
                )
                row.score += 0.5
    return rows


def _segmentation(found: Profile) -> list[Suggestion]:
    _fields_only("segmentation", found)
    large = max(found.grid) >= LARGE_GRID
    return [
        Suggestion(
            "unet",
            3.0,
            [
                "skip connections keep the grid's detail in every class map",
                "pads to any grid and crops back",
            ],
        ),
        Suggestion(
            "deeplabv3plus",
            2.6 if large else 2.0,
            [
                "atrous pyramid pooling sees context at several scales"
                + (f" (a {max(found.grid)}-point side)" if large else "")
            ],
        ),
        Suggestion("fcn", 1.5, ["the simplest dense classifier: a baseline among networks"]),
    ]


def _translation(found: Profile) -> list[Suggestion]:
    _fields_only("translation", found)
    rows = [
        Suggestion("unet", 3.0, ["field to field with the detail kept by its skips"]),
        Suggestion("convlstm", 2.4, ["windows of frames: a recurrent state carries the motion"]),
        Suggestion(
            "unet3d",
            2.2 if not found.levels else 3.2,
            [
                f"{found.levels} levels: volumes in and out"
                if found.levels
                else "windows of frames as volumes (time, y, x)"
            ],
        ),
        Suggestion("autoencoder", 1.2, ["compression or denoising: a field from itself"]),
    ]
    if found.wraps:
        for row in rows:
            row.reasons.append("`padding: earth` wraps its convolutions round the globe")
    return rows


def _inpainting(found: Profile) -> list[Suggestion]:
    _fields_only("inpainting", found)
    reasons = [
        "partial convolutions see only the observed values (Liu et al. 2018; Kadow, Hall & "
        "Ulbrich 2020)"
    ]
    if found.gaps > 0:
        reasons.append(f"{found.gaps:.1%} of the values are gaps that move in time")
    if found.fixed > 0:
        reasons.append(f"{found.fixed:.1%} are missing at every time (land, say): never filled")
    if found.gaps <= 0:
        reasons.append("train on real gap patterns laid over the observed fields (`data.gaps`)")
    return [
        Suggestion("pconv_unet", 3.5, reasons),
        Suggestion("unet", 2.0, ["a plain UNet sees holes filled with zeros: a baseline"]),
    ]


def _forecasting(found: Profile) -> list[Suggestion]:
    if found.kind != "series":
        raise DataError(
            f"forecasting learns from series; these data are {found.kind}",
            "name variables along time only (or select a point), e.g. a station's hours",
        )
    long = found.samples > 10_000
    gaps = found.gaps > 0
    rows = [
        Suggestion("lstm", 3.0, ["gated memory for series of hundreds to thousands of steps"]),
        Suggestion("gru", 2.9, ["the LSTM's accuracy with fewer parameters"]),
        Suggestion(
            "transformer",
            2.8 if long else 1.8,
            [
                f"{found.samples} steps: attention reaches far back"
                if long
                else f"{found.samples} steps are few for attention"
            ],
        ),
        Suggestion(
            "latent_ode",
            3.2 if gaps else 1.5,
            [
                f"{found.gaps:.1%} missing: an ODE-RNN reads irregular pasts (Rubanova 2019)"
                if gaps
                else "for irregularly sampled series"
            ],
        ),
    ]
    if gaps:
        rows.append(Suggestion("ode_rnn", 2.6, ["the latent ODE's encoder alone, cheaper"]))
    return rows


def _regression(found: Profile) -> list[Suggestion]:
    rows = [
        Suggestion("mlp", 3.0, ["a learned function of the inputs at each point"]),
        Suggestion(
            "bnn_mlp",
            2.0 if found.samples >= SMALL_DATA else 2.6,
            ["Bayes by Backprop: intervals with its predictions", _size_reason(found)],
        ),
    ]
    if found.levels:
        rows.append(
            Suggestion(
                "column_rnn",
                3.3,
                [
                    f"profiles of {found.levels} levels: a GRU down and up the column "
                    "(Ukkonen 2022), with task column_emulation"
                ],
            )
        )
    return rows


def _detection(found: Profile) -> list[Suggestion]:
    _fields_only("detection", found)
    return [
        Suggestion(
            "detr",
            3.0,
            [
                "a set of boxes, matched one to one: no anchors, no NMS",
                "few samples: start its backbone from a zoo classifier (`init_from`)",
            ],
        )
    ]


RULES: dict[str, Callable[[Profile], list[Suggestion]]] = {
    "classification": _classification,
    "segmentation": _segmentation,
    "translation": _translation,
    "inpainting": _inpainting,
    "forecasting": _forecasting,
    "regression": _regression,
    "column_emulation": _regression,
    "detection": _detection,
}


def suggest(
    source: str | Path, task: str, variables: list[str] | None = None
) -> tuple[Profile, list[Suggestion]]:
    """The profile of the data at `source` and the zoo's models for `task`, best first."""
    from esszoo.data.source import open_source

    if task not in RULES:
        raise RecipeError(f"esszoo suggest knows no task '{task}'", choices_hint(task, RULES))
    with open_source(source) as dataset:
        found = profile(dataset, variables)
    ranked = sorted(RULES[task](found), key=lambda s: -s.score)
    registered = set(list_models())
    for row in ranked:
        card = model_card(row.model) if row.model in registered else None
        sized = card is not None and found.grid and len(card.min_size) == 2
        if sized and any(g < m for g, m in zip(found.grid, card.min_size, strict=True)):
            row.score = -1.0
            row.reasons.insert(0, f"needs a grid of at least {card.min_size}")
    return found, sorted((r for r in ranked if r.model in registered), key=lambda s: -s.score)


def search_space(suggestions: list[Suggestion], top: int = 3) -> dict[str, Any]:
    """A recipe's search section over the best `top` models and the learning rate."""
    models = [s.model for s in suggestions if s.score > 0][:top]
    return {
        "space": {
            "model.name": models,
            "trainer.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
        }
    }
