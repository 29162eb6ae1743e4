"""Detection: fields -> a set of objects, each a class and a box, as DETR predicts them.

Batch contract: ``{"x": (B, C, H, W), "y": (B, M, 5)}``; inputs normalized per channel with
the training split's statistics, missing inputs set to 0; each target row is an object
(class, cx, cy, w, h) in the normalized boxes of `esszoo.boxes`, rows of class -1 pad a
sample's objects to M. A model returns (B, N, K + 1 + 4): logits of the K classes and of
"no object", then a box (`esszoo.models.detection.detr.split_predictions`); in training
DETR returns as well the predictions of its earlier decoder layers, each given the loss.

The loss is the Hungarian loss of Carion et al. (2020, section 3.1):

- Matching (eq. 1): the one-to-one assignment of predictions to the true objects of an
  image of least total cost, found by scipy's ``linear_sum_assignment`` (the Hungarian
  algorithm, Kuhn 1955). The cost of prediction i for object j is
  -class_weight * p_i(c_j) + l1_weight * |b_i - b_j|_1 + giou_weight * -GIoU(b_i, b_j),
  with the weights 1, 5 and 2 of the paper's section 4 (and the official code).
- Loss (eq. 2): cross-entropy of every prediction's class against its matched object's
  class, or "no object" for the unmatched, that class weighted by ``no_object_weight`` (0.1,
  "to account for class imbalance"); for matched predictions, l1_weight times the L1
  distance of the boxes and giou_weight times 1 - GIoU (eq. 3, Rezatofighi et al. 2019),
  summed and divided by the objects of the batch. The same at every decoder layer's
  predictions (auxiliary decoding losses, section 3.2).

Under DDP each process divides its box terms by the objects of its own batch; the official
code divides by their mean over the processes (a difference in the weighting of batches,
not in the loss's minimum).

On a global grid (`esszoo.data.grid.Grid.wraps`) a box may cross the side edges: the cost,
the loss and the scores compare each true box in its copy (a whole turn east or west) that
lies nearest the prediction (`esszoo.boxes.nearest_copy`).

Scores: mean average precision by the COCO evaluation of pycocotools, not written again
(`esszoo.metrics.coco_average_precision`): ``map`` over IoU 0.5:0.95 (COCO's), ``map_50``
and ``map_75``, ``mar_100`` (recall with at most 100 detections); and ``count_mae``, the
mean absolute error of the number of objects found with a score of at least
``min_score``. Each prediction's score is its most likely class's probability (DETR's
evaluation keeps all N). Baseline that needs no learning: persistence, the objects that
the data's own rule finds in the last input frame, each with score 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from pydantic import Field
from scipy.optimize import linear_sum_assignment
from torch import nn

from esszoo.boxes import nearest_copy, pairwise_giou, to_corners
from esszoo.data.dataset import SplitData, Table
from esszoo.data.grid import Grid
from esszoo.data.objects import RULES, padded
from esszoo.data.windows import lead_times, window_inputs
from esszoo.errors import DataError, ModelError
from esszoo.metrics import coco_average_precision
from esszoo.models.detection.detr import split_predictions
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, predict_in_batches
from esszoo.registry import list_models, model_card
from esszoo.tasks import register_task
from esszoo.tasks.base import Task
from esszoo.tasks.moments import channel_stats

SURE = 10.0  # the logit margin of a baseline's objects: probability 0.99995


class DetectionOptions(TaskOptions):
    name: str = "detection"
    class_weight: float = Field(default=1.0, ge=0, description="class term of cost and loss")
    l1_weight: float = Field(default=5.0, ge=0, description="L1 box term of cost and loss")
    giou_weight: float = Field(default=2.0, ge=0, description="generalized IoU term")
    no_object_weight: float = Field(
        default=0.1, ge=0, description="weight of the no-object class in the cross-entropy"
    )
    min_score: float = Field(
        default=0.5, ge=0, le=1, description="score from which an object counts as found"
    )


@register_task
class DetectionTask(Task):
    """Train `net` to find the objects of a field as a set of boxes."""

    name = "detection"
    Options = DetectionOptions
    data_kinds = ("object_windows",)
    headline = ("map", "higher")
    plot_file = "detections.png"

    def __init__(self, net: nn.Module, spec: DetectionOptions, trainer: TrainerOptions):
        spec_of_net = getattr(net, "esszoo_spec", None)
        if spec_of_net and "detection" not in model_card(spec_of_net["name"]).tasks:
            raise ModelError(
                f"model '{spec_of_net['name']}' does not detect objects: it gives no set of "
                "classes and boxes",
                f"use a detector ({', '.join(list_models(task='detection'))}; "
                "`esszoo models` lists them)",
            )
        super().__init__(net, spec, trainer)
        self.register_buffer("class_weights", None)
        self.wraps = False

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        return {"in_channels": data.train.x.shape[1], "num_classes": len(data.classes)}

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        mean, std = channel_stats(data.train.x)
        self.stats = {"input_mean": mean, "input_std": std}
        self.wraps = data.grid is not None and data.grid.wraps
        weights = torch.ones(len(data.classes) + 1)
        weights[-1] = self.spec.no_object_weight
        self.class_weights = weights
        predictor = self.predictor()
        return {
            split: {"x": predictor.normalize(t.x), "y": t.y} for split, t in data.tables.items()
        }

    def predictor(self) -> Predictor:
        return Predictor(self.net, **self.stats, fill_missing=True)

    # -- the Hungarian loss ------------------------------------------------------------------

    def match(
        self, logits: torch.Tensor, boxes: torch.Tensor, targets: torch.Tensor
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Eq. 1: for each image, the predictions and the objects (row indices) paired by
        the assignment of least cost."""
        spec = self.spec
        probability = logits.softmax(-1)
        pairs = []
        for b in range(len(targets)):
            objects = targets[b][targets[b, :, 0] >= 0]  # (M_b, 5)
            if not len(objects):
                pairs.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            true = self._paired(objects[:, 1:][None], boxes[b][:, None])  # (N, M_b, 4)
            cost = (
                -spec.class_weight * probability[b][:, objects[:, 0].long()]
                + spec.l1_weight * (boxes[b][:, None] - true).abs().sum(-1)
                - spec.giou_weight * pairwise_giou(boxes[b], true)
            )
            rows, columns = linear_sum_assignment(cost.double().cpu().numpy())
            pairs.append((rows, columns))
        return pairs

    def _paired(self, true: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """True boxes as the predictions see them: on a global grid, their nearest copies."""
        if self.wraps:
            return nearest_copy(true, predicted)
        return true.expand(*torch.broadcast_shapes(true.shape[:-1], predicted.shape[:-1]), 4)

    def set_loss(self, packed: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Eq. 2 for one decoder layer's predictions (B, N, K + 1 + 4)."""
        logits, boxes = split_predictions(packed.float())
        with torch.no_grad():
            pairs = self.match(logits, boxes, targets)
        batch = torch.cat([torch.full((len(p),), b) for b, (p, _) in enumerate(pairs)]).long()
        predicted = torch.from_numpy(np.concatenate([p for p, _ in pairs])).long()
        matched = torch.from_numpy(np.concatenate([t for _, t in pairs])).long()
        classes = torch.full(logits.shape[:2], logits.shape[-1] - 1, device=logits.device)
        classes[batch, predicted] = targets[batch, matched, 0].long()
        loss = self.spec.class_weight * F.cross_entropy(
            logits.transpose(1, 2), classes, weight=self.class_weights
        )
        if len(matched):
            mine = boxes[batch, predicted]  # (matched, 4)
            true = self._paired(targets[batch, matched, 1:], mine)
            count = len(matched)
            giou = pairwise_giou(mine, true[:, None]).squeeze(1)  # each pair's own
            loss = loss + self.spec.l1_weight * (mine - true).abs().sum() / count
            loss = loss + self.spec.giou_weight * (1 - giou).sum() / count
        return loss

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = self.net(batch["x"])  # in training: (last layer, *earlier layers)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return sum(self.set_loss(output, batch["y"]) for output in outputs)

    # -- baselines and scores ----------------------------------------------------------------

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        rule = next((r for r in RULES.values() if r.classes == data.classes), None)
        if rule is None or rule.variable != data.inputs[0].standard_name:
            return {}
        wraps = data.grid is not None and data.grid.wraps
        count = len(data.classes)

        def persistence(table: Table) -> torch.Tensor:
            found = padded([rule.boxes(frame, wraps) for frame in table.x[:, -1].numpy()])
            return as_predictions(found, count)

        return {"persistence of the last frame's objects": persistence}

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        wraps = data.grid is not None and data.grid.wraps
        height, width = (data.test if table is None else table).x.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        scores, labels, boxes = detections(prediction)
        detected, true, found, true_counts = [], [], [], []
        for k in range(len(truth)):
            objects = truth[k][truth[k, :, 0] >= 0]
            mine, theirs = boxes[k], objects[:, 1:]
            if wraps:
                mine, theirs = apart_at_the_edge(mine, theirs)
            detected.append((to_corners(mine) * scale, scores[k], labels[k]))
            true.append((to_corners(theirs) * scale, objects[:, 0].long()))
            found.append(int((scores[k] >= self.spec.min_score).sum()))
            true_counts.append(len(objects))
        return coco_average_precision(detected, true) | {
            "count_mae": float(np.abs(np.subtract(found, true_counts)).mean()),
            "objects": float(np.mean(true_counts)),
        }

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        from esszoo.plots import box_overlays

        shown = {name: detections(p) for name, p in predictions.items()}
        box_overlays(shown, truth, data, path, self.spec.min_score)

    # -- new data ----------------------------------------------------------------------------

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """After every window of past frames, the objects of the frame `lead_time` later:
        every query's class, score and box, most likely first: in grid cells (the column
        and row of each edge, counted from the first point's edge in the grid's order;
        past the last column where the box crosses the side edge of a global grid) and in
        latitude and longitude, ``west`` greater than ``east`` where a box crosses the
        dateline (as GeoJSON's bounding boxes)."""
        (array,) = inputs
        if sample_dim is None:
            raise DataError("detection needs fields along a time dimension")
        window = description["recipe"]["data"]["window"]
        classes = description["classes"]
        grid_dims = tuple(d for d in array.dims if d != sample_dim)
        grid = Grid.of(array, grid_dims)
        x, times = window_inputs(array, sample_dim, window["past"], False)
        scores, labels, boxes = detections(predict_in_batches(predictor, x))
        order = scores.argsort(dim=1, descending=True)
        scores, labels = scores.gather(1, order), labels.gather(1, order)
        boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        height, width = x.shape[-2:]
        corners = to_corners(boxes) * torch.tensor([width, height, width, height])
        place = box_places(boxes, grid, (height, width))
        lead, lead_attrs = lead_times(array[sample_dim].values, window["future"])
        dims = (sample_dim, "object")
        cell = "grid cells from the first column's west edge, in the grid's order"
        variables = {
            "score": (
                dims,
                scores.numpy(),
                {"units": "1", "long_name": "probability of the class"},
            ),
            "object_class": (
                dims,
                labels.numpy().astype(np.int8),
                {
                    "flag_values": np.arange(len(classes), dtype=np.int8),
                    "flag_meanings": " ".join(classes),
                },
            ),
            "column_start": (dims, corners[..., 0].numpy(), {"units": "1", "long_name": cell}),
            "column_end": (dims, corners[..., 2].numpy(), {"units": "1", "long_name": cell}),
            "row_start": (dims, corners[..., 1].numpy(), {"units": "1", "long_name": "rows"}),
            "row_end": (dims, corners[..., 3].numpy(), {"units": "1", "long_name": "rows"}),
        }
        for name, (values, attrs) in place.items():
            variables[name] = (dims, values, attrs)
        model = description["model"]["name"]
        dataset = xr.Dataset(
            variables,
            coords={
                sample_dim: (sample_dim, times, {"long_name": "time of the last input frame"}),
                "object": ("object", np.arange(scores.shape[1])),
                "lead_time": ((), lead[-1], lead_attrs),
            },
            attrs={"esszoo_detections": f"every query of {model}, most likely first"},
        )
        return dataset


def as_predictions(objects: torch.Tensor, count: int) -> torch.Tensor:
    """Objects (N, M, 5) as a detector's output (N, M, K + 1 + 4), each sure of its class;
    padding rows sure of "no object"."""
    logits = torch.zeros(*objects.shape[:2], count + 1)
    classes = objects[..., 0].long()
    classes = torch.where(classes >= 0, classes, count)  # padding: no object
    logits.scatter_(-1, classes[..., None], SURE)
    return torch.cat([logits, objects[..., 1:]], dim=-1)


def detections(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A detector's output (N, Q, K + 1 + 4) as each query's score and class (the likeliest
    of the K, "no object" aside) and box: (N, Q), (N, Q), (N, Q, 4)."""
    logits, boxes = split_predictions(packed.float())
    scores, labels = logits.softmax(-1)[..., :-1].max(-1)
    return scores, labels, boxes


def apart_at_the_edge(
    mine: torch.Tensor, theirs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of one image on a global grid, turned (a shift in x, modulo 1) so that the
    grid's edge falls in the widest gap between the true boxes: then no true box crosses
    it and a box-by-box IoU (COCO's) sees them whole; predictions keep their centres in
    [0, 1) and are compared whole too, unless they reach across the gap."""
    if not len(theirs):
        return mine, theirs
    corners = to_corners(theirs)
    starts, ends = corners[:, 0] % 1.0, (corners[:, 0] % 1.0) + theirs[:, 2]
    order = starts.argsort()
    starts, ends = starts[order], ends[order]
    reach = torch.cummax(ends, 0).values  # the furthest east any box so far reaches
    gaps = torch.cat([starts[1:] - reach[:-1], (starts[:1] + 1.0) - reach[-1:]])
    widest = int(gaps.argmax())
    cut = float(reach[widest] + gaps[widest] / 2) % 1.0  # mid-gap

    def turned(boxes: torch.Tensor) -> torch.Tensor:
        return torch.cat([((boxes[:, :1] - cut) % 1.0), boxes[:, 1:]], dim=1)

    return turned(mine), turned(theirs)


def box_places(
    boxes: torch.Tensor, grid: Grid, shape: tuple[int, int]
) -> dict[str, tuple[np.ndarray, dict[str, str]]]:
    """Latitude and longitude of boxes (N, Q, 4) on `grid`: the centre's point, the
    latitudes of the box's first and last rows and the longitudes of its first and last
    columns (at the centre's column and row), where the grid knows them."""
    if grid.latitude is None or grid.longitude is None:
        return {}
    height, width = shape
    corners = to_corners(boxes)
    first_row = (corners[..., 1] * height).floor().clamp(0, height - 1).long().numpy()
    last_row = ((corners[..., 3] * height).ceil() - 1).clamp(0, height - 1).long().numpy()
    first_column = (corners[..., 0] * width).floor().long().numpy() % width
    last_column = ((corners[..., 2] * width).ceil().long().numpy() - 1) % width
    centre_row = (boxes[..., 1] * height).floor().clamp(0, height - 1).long().numpy()
    centre_column = (boxes[..., 0] * width).floor().long().numpy() % width
    lat, lon = grid.latitude, grid.longitude
    # rows of a box: the extremes of latitude over its rows at its centre column
    south = np.minimum(lat[first_row, centre_column], lat[last_row, centre_column])
    north = np.maximum(lat[first_row, centre_column], lat[last_row, centre_column])
    degrees_north = {"units": "degrees_north"}
    degrees_east = {"units": "degrees_east"}
    return {
        "latitude": (lat[centre_row, centre_column], degrees_north | {"long_name": "centre"}),
        "longitude": (lon[centre_row, centre_column], degrees_east | {"long_name": "centre"}),
        "south": (south, degrees_north | {"long_name": "southernmost point of the box"}),
        "north": (north, degrees_north | {"long_name": "northernmost point of the box"}),
        "west": (
            lon[centre_row, first_column],
            degrees_east
            | {"long_name": "westmost column of the box (greater than east: across the dateline)"},
        ),
        "east": (lon[centre_row, last_column], degrees_east | {"long_name": "eastmost column"}),
    }
