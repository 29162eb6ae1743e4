"""Fields left on disk: data larger than memory, read a block of time steps at a time.

With `data.stream: true` a translation recipe keeps its variables as lazy (dask) arrays
of a Zarr store, a NetCDF file or many NetCDF files, and nothing is loaded whole:

- each split is a `StreamTable`: its samples (the fields of one time step, or a window of
  frames) are read `block` samples at a time, in time order;
- the task fits its normalization statistics and baselines block by block in one pass
  over the training split, and scores the test split block by block;
- training and validation batches come from `StreamBatches`: DataLoader worker processes
  read whole blocks (the block order drawn from the seed and the epoch, the rows shuffled
  within a block), turn them into the task's tensors and hand them over a few blocks
  ahead of the training step.

Peak memory is therefore a few blocks per worker, whatever the size of the store. A block
should cover whole chunks of the store along time (`data.stream_block`), so that each
chunk is read and decompressed once per pass.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from typing import Literal

import dask
import numpy as np
import torch
import xarray as xr
from pydantic import Field
from torch.utils.data import DataLoader, Sampler

from esszoo.data.batches import process_world
from esszoo.data.dataset import SplitData, Table
from esszoo.data.fields import field_grid, grid_fields
from esszoo.data.kinds import DataContext, register_data_kind
from esszoo.data.splits import SPLITS, contiguous_split
from esszoo.data.variables import Variable, load_values
from esszoo.data.windows import WINDOW_HELP, WindowOptions, frame_step
from esszoo.errors import DataError
from esszoo.options import StreamableOptions


class StreamedFieldOptions(StreamableOptions):
    """Fields or windows of frames left on disk, read a block of time steps at a time."""

    stream: Literal[True] = Field(description="leave the data on disk (data larger than memory)")
    targets: list[str] = Field(default=[], description="target fields of the same time steps")
    window: WindowOptions | None = Field(default=None, description=WINDOW_HELP)


@register_data_kind(
    "streamed_fields", StreamedFieldOptions, "fields streamed from disk (data.stream)"
)
def build_streamed_fields(
    dataset: xr.Dataset, options: StreamedFieldOptions, context: DataContext
) -> SplitData:
    window = options.window
    return streamed_fields(
        dataset,
        inputs=options.inputs,
        targets=options.targets or None,
        window=(window.past, window.future, window.stride) if window else None,
        volume=context.volume,
        coarsen=options.coarsen,
        block=options.stream_block,
        workers=options.stream_workers,
        **options.split.arguments(),
    )


class StreamTable:
    """One split whose samples stay on disk: fields of one time step (inputs and targets
    stacked as channels), or windows of `past` frames in and `future` frames out."""

    def __init__(
        self,
        inputs: list[xr.DataArray],
        targets: list[xr.DataArray],
        anchors: np.ndarray,
        times: np.ndarray,
        *,
        window: tuple[int, int] | None,
        volume: bool,
        block: int,
        workers: int = 2,
    ):
        self.inputs, self.targets = inputs, targets
        self.anchors = anchors  # each sample's time index: its time, or its window's start
        self.times = times  # each sample's coordinate (a window's: its last input frame)
        self.window, self.volume, self.block = window, volume, block
        self.workers = workers  # processes that read blocks ahead of training
        self.dim = inputs[0].dims[0]

    def __len__(self) -> int:
        return len(self.anchors)

    @property
    def coords(self) -> dict[str, np.ndarray]:
        return {self.dim: self.times}

    def rows(self, start: int, stop: int) -> Table:
        """Samples [start, stop), read from disk."""
        anchors = self.anchors[start:stop]
        first = int(anchors[0])
        coords = {self.dim: self.times[start:stop]}
        if self.window is None:
            last = int(anchors[-1]) + 1
            x = np.stack([_read(a, first, last) for a in self.inputs], axis=1)
            y = np.stack([_read(a, first, last) for a in self.targets], axis=1)
        else:
            past, future = self.window
            frames = _read(self.inputs[0], first, int(anchors[-1]) + past + future)
            offsets = anchors - first
            x = np.stack([frames[o : o + past] for o in offsets])
            y = np.stack([frames[o + past : o + past + future] for o in offsets])
            if self.volume:
                x, y = x[:, None], y[:, None]  # (N, 1, frames, H, W)
        return Table(torch.from_numpy(x), torch.from_numpy(y), coords=coords)

    def head(self, count: int) -> Table:
        return self.rows(0, min(count, len(self)))

    def blocks(self) -> Iterator[Table]:
        for start in range(0, len(self), self.block):
            yield self.rows(start, min(start + self.block, len(self)))
            release_memory()


def release_memory() -> None:
    """Hand the memory of a finished block back to the system. glibc keeps freed large
    arrays in its heap for reuse, and blocks of varying temporaries fragment it: measured
    here, a pass over 3 GiB kept 300 MB more without this (it costs about a millisecond)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only: absent on musl, macOS, Windows)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def _read(array: xr.DataArray, start: int, stop: int) -> np.ndarray:
    block = array.isel({array.dims[0]: slice(start, stop)})
    return load_values(block, part=True, dtype=np.float32)


def streamed_fields(
    dataset: xr.Dataset,
    *,
    inputs: list[str],
    targets: list[str] | None = None,
    window: tuple[int, int, int] | None = None,
    volume: bool = False,
    coarsen: dict[str, int] | None = None,
    split_dim: str = "time",
    train: float | list[str] = 0.7,
    val: float | list[str] = 0.15,
    test: float | list[str] = 0.15,
    block: int = 64,
    workers: int = 2,
) -> SplitData:
    """Translation data left on disk: target fields of the same time steps from input
    fields, or (with `window` = (past, future, stride)) the next frames from the last."""
    if window is None and not targets:
        raise DataError(
            "streamed data need target variables or a window; a field rebuilt from itself "
            "is compared with EOFs, which need the training fields in memory",
            "give data.targets or data.window, or set data.stream: false",
        )
    if window is not None and len(inputs) != 1:
        raise DataError("windows of fields take one variable: give one name in data.inputs")
    levels = volume and window is None  # volumes of windows are frames of 2-D fields
    arrays, grid = grid_fields(
        dataset, [*inputs, *(targets or [])], split_dim, levels=levels, coarsen=coarsen
    )
    first = arrays[inputs[0]]
    times = first[split_dim].values if split_dim in first.coords else np.arange(len(first))
    split = contiguous_split(times, split_dim, train, val, test)
    tables = {}
    for name in SPLITS:
        start, stop = split.ranges[name]
        if window is None:
            anchors, coords = np.arange(start, stop), times[start:stop]
        else:
            past, future, stride = window
            anchors = np.arange(start, stop + 1 - past - future, stride)
            if not len(anchors):
                raise DataError(
                    f"the {name} split has {stop - start} frames, fewer than a window of "
                    f"{past} + {future}",
                    "use a shorter window or a longer split",
                )
            coords = times[anchors + past - 1]
        tables[name] = StreamTable(
            [arrays[n] for n in inputs],
            [arrays[n] for n in (targets or inputs)],
            anchors,
            coords,
            window=None if window is None else window[:2],
            volume=volume,
            block=block,
            workers=workers,
        )
    if window is None:
        variables = (
            [Variable.of(arrays[n]) for n in inputs],
            [Variable.of(arrays[n]) for n in targets],
        )
    else:
        frames = 1 if volume else window[0], 1 if volume else window[1]
        variables = [Variable.of(first)] * frames[0], [Variable.of(first)] * frames[1]
    field, notes = field_grid(first, grid)
    return SplitData(
        inputs=variables[0],
        targets=variables[1],
        tables=tables,
        split=split,
        dims=(split_dim, *grid),
        dropped={name: None for name in SPLITS},  # not known without reading everything
        grid=field,
        window=None if window is None else window[:2],
        frame_step=None if window is None else frame_step(times),
        notes=notes,
    )


class StreamBatches:
    """Batches of a StreamTable, made by worker processes a block at a time.

    `transform` turns a Table into the task's tensors (it must be picklable: the workers
    are spawned processes, so that no state of the store's readers is shared). With
    `shuffle`, the blocks come in an order drawn from (seed, epoch) and the rows of a
    block in an order drawn from (seed, epoch, block), so a resumed run sees the same
    batches. Under DDP every process takes every world-th block of that order from its
    rank on, and all stop after as many batches as the one with fewest.
    """

    batch_sampler = None  # Lightning looks for it beside `sampler`

    def __init__(
        self,
        table: StreamTable,
        transform: Callable[[Table], dict[str, torch.Tensor]],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        workers: int = 2,
        prefetch: int = 2,
    ):
        self.table, self.batch_size = table, batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.ranges = [
            (start, min(start + table.block, len(table)))
            for start in range(0, len(table), table.block)
        ]
        self.blocks = _Blocks(table, transform, self.ranges, batch_size, shuffle, seed)
        self.workers, self.prefetch = workers, prefetch
        self._loader: DataLoader | None = None
        self._items: list[tuple[int, int]] = []  # the epoch's plan, read by `_Items`

    @property
    def sampler(self) -> StreamBatches:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def plan(self) -> tuple[list[tuple[int, int]], int]:
        """This process's (block, epoch) items for the epoch, and how many batches to take."""
        count = len(self.ranges)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(count, generator=generator).tolist()
        else:
            order = list(range(count))
        world, rank = process_world()
        per_process = -(-count // world)
        wrapped = (order * world)[: per_process * world]
        batches = [self._batches(wrapped[r::world]) for r in range(world)]
        return [(b, self.epoch) for b in wrapped[rank::world]], min(batches)

    def _batches(self, blocks: list[int]) -> int:
        return sum(-(-(self.ranges[b][1] - self.ranges[b][0]) // self.batch_size) for b in blocks)

    def __len__(self) -> int:
        return self.plan()[1]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        items, limit = self.plan()
        if self._loader is None:
            spawned = {"multiprocessing_context": "spawn", "persistent_workers": True}
            self._loader = DataLoader(
                self.blocks,
                batch_size=None,
                sampler=_Items(self),
                num_workers=self.workers,
                prefetch_factor=self.prefetch if self.workers else None,
                pin_memory=torch.cuda.is_available(),
                **(spawned if self.workers else {}),
            )
        self._items = items
        given = 0
        for batches in self._loader:
            for batch in batches:
                if given == limit:
                    return
                given += 1
                yield batch


class _Items(Sampler):
    """The (block, epoch) items of the owner's current epoch, read when iteration starts."""

    def __init__(self, owner: StreamBatches):
        self.owner = owner

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.owner._items)

    def __len__(self) -> int:
        return len(self.owner._items)


class _Blocks(torch.utils.data.Dataset):
    """Item (block, epoch): that block's samples, read, transformed and cut into batches."""

    def __init__(self, table, transform, ranges, batch_size, shuffle, seed):  # noqa: ANN001
        self.table, self.transform, self.ranges = table, transform, ranges
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, item: tuple[int, int]) -> list[dict[str, torch.Tensor]]:
        block, epoch = item
        release_memory()  # of the previous block
        in_worker = torch.utils.data.get_worker_info() is not None
        # one thread per worker: the workers together already read several blocks at once
        with dask.config.set(scheduler="synchronous" if in_worker else "threads"):
            tensors = self.transform(self.table.rows(*self.ranges[block]))
        count = len(next(iter(tensors.values())))
        if self.shuffle:
            seed = (self.seed * 100_003 + epoch) * 1_000_003 + block
            order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(count)
        return [
            {name: t[rows] for name, t in tensors.items()} for rows in order.split(self.batch_size)
        ]
