"""Windows of consecutive fields: the last frames in, the next frames out (nowcasting).

A series of fields (time, lat, lon) is cut into windows of `past` input frames followed
by `future` target frames, a new window every `stride` frames. The split into train,
validation and test is made on the time axis first (contiguous blocks) and windows are cut
inside each block, so no window straddles two splits. Inputs keep NaN where missing;
targets are either the future fields (translation; as a volume (1, future, H, W) for
volume-to-volume networks, or as channels) or, with a point rule, the class of every
point of the last future frame (segmentation, -1 where unknown), on the (coarsened) grid
the model sees.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import xarray as xr
from pydantic import Field

from esszoo.data.dataset import SplitData, Table
from esszoo.data.fields import field_grid, grid_fields, load_blocks
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.labels import label_rule
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError
from esszoo.options import GridOptions, Options, StreamableOptions

WINDOW_HELP = "windows of frames: e.g. {past: 6, future: 6, stride: 3}"


class WindowOptions(Options):
    """Windows of consecutive fields: `past` frames in, the next `future` frames out."""

    past: int = Field(ge=1)
    future: int = Field(ge=1)
    stride: int = Field(default=1, ge=1, description="frames between window starts")

    def arguments(self) -> dict[str, int]:
        return dict(past=self.past, future=self.future, stride=self.stride)


class WindowDataOptions(StreamableOptions):
    """Windows of frames of one variable: the next frames from the last ones."""

    window: WindowOptions = Field(description=WINDOW_HELP)
    stream: Literal[False] = Field(
        default=False, description="true: leave the data on disk (data larger than memory)"
    )


class LabelledWindowOptions(GridOptions):
    """Windows of frames in, the class of every point of the last future frame out."""

    window: WindowOptions = Field(description=WINDOW_HELP)
    label_rule: str = Field(
        description="the class of every point by this esszoo.data.labels rule, e.g. rain_intensity"
    )


@register_data_kind("windows", WindowDataOptions, "windows of frames (data.window)")
def build_windows(
    dataset: xr.Dataset, options: WindowDataOptions, context: DataContext
) -> SplitData:
    return window_data(
        dataset,
        inputs=options.inputs,
        volume=context.volume,
        coarsen=options.coarsen,
        **options.window.arguments(),
        **options.split.arguments(),
    )


@register_data_kind(
    "labelled_windows", LabelledWindowOptions, "windows of frames with a class at every point"
)
def build_labelled_windows(
    dataset: xr.Dataset, options: LabelledWindowOptions, context: DataContext
) -> SplitData:
    return window_data(
        dataset,
        inputs=options.inputs,
        volume=context.volume,
        point_rule=options.label_rule,
        coarsen=options.coarsen,
        **options.window.arguments(),
        **options.split.arguments(),
    )


def window_data(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    past: int,
    future: int,
    stride: int = 1,
    volume: bool = False,
    point_rule: str | None = None,
    coarsen: dict[str, int] | None = None,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
) -> SplitData:
    """Windows of `past` frames in and `future` frames out, split in time."""
    if len(inputs) != 1:
        raise DataError("windows of fields take one variable: give one name in data.inputs")
    if past < 1 or future < 1 or stride < 1:
        raise DataError(
            f"data.window needs past, future and stride of at least 1, got {past}, {future}, "
            f"{stride}"
        )
    arrays, grid = grid_fields(dataset, inputs, split_dim, coarsen=coarsen)
    (array,) = arrays.values()
    frames = load_blocks(array, split_dim)
    # classes of the fields the model sees (after coarsening), so that a prediction and
    # the persistence of the last input frame are judged on the same grid
    labels = label_rule(point_rule).function(frames) if point_rule else None
    times = array[split_dim].values
    split = contiguous_split(times, split_dim, train, val, test)
    tables = {}
    for name in SPLITS:
        rows = np.arange(len(times))[split.indices(name)]
        starts = np.arange(rows[0], rows[-1] + 2 - past - future, stride)
        if not len(starts):
            raise DataError(
                f"the {name} split has {len(rows)} frames, fewer than a window of "
                f"{past} + {future}",
                "use a shorter window or a longer split",
            )
        x = np.stack([frames[s : s + past] for s in starts])  # (N, past, H, W)
        if labels is not None:
            y = torch.from_numpy(np.stack([labels[s + past + future - 1] for s in starts]))
        else:
            y = torch.from_numpy(np.stack([frames[s + past : s + past + future] for s in starts]))
        x = torch.from_numpy(x)
        if volume:
            x, y = x.unsqueeze(1), y.unsqueeze(1)  # (N, 1, frames, H, W)
        tables[name] = Table(x=x, y=y, coords={split_dim: times[starts + past - 1]})
    variable = Variable.of(array)
    classes = label_rule(point_rule).classes if point_rule else ()
    target = Variable("classes", "1") if point_rule else variable
    field, notes = field_grid(array, grid)
    return SplitData(
        inputs=[variable] * (1 if volume else past),
        targets=[target] * (1 if (volume or point_rule) else future),
        tables=tables,
        split=split,
        dims=(split_dim, *grid),
        dropped={name: 0 for name in SPLITS},
        classes=classes,
        grid=field,
        window=(past, future),
        frame_step=frame_step(times),
        notes=notes,
    )


def frame_step(times: np.ndarray) -> float | None:
    """Seconds between consecutive frames of dates `times`, where they are regular."""
    times = np.asarray(times)
    if len(times) < 2 or not np.issubdtype(times.dtype, np.datetime64):
        return None
    steps = np.unique(np.diff(times))
    return float(steps[0] / np.timedelta64(1, "s")) if len(steps) == 1 else None


def window_inputs(
    array: xr.DataArray, sample_dim: str, past: int, volume: bool
) -> tuple[torch.Tensor, np.ndarray]:
    """Every window of `past` frames of a field (time, *grid) as model inputs (N, past,
    H, W), or (N, 1, past, H, W) for volume networks, and the time of each window's last
    frame: what a trained nowcast is applied to (views of the frames, no copy)."""
    grid = [d for d in array.dims if d != sample_dim]
    frames = load_values(array.transpose(sample_dim, *grid), dtype=np.float32)
    if len(frames) < past:
        raise DataError(
            f"'{array.name}' has {len(frames)} frames along '{sample_dim}', fewer than the "
            f"{past} the model takes in",
            f"give at least {past} consecutive frames",
        )
    windows = np.lib.stride_tricks.sliding_window_view(frames, past, axis=0, writeable=True)
    windows = torch.from_numpy(np.moveaxis(windows, -1, 1))  # (N, H, W, past) -> (N, past, H, W)
    times = array[sample_dim].values[past - 1 :]
    return (windows.unsqueeze(1) if volume else windows), times


def lead_times(times: np.ndarray, count: int) -> tuple[np.ndarray, dict[str, str]]:
    """The lead of each of `count` frames after a window's last frame: multiples of the
    data's time step where the step is regular, else counts of steps."""
    steps = np.diff(times) if len(times) > 1 else np.array([])
    if len(steps) and all(step == steps[0] for step in steps):
        return np.array([steps[0] * k for k in range(1, count + 1)]), {
            "standard_name": "forecast_period",
            "long_name": "time after the last input frame",
        }
    return np.arange(1, count + 1), {"long_name": "frames after the last input frame", "units": "1"}
