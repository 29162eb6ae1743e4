"""Batches of a table by slicing tensors, not by a per-sample DataLoader.

For tabular data a DataLoader gathers a batch one sample at a time and collates it, which
was measured to add 70% to a training step at batch 4096. Here a batch is one
``index_select`` per tensor. Shuffling happens within the training split only, with a
permutation drawn from (seed, epoch), so a resumed run sees the same order.

Under distributed training (DDP) every process draws the same permutation and takes
every world-th row of it from its rank on, wrapped round so that all processes get as
many batches: batch k of the processes together is batch k of one process with a batch
world times larger, so N processes at batch B train as one process at batch N x B.

A small network's step takes a fraction of a millisecond, less than Lightning's fixed cost
per batch (its hooks, progress and logging: about 0.3 ms here). `group` batches therefore
travel together, as one gather of their rows, and the task takes one optimizer step per
batch of the group (`Task.training_step`): the rows, their order and the optimizer steps
are those of ungrouped batches. `group_for` picks how many batches share a Lightning step.
Distributed runs keep one batch per Lightning step: DDP reduces the gradients of one
backward pass per forward.

The tensors may live on the accelerator (`on_device`): they are moved there once, the
permutation follows them once an epoch, and each batch is gathered there, with no copy
from the host per step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist

# the input values a group of batches holds at least (when an epoch has as many): enough
# work per Lightning step that its fixed cost is a percent or less of it
GROUP_VALUES = 2**20


def group_for(sample: torch.Tensor, batch_size: int) -> int:
    """How many batches of `batch_size` samples like `sample` (the inputs' first sample)
    travel together: 1 for batches of large fields, many for small tables."""
    return max(1, GROUP_VALUES // (batch_size * max(1, sample.numel())))


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of an accelerator (None for the CPU: its memory is the host's)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "mps":
        return torch.mps.recommended_max_memory()
    return None


def on_device(
    splits: dict[str, dict[str, torch.Tensor]], device: torch.device, fraction: float
) -> tuple[dict[str, dict[str, torch.Tensor]], str | None]:
    """The splits' tensors moved to `device` once, where they take at most `fraction` of
    its memory (and the CPU keeps them where they are); a note of what was done."""
    memory = device_memory(device)
    if memory is None or fraction == 0:
        return splits, None
    size = sum(t.nbytes for tensors in splits.values() for t in tensors.values())
    if size > fraction * memory:
        return splits, (
            f"the data ({size / 2**30:.2f} GiB) exceed {fraction:g} of the {device.type} "
            "memory (trainer.data_on_device): batches are copied to it one at a time"
        )
    moved = {
        name: {key: t.to(device) for key, t in tensors.items()} for name, tensors in splits.items()
    }
    return moved, f"the data ({size / 2**20:.0f} MiB) are kept on {device} for the run"


class TensorBatches:
    """Iterate over dicts of equally long tensors in batches of `batch_size` rows, `group`
    batches at a time (as one dict of their rows)."""

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        group: int = 1,
    ):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors of different lengths: {lengths}")
        self.tensors = tensors
        self.length = lengths.pop()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group = group
        self.epoch = 0

    # Lightning calls `sampler.set_epoch(epoch)` on every training loader before each epoch,
    # and looks for a `batch_sampler` on anything that has a `sampler`.
    batch_sampler = None

    @property
    def sampler(self) -> TensorBatches:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.steps() // self._group())

    def steps(self) -> int:
        """Batches of `batch_size` rows (optimizer steps) per epoch."""
        return -(-self._rows_per_process() // self.batch_size)

    def _group(self) -> int:
        return 1 if process_world()[0] > 1 else self.group

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator)
        else:
            order = torch.arange(self.length)
        order = order.to(next(iter(self.tensors.values())).device)
        world, rank = process_world()
        rows = self.batch_size * self._group()
        if world > 1:
            wrapped = order.repeat(-(-self._rows_per_process() * world // self.length))
            order = wrapped[: self._rows_per_process() * world][rank::world]
        elif not self.shuffle:  # one process, in order: plain slices, no gather
            for start in range(0, self.length, rows):
                yield {name: t[start : start + rows] for name, t in self.tensors.items()}
            return
        for start in range(0, len(order), rows):
            taken = order[start : start + rows]
            yield {name: tensor[taken] for name, tensor in self.tensors.items()}

    def _rows_per_process(self) -> int:
        world, _ = process_world()
        return -(-self.length // world)


def process_world() -> tuple[int, int]:
    """(processes, this process's rank) of the distributed run, (1, 0) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0
