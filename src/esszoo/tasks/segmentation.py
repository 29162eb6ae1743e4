"""Segmentation: fields -> a class at every grid point.

Batch contract: ``{"x": (B, C, H, W), "y": (B, H, W) int64, -1 where unknown}``; inputs
normalized per channel with the training split's statistics, missing inputs set to 0.

Loss: cross-entropy over the known points (optionally class-weighted, e.g. "balanced"),
plus ``dice_weight`` times the soft Dice loss (Milletari et al. 2016, V-Net, Eq. 1)
averaged over the classes present, which keeps rare classes (heavy rain) from vanishing.
Metrics: pixel accuracy, intersection over union of every class and their mean (mIoU).
Baselines: the majority class everywhere and, for windows of the field that the classes
are made from, persistence: the classes of the last input frame by the same rule, and for
windows of rain the classes of pysteps' extrapolation along the motion and of its STEPS
members (`esszoo.tasks.extrapolation`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from pydantic import Field
from torch import nn

from esszoo.data.dataset import SplitData, Table
from esszoo.data.labels import RULES
from esszoo.data.windows import lead_times, window_inputs
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, predict_in_batches
from esszoo.tasks import register_task
from esszoo.tasks.base import Task
from esszoo.tasks.baselines import ClassClimatology
from esszoo.tasks.classification import (
    aux_weight_option,
    class_weights_option,
    confusion_matrix,
)
from esszoo.tasks.extrapolation import members_option, motion_nowcasts
from esszoo.tasks.moments import channel_stats


class SegmentationOptions(TaskOptions):
    name: str = "segmentation"
    loss: Literal["cross_entropy"] = Field(
        default="cross_entropy", description="plus dice_weight times the soft Dice loss"
    )
    dice_weight: float = Field(
        default=1.0, ge=0, description="weight of the Dice term beside cross-entropy"
    )
    class_weights: Literal["balanced"] | list[float] | None = class_weights_option()
    aux_weight: float = aux_weight_option()
    steps_members: int = members_option()


@register_task
class SegmentationTask(Task):
    """Train `net` to classify every grid point."""

    name = "segmentation"
    Options = SegmentationOptions
    data_kinds = ("labelled_windows",)
    headline = ("miou", "higher")
    plot_file = "segmentation.png"

    def __init__(self, net: nn.Module, spec: SegmentationOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        self.register_buffer("class_weights", None)

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        return {"in_channels": data.train.x.shape[1], "out_channels": len(data.classes)}

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        mean, std = channel_stats(data.train.x)
        self.stats = {"input_mean": mean, "input_std": std}
        count = len(data.classes)
        if self.spec.class_weights == "balanced":
            known = data.train.y[data.train.y >= 0]
            counts = torch.bincount(known, minlength=count).double().clamp(min=1)
            self.class_weights = (len(known) / (count * counts)).float()
        elif self.spec.class_weights is not None:
            self.class_weights = torch.tensor(self.spec.class_weights, dtype=torch.float32)
        predictor = self.predictor()
        return {
            split: {"x": predictor.normalize(t.x), "y": t.y} for split, t in data.tables.items()
        }

    def predictor(self) -> Predictor:
        return Predictor(self.net, **self.stats, fill_missing=True)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        loss = F.cross_entropy(logits, labels, weight=self.class_weights, ignore_index=-1)
        if self.spec.dice_weight:
            loss = loss + self.spec.dice_weight * soft_dice_loss(logits, labels)
        return loss

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = self.net(batch["x"])  # with auxiliary heads in training: (main, *aux)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = self._loss(outputs[0], batch["y"])
        return loss + self.spec.aux_weight * sum(self._loss(o, batch["y"]) for o in outputs[1:])

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        count = len(data.classes)
        known = data.train.y[data.train.y >= 0]
        majority = int(torch.bincount(known, minlength=count).argmax())

        def everywhere(table: Table) -> torch.Tensor:
            logits = torch.zeros(len(table), count, *table.y.shape[1:])
            logits[:, majority] = 1.0
            return logits

        found = {f"majority class ({data.classes[majority]})": everywhere}
        climatology = ClassClimatology(data.split.dim, count)
        for table in data.train.blocks():
            climatology.add(table)
        found[climatology.name] = climatology.predictor()  # the commonest class at each point
        rule = next((r for r in RULES.values() if r.classes == data.classes), None)
        if rule is not None and rule.variable == data.inputs[0].standard_name:

            def persistence(table: Table) -> torch.Tensor:
                classes = torch.from_numpy(rule.function(table.x[:, -1].numpy())).clamp(min=0)
                return F.one_hot(classes, count).permute(0, 3, 1, 2).float()

            found["persistence"] = persistence
            found |= self._motion_baselines(data, rule.function, count)
        return found

    def _motion_baselines(
        self, data: SplitData, rule: Callable[[np.ndarray], np.ndarray], count: int
    ) -> dict[str, Callable[[Table], torch.Tensor]]:
        """For windows of rain: the classes of the frame pysteps extrapolates along the
        motion, and the share of STEPS's members in each class (the commonest wins)."""
        members = self.spec.steps_members
        nowcasts = motion_nowcasts(data, members, self.trainer_spec.seed)
        if nowcasts is None:
            return {}

        def one_hot(frames: torch.Tensor) -> torch.Tensor:  # (..., H, W) -> (..., C, H, W)
            classes = torch.from_numpy(rule(frames.numpy())).clamp(min=0)
            return F.one_hot(classes, count).movedim(-1, -3).float()

        def extrapolation(table: Table) -> torch.Tensor:
            return one_hot(nowcasts.extrapolation(table.x)[:, -1])

        def steps_shares(table: Table) -> torch.Tensor:
            return one_hot(nowcasts.ensemble(table.x)[:, :, -1]).mean(1)

        found = {"extrapolation (pysteps)": extrapolation}
        if nowcasts.calibrated:  # STEPS's scales need the grid spacing and the time step
            found[f"STEPS (pysteps, {members} members' classes)"] = steps_shares
        return found

    def score(
        self, logits: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        count = len(data.classes)
        known = truth >= 0
        matrix = confusion_matrix(logits.argmax(1)[known], truth[known], count).double()
        intersection = matrix.diag()
        union = matrix.sum(0) + matrix.sum(1) - intersection
        iou = intersection / union.clamp(min=1)
        present = matrix.sum(1) > 0
        row = {
            "pixel_acc": float(intersection.sum() / matrix.sum().clamp(min=1)),
            "miou": float(iou[present].mean()),
        }
        row |= {f"iou_{name}": float(iou[i]) for i, name in enumerate(data.classes)}
        return row

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        from esszoo.plots import class_map_panels

        class_map_panels(predictions, truth, data, path)

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """The class of every point at the last target frame after every window of past
        frames, and the probability of each class; `lead_time` says how far ahead of the
        window's last frame (the time coordinate) that is."""
        window = description["recipe"]["data"]["window"]
        volume = len(description["card"]["example_input"]) == 5
        classes = description["classes"]
        (array,) = inputs
        grid = [d for d in array.dims if d != sample_dim]
        x, times = window_inputs(array, sample_dim, window["past"], volume)
        probability = torch.softmax(predict_in_batches(predictor, x), dim=1).numpy()
        domain = np.isfinite(x.numpy()).any(axis=tuple(range(x.dim() - 2)))  # (*grid)
        predicted = np.where(domain, probability.argmax(1), -1).astype(np.int8)
        lead, lead_attrs = lead_times(array[sample_dim].values, window["future"])
        coords = {k: v for k, v in array.coords.items() if set(v.dims) <= set(grid)}
        coords |= {
            sample_dim: (sample_dim, times, {"long_name": "time of the last input frame"}),
            "lead_time": ((), lead[-1], lead_attrs),
            "class": ("class", list(classes)),
        }
        model = description["model"]["name"]
        dataset = xr.Dataset(
            {
                "predicted_class": (
                    (sample_dim, *grid),
                    predicted,
                    {
                        "flag_values": np.arange(len(classes), dtype=np.int8),
                        "flag_meanings": " ".join(classes),
                        "long_name": f"class predicted by {model}, lead_time after the time",
                    },
                ),
                "class_probability": (
                    (sample_dim, "class", *grid),
                    np.where(domain, probability, np.nan).astype(np.float32),
                    {"units": "1", "long_name": "softmax probability of each class"},
                ),
            },
            coords=coords,
        )
        dataset["predicted_class"].encoding["_FillValue"] = np.int8(-1)  # outside the domain
        return dataset


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of 2 |P n G| / (|P| + |G|), on softmax probabilities."""
    count = logits.shape[1]
    known = (labels >= 0).unsqueeze(1).float()
    probability = logits.softmax(1) * known
    target = F.one_hot(labels.clamp(min=0), count).permute(0, 3, 1, 2).float() * known
    dims = (0, 2, 3)
    intersection = (probability * target).sum(dims)
    sizes = probability.sum(dims) + target.sum(dims)
    present = target.sum(dims) > 0
    dice = 2 * intersection / sizes.clamp(min=1e-6)
    return 1 - dice[present].mean() if present.any() else logits.new_zeros(())
