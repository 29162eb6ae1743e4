"""Objects in real fields, boxed by documented rules: the targets of detection.

An object rule finds the objects of one field (physical units, NaN where missing) as
labelled regions, and `region_boxes` puts a box around each (`esszoo.boxes`: normalized
(cx, cy, w, h), across the side edges on a global grid). The data kind ``object_windows``
cuts a series of fields into windows, as nowcasting does (`esszoo.data.windows`): `past`
frames in, and out the objects of the frame `future` steps after the window, a field the
model does not see, so that the rule applied to its inputs is a baseline and not the
answer.

Targets of a split: ``y`` (N, M, 5) float, one row per object (class, cx, cy, w, h), padded
to the split's most crowded sample by rows of class -1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndimage
import torch
import xarray as xr
from pydantic import Field

from esszoo.boxes import region_boxes
from esszoo.data.dataset import SplitData, Table
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.variables import Variable
from esszoo.data.windows import WINDOW_HELP, WindowOptions, window_data
from esszoo.errors import DataError, RecipeError, choices_hint
from esszoo.options import GridOptions

RAIN_CELL_RATE = 2.5  # mm h-1: moderate rain and more (AMS Glossary of Meteorology, "rain")
RAIN_CELL_POINTS = 9  # grid points, at least: 36 km2 on RADOLAN's 1 km grid coarsened to 2 km
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def rain_cells(amount_5min: np.ndarray, wraps: bool = False) -> tuple[np.ndarray, int]:
    """Rain cells of one field of 5-minute rainfall sums (mm), (H, W): the labelled regions
    (H, W) of 1..count and their count.

    rain rate = 12 x 5-minute sum (mm h-1); a cell is a region of moderate rain or more
    (rate >= 2.5 mm/h), its points joined through their 8 neighbours (diagonals too), of at
    least 9 grid points of the grid the model sees; missing points are dry. With `wraps` (a
    global grid), regions meeting at the side edges are one.
    """
    wet = np.nan_to_num(12.0 * amount_5min, nan=0.0) >= RAIN_CELL_RATE
    labels, count = connected_regions(wet, wraps)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    kept = np.flatnonzero(sizes >= RAIN_CELL_POINTS)
    kept = kept[kept > 0]
    relabel = np.zeros(count + 1, dtype=labels.dtype)
    relabel[kept] = np.arange(1, len(kept) + 1)
    return relabel[labels], len(kept)


def connected_regions(points: np.ndarray, wraps: bool) -> tuple[np.ndarray, int]:
    """8-connected regions of the True points of (H, W), as labels 1..count; with `wraps`,
    the first and last columns are neighbours (scipy's labelling, then the regions that
    meet across the edge merged)."""
    labels, count = ndimage.label(points, structure=EIGHT_NEIGHBOURS)
    if not wraps or count == 0:
        return labels, count
    parent = np.arange(count + 1)

    def root(label: int) -> int:
        while parent[label] != label:
            label = parent[label]
        return label

    height = points.shape[0]
    for row in range(height):
        left = labels[row, 0]
        for near in range(max(row - 1, 0), min(row + 2, height)):  # the diagonals too
            right = labels[near, -1]
            if left and right:
                parent[root(left)] = root(right)
    roots = np.array([root(label) for label in range(count + 1)])
    unique, merged = np.unique(roots, return_inverse=True)  # root 0 (background) first
    return merged[labels].astype(labels.dtype), len(unique) - 1


@dataclass(frozen=True)
class ObjectRule:
    name: str
    find: Callable[[np.ndarray, bool], tuple[np.ndarray, int]]
    classes: tuple[str, ...]
    variable: str  # CF standard name of the field the rule reads

    def boxes(self, field: np.ndarray, wraps: bool) -> np.ndarray:
        """The objects of one field as rows (class, cx, cy, w, h): (count, 5)."""
        labels, count = self.find(field, wraps)
        return np.concatenate([np.zeros((count, 1)), region_boxes(labels, count, wraps)], axis=1)


RULES = {
    rule.name: rule
    for rule in (ObjectRule("rain_cells", rain_cells, ("rain_cell",), "rainfall_amount"),)
}


def object_rule(name: str) -> ObjectRule:
    if name not in RULES:
        raise RecipeError(f"unknown object rule '{name}'", choices_hint(name, RULES))
    return RULES[name]


def padded(objects: list[np.ndarray]) -> torch.Tensor:
    """Each sample's (count, 5) objects as one tensor (N, M, 5), rows of class -1 after them."""
    most = max([len(o) for o in objects] + [1])
    table = np.zeros((len(objects), most, 5), dtype=np.float32)
    table[:, :, 0] = -1
    for row, found in enumerate(objects):
        table[row, : len(found)] = found
    return torch.from_numpy(table)


class ObjectWindowOptions(GridOptions):
    """Windows of frames in, the objects of a later frame out, as boxes."""

    window: WindowOptions = Field(
        description=WINDOW_HELP + "; the objects are those of the last future frame"
    )
    object_rule: str = Field(
        default="rain_cells", description="the objects by this esszoo.data.objects rule"
    )


@register_data_kind(
    "object_windows", ObjectWindowOptions, "windows of frames with the boxed objects of a later one"
)
def build_object_windows(
    dataset: xr.Dataset, options: ObjectWindowOptions, context: DataContext
) -> SplitData:
    rule = object_rule(options.object_rule)
    data = window_data(
        dataset,
        inputs=options.inputs,
        coarsen=options.coarsen,
        **options.window.arguments(),
        **options.split.arguments(),
    )
    if data.inputs[0].standard_name != rule.variable:
        raise DataError(
            f"the object rule '{rule.name}' reads {rule.variable}, but data.inputs gives "
            f"'{data.inputs[0].name}' ({data.inputs[0].standard_name or 'no standard name'})",
            f"give a variable of standard name {rule.variable}",
        )
    wraps = data.grid is not None and data.grid.wraps
    for name, table in data.tables.items():
        targets = table.y[:, -1].numpy()  # the last future frame: (N, H, W)
        boxes = padded([rule.boxes(field, wraps) for field in targets])
        data.tables[name] = Table(x=table.x, y=boxes, coords=table.coords)
    data.targets = [Variable("objects", "1")]
    data.classes = rule.classes
    return data
