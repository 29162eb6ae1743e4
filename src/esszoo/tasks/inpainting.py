"""Inpainting: a field with holes and its validity mask -> the complete field.

Batch contract: ``{"x": (B, C, H, W) observed values, normalized, 0 in holes; "mask": (B,
1, H, W), 1 where observed; "y": the normalized truth, 0 where unknown; "known": 1 where
the truth is known (e.g. ocean)}``. A model that takes the mask as an argument
(partial convolutions, card inputs ("x", "mask")) gets it so; any other model gets it as
extra input channels.

Loss (Liu et al. 2018, Section 3.3), over the points whose truth is known, N their count:
  L_valid = |M * (I_out - I_gt)|_1 / N,   L_hole = |(1 - M) * (I_out - I_gt)|_1 / N,
  L_tv = total variation of I_comp = M * I_gt + (1 - M) * I_out over the holes dilated by
  one point, and the weights of ``task.loss_weights`` (Liu: valid 1, hole 6, tv 0.1).
The perceptual and style terms (weights 0.05 and 120 in the paper) compare features of
an ImageNet-trained VGG-16; such weights cannot be downloaded here, so they are optional:
give ``task.vgg_weights`` (an esszoo checkpoint of `vgg16`) to turn them on.

Metrics, on the hidden points only (hidden, truth known), in physical units: RMSE, MAE,
bias, correlation, and the error of the area-weighted (cos latitude) mean of the
completed field, the quantity climate records are read for (Kadow et al. 2020).
Baselines: climatology of the training period, nearest-neighbour and linear
interpolation, iterative EOF infilling (`infilling.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from pydantic import Field, field_validator
from torch import nn

from esszoo import metrics
from esszoo.data.dataset import SplitData, Table
from esszoo.data.variables import load_values
from esszoo.errors import DataError, RecipeError
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, predict_in_batches
from esszoo.registry import takes_mask
from esszoo.tasks import infilling, register_task
from esszoo.tasks.base import Task
from esszoo.tasks.baselines import calendar_months
from esszoo.tasks.moments import channel_stats

# bins of the distance (grid points) from a hidden point to the nearest observed one
DISTANCE_BINS = ((0, 2), (2, 4), (4, 8), (8, 16), (16, math.inf))


def observation_distance(observed: np.ndarray) -> np.ndarray:
    """For fields of observed flags (N, H, W), each point's Euclidean distance in grid
    points to the nearest observed point (0 where observed; inf where none is)."""
    from scipy import ndimage

    distance = np.full(observed.shape, np.inf)
    for k, case in enumerate(observed > 0):
        if case.any():
            distance[k] = ndimage.distance_transform_edt(~case)
    return distance


LIU_WEIGHTS = {"valid": 1.0, "hole": 6.0, "tv": 0.1, "perceptual": 0.0, "style": 0.0}


class InpaintingOptions(TaskOptions):
    name: str = "inpainting"
    loss: Literal["l1"] = Field(
        default="l1", description="Liu et al.'s L1 terms, weighted by loss_weights"
    )
    loss_weights: dict[str, float] | None = Field(
        default=None,
        description="weights of the terms valid, hole, tv, perceptual, style (Liu: 1, 6, 0.1, "
        "0.05, 120; perceptual and style off unless vgg_weights)",
    )
    anomalies: bool = Field(
        default=False,
        description="learn anomalies from the training split's mean at each point",
    )
    vgg_weights: str | None = Field(
        default=None, description="an esszoo vgg16 checkpoint for the perceptual and style terms"
    )

    @field_validator("loss_weights")
    @classmethod
    def _known_terms(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(weights or {}) - set(LIU_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; the terms are {list(LIU_WEIGHTS)}")
        return weights


@register_task
class InpaintingTask(Task):
    """Learn to fill the hidden points of fields from the observed ones."""

    name = "inpainting"
    Options = InpaintingOptions
    data_kinds = ("gapped_fields",)
    headline = ("rmse", "lower")
    plot_file = "reconstructions.png"

    def __init__(self, net: nn.Module, spec: InpaintingOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        self.weights = LIU_WEIGHTS | (spec.loss_weights or {})
        self.features = self._feature_network(spec.vgg_weights)
        self.mask_argument = takes_mask(net)

    def _feature_network(self, path: str | None) -> nn.Module | None:
        if not (self.weights["perceptual"] or self.weights["style"]):
            return None
        if not path:
            raise RecipeError(
                "the perceptual and style terms need ImageNet VGG-16 weights, which cannot be "
                "downloaded here",
                "give task.vgg_weights: PATH (an esszoo checkpoint of vgg16), or set "
                "task.loss_weights.perceptual and .style to 0",
            )
        from esszoo.checkpoint import load

        vgg = load(path).net
        return VGGFeatures(vgg).eval().requires_grad_(False)

    # -- data ------------------------------------------------------------------------------

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        """A model without a mask argument gets the mask as extra input channels."""
        channels = len(data.inputs)
        return {"in_channels": channels if takes_mask else 2 * channels, "out_channels": channels}

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        mean, std = channel_stats(data.train.y)
        if self.spec.anomalies:
            # the training split's mean at each grid point (the channel mean where a point is
            # never observed): the network then sees and fills anomalies, as climate records
            # are kept (Kadow et al. reconstruct HadCRUT4 anomalies)
            field = torch.nanmean(data.train.y, dim=0)
            mean = torch.where(torch.isfinite(field), field, mean.view(-1, 1, 1))
            _, std = channel_stats(data.train.y - mean)
        self.stats = {"input_mean": mean, "input_std": std, "output_mean": mean, "output_std": std}
        predictor = self.predictor()
        tensors = {}
        for split, table in data.tables.items():
            known = torch.isfinite(table.y).float()
            tensors[split] = {
                "x": predictor.normalize(table.x),
                "mask": table.mask,
                "y": predictor.normalize(table.y),
                "known": known,
            }
        return tensors

    def predictor(self) -> Predictor:
        return Predictor(
            self.net, **self.stats, fill_missing=True, mask_channels=not self.mask_argument
        )

    # -- training --------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mask_argument:
            return self.net(x, mask)
        return self.net(torch.cat([x, mask.expand_as(x)], dim=1))

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self._forward(batch["x"], batch["mask"]).float()
        known, mask, truth = batch["known"], batch["mask"].expand_as(batch["y"]), batch["y"]
        count = known.sum().clamp(min=1.0)
        error = (out - truth).abs() * known
        loss = self.weights["valid"] * (error * mask).sum() / count
        loss = loss + self.weights["hole"] * (error * (1 - mask)).sum() / count
        composed = mask * truth + (1 - mask) * out
        if self.weights["tv"]:
            loss = loss + self.weights["tv"] * total_variation(composed, mask, known)
        if self.features is not None:
            loss = loss + self._feature_losses(out, composed, truth)
        return loss

    def _feature_losses(
        self, out: torch.Tensor, composed: torch.Tensor, truth: torch.Tensor
    ) -> torch.Tensor:
        """Liu et al. Eq. 3-5: L1 between VGG-16 pool1-3 features, and between their Gram
        matrices, of I_out and I_comp against I_gt."""
        target = self.features(truth)
        loss = out.new_zeros(())
        for image in (out, composed):
            for feature, reference in zip(self.features(image), target, strict=True):
                loss = loss + self.weights["perceptual"] * (feature - reference).abs().mean()
                loss = loss + self.weights["style"] * (gram(feature) - gram(reference)).abs().mean()
        return loss

    # -- evaluation ------------------------------------------------------------------------

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        months = calendar_months(data.train.coords.get(data.split.dim))
        monthly = months is not None and len(set(months.tolist())) > 1
        climatology = "climatology (calendar month)" if monthly else "climatology (training mean)"
        return {
            climatology: infilling.climatology(data, data.split.dim),
            "nearest interpolation": infilling.interpolation(data, "nearest"),
            "linear interpolation": infilling.interpolation(data, "linear"),
            "iterative EOF (DINEOF)": infilling.dineof(data, data.split.dim),
        }

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        """Scores on the hidden points, and the error of the completed field's area mean."""
        observed = table.mask.expand_as(truth) > 0
        known = torch.isfinite(truth)
        hidden = known & ~observed
        row = {
            "rmse": metrics.rmse(prediction[hidden], truth[hidden]),
            "mae": metrics.mae(prediction[hidden], truth[hidden]),
            "bias": metrics.bias(prediction[hidden], truth[hidden]),
            "corr": metrics.correlation(prediction[hidden], truth[hidden]),
        }
        weights = torch.from_numpy(data.grid.area_weights()).expand_as(truth) * known
        composed = torch.where(observed, truth, prediction).nan_to_num()
        area = lambda field: (field * weights).sum((1, 2, 3)) / weights.sum((1, 2, 3))  # noqa: E731
        row["area_mean_err"] = float((area(composed) - area(truth.nan_to_num())).abs().mean())
        row["hidden_frac"] = float(hidden.sum() / known.sum())
        return row

    def scored_truth(self, table: Table) -> torch.Tensor:
        """The truth at the hidden points only: what a reconstruction is judged on."""
        return torch.where(table.mask.expand_as(table.y) > 0, torch.nan, table.y)

    def plot_spread(
        self, ensemble: torch.Tensor, table: Table, data: SplitData, run_dir: Path
    ) -> None:
        """Is the spread larger where the holes are larger? The draws' spread and the error
        of their mean at the hidden points, by distance to the nearest observed point
        (spread_by_distance.csv), and the map of the case with most hidden (spread.png)."""
        from esszoo import plots
        from esszoo.run import write_csv

        truth = self.scored_truth(table)
        mean, spread = ensemble.mean(0), ensemble.std(0)
        distance = torch.from_numpy(observation_distance(table.mask[:, 0].numpy()))
        distance = distance[:, None].expand_as(truth)
        hidden = torch.isfinite(truth) & torch.isfinite(spread)
        rows = []
        for low, high in DISTANCE_BINS:
            chosen = hidden & (distance >= low) & (distance < high)
            if chosen.any():
                error = (mean[chosen] - truth[chosen]).double()
                rmse = error.square().mean().sqrt().item()
                size = spread[chosen].double().square().mean().sqrt().item()
                rows.append(
                    {
                        "distance": f"{low:g}-{high:g}" if high < math.inf else f">={low:g}",
                        "points": int(chosen.sum()),
                        "spread": size,
                        "rmse_of_mean": rmse,
                        "spread_skill": size / rmse if rmse > 0 else math.nan,
                    }
                )
        write_csv(rows, run_dir / "spread_by_distance.csv")
        k = int(hidden[:, 0].flatten(1).sum(1).argmax())
        observed = torch.where(table.mask[k, 0] > 0, table.y[k, 0], torch.nan)
        unscored = lambda t: torch.where(hidden[k, 0], t[k, 0], torch.nan).numpy()  # noqa: E731
        plots.spread_panels(
            observed.numpy(),
            unscored(mean - truth),
            unscored(spread),
            unscored(distance),
            data,
            run_dir / "spread.png",
            plots._date(table.coords.get(data.split.dim), k),
            data.targets[0].units,
        )

    def plot(
        self,
        predictions: dict[str, torch.Tensor],
        truth: torch.Tensor,
        data: SplitData,
        path: Path,
        table: Any = None,
    ) -> None:
        from esszoo.plots import reconstruction_panels

        reconstruction_panels(predictions, truth, data.test, data, path)

    @classmethod
    def exported(cls, predictor: nn.Module) -> nn.Module:
        """For codes outside Python: the field with its missing values (NaN) in, the field
        filled out (observed values kept), so a caller needs no mask of its own."""
        return FilledField(predictor)

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """Fill the gaps of every field; keep observed values and the domain.

        A point missing in every field of the file lies outside the domain (land, for SST)
        and stays missing; a point missing in some fields is a gap and is filled. A flag
        variable says which values were filled.
        """
        (array,) = inputs
        if sample_dim not in array.dims or array.ndim != 3:
            raise DataError(
                f"the model fills 2-D fields along '{sample_dim}', but '{array.name}' has "
                f"dimensions {array.dims}",
                f"give fields with dimensions ({sample_dim}, lat, lon)",
            )
        grid = [d for d in array.dims if d != sample_dim]
        array = array.transpose(sample_dim, *grid)
        values = load_values(array).astype(np.float32)[:, None]  # (N, 1, H, W)
        observed = np.isfinite(values)
        domain = observed.any(axis=0, keepdims=True)
        prediction = predict_in_batches(
            predictor, torch.from_numpy(values), torch.from_numpy(observed.astype(np.float32))
        ).numpy()
        filled = np.where(observed, values, np.where(domain, prediction, np.nan))[:, 0]
        flag = (~observed & domain)[:, 0].astype(np.int8)
        name = str(array.name)
        attrs = dict(array.attrs) | {
            "comment": f"gaps filled by esszoo model '{description['model']['name']}'; "
            f"see {name}_filled",
        }
        return xr.Dataset(
            {
                name: (array.dims, filled, attrs),
                f"{name}_filled": (
                    array.dims,
                    flag,
                    {
                        "long_name": f"whether {name} was filled by the model",
                        "flag_values": np.array([0, 1], dtype=np.int8),
                        "flag_meanings": "observed filled",
                    },
                ),
            },
            coords=dict(array.coords.items()),
        )


class FilledField(nn.Module):
    """A mask-taking predictor as a function of the field alone: NaN marks what is
    missing, and the output keeps every observed value and fills every missing one (points
    outside the training domain, such as land, come back filled too)."""

    def __init__(self, predictor: nn.Module):
        super().__init__()
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        observed = torch.isfinite(x)
        filled = self.predictor(x, observed.to(x.dtype))
        return torch.where(observed, x, filled)


def total_variation(
    composed: torch.Tensor, mask: torch.Tensor, known: torch.Tensor
) -> torch.Tensor:
    """Liu et al. Eq. 6: total variation of I_comp on the holes dilated by one point."""
    hole = ((1 - mask) * known).amax(1, keepdim=True)
    region = F.max_pool2d(hole, 3, stride=1, padding=1)
    across = region[..., :, 1:] * region[..., :, :-1]  # both neighbours in the region
    along = region[..., 1:, :] * region[..., :-1, :]
    dx = (composed[..., :, 1:] - composed[..., :, :-1]).abs() * across
    dy = (composed[..., 1:, :] - composed[..., :-1, :]).abs() * along
    return (dx.sum() + dy.sum()) / known.sum().clamp(min=1.0)


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (B, C, H, W) features, normalized by C*H*W (Liu et al. Eq. 4)."""
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


class VGGFeatures(nn.Module):
    """The pool1, pool2 and pool3 outputs of a zoo VGG-16 (Liu et al. Section 3.3)."""

    def __init__(self, vgg: nn.Module):
        super().__init__()
        layers = list(vgg.features)
        pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)][:3]
        self.stages = nn.ModuleList(
            nn.Sequential(*layers[start + 1 if k else 0 : stop + 1])
            for k, (start, stop) in enumerate(zip([-1, *pools[:-1]], pools, strict=True))
        )
        self.in_channels = layers[0].in_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # fields of one variable go in as the grey image the network expects
        if x.shape[1] != self.in_channels:
            x = x.mean(1, keepdim=True).expand(-1, self.in_channels, -1, -1)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
