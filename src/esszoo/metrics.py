"""Scores for Earth system predictions, computed over all given points.

Each function takes a prediction and the truth (torch tensors of one shape, physical
units) and returns a float. Gridded scores that weight by latitude arrive with the
gridded tasks.
"""

from __future__ import annotations

import torch


def rmse(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Root-mean-square error."""
    return float(((prediction.double() - truth.double()) ** 2).mean().sqrt())


def mae(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean absolute error."""
    return float((prediction.double() - truth.double()).abs().mean())


def bias(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean error, prediction minus truth."""
    return float((prediction.double() - truth.double()).mean())


def relative_error(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Relative L2 error, ||prediction - truth|| / ||truth||."""
    error = torch.linalg.vector_norm(prediction.double() - truth.double())
    return float(error / torch.linalg.vector_norm(truth.double()).clamp(min=1e-300))


def r2(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Coefficient of determination, 1 - SSE / SST."""
    truth = truth.double()
    residual = ((prediction.double() - truth) ** 2).sum()
    total = ((truth - truth.mean()) ** 2).sum().clamp(min=1e-300)
    return float(1.0 - residual / total)


def correlation(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Pearson correlation."""
    stacked = torch.stack([prediction.double().flatten(), truth.double().flatten()])
    return float(torch.corrcoef(stacked)[0, 1])


def negative_fraction(prediction: torch.Tensor) -> float:
    """Fraction of values below zero: violations of positivity for a non-negative quantity."""
    return float((prediction < 0).double().mean())


def coco_average_precision(
    detected: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    true: list[tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, float]:
    """Mean average precision and recall of detections by the COCO evaluation (pycocotools'
    COCOeval, the reference implementation; torchmetrics' MeanAveragePrecision wraps it but
    needs torchvision). Per image: `detected` (boxes (Q, 4) as (x0, y0, x1, y1) in grid
    cells, scores (Q,), classes (Q,)) and `true` (boxes (M, 4), classes (M,)). Returns
    ``map`` (IoU 0.5:0.95), ``map_50``, ``map_75`` and ``mar_100`` (recall with at most 100
    detections per image); -1 where nothing can be scored (no true object)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(boxes: torch.Tensor) -> list[list[float]]:
        corners = boxes.double()
        return torch.cat([corners[:, :2], corners[:, 2:] - corners[:, :2]], 1).tolist()

    classes = sorted({int(c) for _, labels in true for c in labels} | {0})
    images, annotations, results = [], [], []
    for image, ((boxes, labels), (found, scores, kinds)) in enumerate(
        zip(true, detected, strict=True)
    ):
        images.append({"id": image})
        for box, label in zip(xywh(boxes), labels.tolist(), strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image,
                    "category_id": int(label),
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(xywh(found), scores.tolist(), kinds.tolist(), strict=True):
            results.append(
                {"image_id": image, "category_id": int(label), "bbox": box, "score": score}
            )
    if not annotations:
        return {"map": -1.0, "map_50": -1.0, "map_75": -1.0, "mar_100": -1.0}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval reports as it goes
        reference = COCO()
        reference.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c} for c in classes],
        }
        reference.createIndex()
        evaluation = COCOeval(reference, reference.loadRes(results) if results else COCO(), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    return {
        "map": float(stats[0]),
        "map_50": float(stats[1]),
        "map_75": float(stats[2]),
        "mar_100": float(stats[8]),
    }
