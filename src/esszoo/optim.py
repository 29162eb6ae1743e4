"""Optimizers and learning-rate schedules, named in the recipe's trainer section."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from esszoo.options import TrainerOptions


def configure_optimizer(
    parameters: Iterable[torch.nn.Parameter], spec: TrainerOptions, trainer: Any
) -> dict[str, Any]:
    """The optimizer (and, for ``schedule: cosine``, a per-step cosine decay) for Lightning."""
    parameters = list(parameters)
    if spec.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            parameters, lr=spec.lr, momentum=0.9, weight_decay=spec.weight_decay
        )
    elif spec.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    else:
        optimizer = torch.optim.AdamW(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.schedule == "none":
        return {"optimizer": optimizer}
    # optimizer steps, where a training batch may be a group of batches (TensorBatches)
    batches = trainer.estimated_stepping_batches
    loader = getattr(trainer, "train_dataloader", None)
    per_batch = loader.steps() / len(loader) if hasattr(loader, "steps") and len(loader) else 1
    total_steps = max(1, round(batches * per_batch))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": schedule, "interval": "step"},
    }
