"""What every task shares with Lightning: the network and its recipe sections, the
epoch's mean training loss, the optimizer, and the training and validation steps around
one method each task defines, `batch_loss`.

The science of a task (its data, loss, metrics, baselines, plots) is in its own module.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from esszoo.optim import configure_optimizer
from esszoo.recipe import TaskSpec, TrainerSpec
from esszoo.tasks.logging import EpochMean


class Task(L.LightningModule):
    """A LightningModule that trains `net` on the loss `batch_loss` of each batch."""

    name: str
    data_kind: str
    plot_file: str

    def __init__(self, net: nn.Module, spec: TaskSpec, trainer: TrainerSpec):
        super().__init__()
        self.net = net
        self.spec = spec
        self.trainer_spec = trainer
        self.stats: dict[str, torch.Tensor] = {}  # normalization, fixed by `prepare`
        self.train_loss = EpochMean("train_loss")

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        self.train_loss.update(self, loss, len(batch["x"]), batch_index)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        self.log("val_loss", self.batch_loss(batch), on_epoch=True, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union of return types)
        return configure_optimizer(self.net.parameters(), self.trainer_spec, self.trainer)
