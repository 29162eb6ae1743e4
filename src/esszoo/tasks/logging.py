"""Logging a training loss without paying Lightning's per-call cost on every step.

`LightningModule.log` walks its metric state on every call (measured here: about 0.5 ms a
step on the CPU, a third of a small MLP's step at batch 256). The epoch's mean loss is
therefore summed in tensors on the device, without a synchronisation, and logged once, at
the epoch's last batch.
"""

from __future__ import annotations

import lightning as L
import torch


class EpochMean:
    """The mean of a per-batch loss over an epoch, logged once under `name`."""

    def __init__(self, name: str):
        self.name = name
        self.total: torch.Tensor | None = None
        self.count = 0

    def update(
        self, task: L.LightningModule, loss: torch.Tensor, count: int, batch_index: int
    ) -> None:
        if batch_index == 0 or self.total is None:
            self.total, self.count = torch.zeros((), device=loss.device), 0
        self.total += loss.detach().float() * count
        self.count += count
        if batch_index == task.trainer.num_training_batches - 1:
            mean = self.total / self.count
            task.log(self.name, mean, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
