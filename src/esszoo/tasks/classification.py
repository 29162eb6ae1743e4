"""Classification: fields (or vectors) -> one class per sample.

Batch contract: ``{"x": (B, C, H, W), "y": (B,) int64}``; inputs normalized per channel
with the statistics of the training split, missing points (NaN) set to 0 (the channel's
training mean).

Loss: cross-entropy, optionally weighted per class (``class_weights``: a list, or
"balanced" = N / (K * count of the class) on the training split). Models with auxiliary
heads (GoogLeNet) return (main, *aux) in training; their losses are added with weight
``aux_weight`` (0.3 in Szegedy et al. 2015).
Metrics: accuracy, top-k accuracy (k = 5 for ten or more classes, else 2), balanced
accuracy (mean recall over classes), recall of every class, and a confusion matrix PNG.
Baseline that needs no learning: the majority class of the training split.
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
from esszoo.data.variables import load_values
from esszoo.errors import DataError, RecipeError
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, predict_in_batches
from esszoo.tasks import register_task
from esszoo.tasks.base import Task
from esszoo.tasks.baselines import ClassClimatology
from esszoo.tasks.moments import channel_stats


def class_weights_option() -> Any:
    return Field(
        default=None,
        description='weights of the classes in the loss: a list, or "balanced" (N / (K * count))',
    )


def aux_weight_option() -> Any:
    return Field(
        default=0.3, ge=0, description="weight of auxiliary heads' losses (GoogLeNet: 0.3)"
    )


class ClassificationOptions(TaskOptions):
    name: str = "classification"
    loss: Literal["cross_entropy"] = "cross_entropy"
    class_weights: Literal["balanced"] | list[float] | None = class_weights_option()
    aux_weight: float = aux_weight_option()


@register_task
class ClassificationTask(Task):
    """Train `net` to give the class of each sample."""

    name = "classification"
    Options = ClassificationOptions
    data_kinds = ("labelled_fields",)
    headline = ("accuracy", "higher")
    plot_file = "confusion_matrix.png"

    def __init__(self, net: nn.Module, spec: ClassificationOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        self.register_buffer("class_weights", None)

    # -- data ------------------------------------------------------------------------------

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        """The zoo constructor arguments that the data fix."""
        return {"in_channels": len(data.inputs), "num_classes": len(data.classes)}

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        """Fix normalization and class weights from the training split; return batch tensors."""
        mean, std = channel_stats(data.train.x)
        self.stats = {"input_mean": mean, "input_std": std}
        self.class_weights = self._class_weights(data)
        predictor = self.predictor()
        return {
            split: {"x": predictor.normalize(table.x), "y": table.y}
            for split, table in data.tables.items()
        }

    def _class_weights(self, data: SplitData) -> torch.Tensor | None:
        count = len(data.classes)
        weights = self.spec.class_weights
        if weights is None:
            return None
        if weights == "balanced":
            counts = torch.bincount(data.train.y, minlength=count).double().clamp(min=1)
            return (len(data.train.y) / (count * counts)).float()
        if len(weights) != count:
            raise RecipeError(
                f"task.class_weights has {len(weights)} values for {count} classes {data.classes}"
            )
        return torch.tensor(weights, dtype=torch.float32)

    def predictor(self) -> Predictor:
        """The network with its input normalization: physical fields in, logits out."""
        return Predictor(self.net, **self.stats, fill_missing=True)

    # -- training --------------------------------------------------------------------------

    def _loss(self, outputs: torch.Tensor | tuple, labels: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, tuple):
            main, *aux = outputs
            loss = self._loss(main, labels)
            return loss + self.spec.aux_weight * sum(self._loss(a, labels) for a in aux)
        return F.cross_entropy(outputs.float(), labels, weight=self.class_weights)

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(self.net(batch["x"]), batch["y"])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        logits = self.net(batch["x"])
        self.log(
            "val_loss", self._loss(logits, batch["y"]), on_epoch=True, prog_bar=True, sync_dist=True
        )
        accuracy = (logits.argmax(1) == batch["y"]).float().mean()
        self.log("val_acc", accuracy, on_epoch=True, prog_bar=True, sync_dist=True)

    # -- evaluation ------------------------------------------------------------------------

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        """The majority class of the training split, as logits; each takes a table."""
        count = len(data.classes)
        majority = int(torch.bincount(data.train.y, minlength=count).argmax())

        def predict(table: Table) -> torch.Tensor:
            logits = torch.zeros(len(table), count)
            logits[:, majority] = 1.0
            return logits

        found = {f"majority class ({data.classes[majority]})": predict}
        climatology = ClassClimatology(data.split.dim, count).add(data.train)
        if climatology.monthly:  # within one month it is the majority class again
            found[climatology.name] = climatology.predictor()
        return found

    def score(
        self, logits: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        count = len(data.classes)
        predicted = logits.argmax(1)
        k = 5 if count >= 10 else 2
        top_k = logits.topk(min(k, count), dim=1).indices
        confusion = confusion_matrix(predicted, truth, count)
        recall = confusion.diag() / confusion.sum(1).clamp(min=1)
        present = confusion.sum(1) > 0
        row = {
            "accuracy": float((predicted == truth).double().mean()),
            f"top{k}": float((top_k == truth[:, None]).any(1).double().mean()),
            "balanced_acc": float(recall[present].mean()),
        }
        row |= {f"recall_{name}": float(recall[i]) for i, name in enumerate(data.classes)}
        return row

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        """Confusion matrices on the test split, for the model and its baseline."""
        from esszoo.plots import confusion_panels

        count = len(data.classes)
        matrices = {
            name: confusion_matrix(logits.argmax(1), truth, count)
            for name, logits in predictions.items()
        }
        confusion_panels(matrices, data.classes, path)

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """One class (and the probability of every class) per sample."""
        if sample_dim not in inputs[0].dims or inputs[0].ndim != 3:
            raise DataError(
                f"the model classifies 2-D fields along '{sample_dim}', but "
                f"'{inputs[0].name}' has dimensions {inputs[0].dims}",
                f"give fields with dimensions ({sample_dim}, lat, lon)",
            )
        grid = [d for d in inputs[0].dims if d != sample_dim]
        fields = np.stack(
            [load_values(a.transpose(sample_dim, *grid)).astype(np.float32) for a in inputs],
            axis=1,
        )
        logits = predict_in_batches(predictor, torch.from_numpy(fields))
        probability = torch.softmax(logits, dim=1).numpy()
        classes = description["classes"]
        coords = {k: v for k, v in inputs[0].coords.items() if v.dims == (sample_dim,)}
        coords["class"] = ("class", list(classes))
        return xr.Dataset(
            {
                "predicted_class": (
                    sample_dim,
                    probability.argmax(1).astype(np.int32),
                    {
                        "flag_values": np.arange(len(classes), dtype=np.int32),
                        "flag_meanings": " ".join(classes),
                        "long_name": f"class predicted by {description['model']['name']}",
                    },
                ),
                "class_probability": (
                    (sample_dim, "class"),
                    probability.astype(np.float32),
                    {"units": "1", "long_name": "softmax probability of each class"},
                ),
            },
            coords=coords,
        )


def confusion_matrix(predicted: torch.Tensor, truth: torch.Tensor, count: int) -> torch.Tensor:
    """Counts (true class, predicted class)."""
    index = truth.long() * count + predicted.long()
    return torch.bincount(index, minlength=count * count).reshape(count, count)
