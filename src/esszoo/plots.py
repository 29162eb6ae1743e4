"""Plots written with every run: loss curves and predictions against truth (PNG)."""

from __future__ import annotations

from pathlib import Path

import torch

from esszoo.fileio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")


def loss_curves(history: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Training and validation loss by epoch, on a log scale."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        if points:
            epochs, values = zip(*points, strict=True)
            axis.plot(epochs, values, marker="o", markersize=3, label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (normalized units)")
    axis.set_yscale("log")
    axis.set_title(title or "loss")
    axis.grid(alpha=0.3)
    axis.legend()
    _save(figure, path)
    plt.close(figure)


def scatter_panels(
    predictions: dict[str, torch.Tensor], truth: torch.Tensor, *, label: str, path: Path
) -> None:
    """One panel per predictor: prediction against truth, with the 1:1 line."""
    plt = _pyplot()
    count = len(predictions)
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2), squeeze=False)
    truth = truth.double().numpy()
    low, high = float(truth.min()), float(truth.max())
    for axis, (name, prediction) in zip(axes[0], predictions.items(), strict=True):
        values = prediction.double().numpy()
        axis.hexbin(truth, values, gridsize=60, bins="log", mincnt=1, cmap="viridis")
        axis.plot([low, high], [low, high], color="black", linewidth=0.8)
        rmse = float(((values - truth) ** 2).mean() ** 0.5)
        axis.set_title(f"{name}\nRMSE {rmse:.4g}")
        axis.set_xlabel(f"truth: {label}")
        axis.set_ylabel("prediction")
    _save(figure, path)
    plt.close(figure)


def confusion_panels(
    matrices: dict[str, torch.Tensor], classes: tuple[str, ...], path: Path
) -> None:
    """One confusion matrix per predictor: rows the true class, columns the predicted one."""
    plt = _pyplot()
    count = len(matrices)
    size = max(3.5, 0.45 * len(classes) + 2)
    figure, axes = plt.subplots(
        1, count, figsize=(size * count, size), squeeze=False, constrained_layout=True
    )
    for axis, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        values = matrix.double()
        recall = values / values.sum(1, keepdim=True).clamp(min=1)
        axis.imshow(recall.numpy(), cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                axis.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if recall[i, j] > 0.5 else "black",
                )
        accuracy = float(values.diag().sum() / values.sum().clamp(min=1))
        axis.set_title(f"{name}\naccuracy {accuracy:.3f}")
        axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        axis.set_yticks(range(len(classes)), classes)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
    _save(figure, path)
    plt.close(figure)


def reconstruction_panels(
    predictions: dict[str, torch.Tensor],
    truth: torch.Tensor,
    table,
    data,
    path: Path,
    cases: int = 2,
) -> None:
    """For a few test cases: the observed field with its gaps, the truth, each predictor's
    completed field (observed values kept, gaps filled) and its error, one row each."""
    import numpy as np

    plt = _pyplot()
    lat, lon = data.grid.lat_axis, data.grid.lon_axis
    picks = np.linspace(0, len(truth) - 1, cases).astype(int)
    names = list(predictions)
    rows_per_case = 2 + 2 * len(names)
    aspect = truth.shape[-1] / max(truth.shape[-2], 1)
    width = 12.0
    height = max(width / aspect, 0.9) * rows_per_case * cases + 0.6 * cases
    figure, axes = plt.subplots(
        rows_per_case * cases, 1, figsize=(width, height), squeeze=False, constrained_layout=True
    )
    variable = data.targets[0]
    regular = lat is not None and lon is not None
    extent = (float(lon[0]), float(lon[-1]), float(lat[0]), float(lat[-1])) if regular else None
    for case, k in enumerate(picks):
        observed = table.mask[k, 0].numpy() > 0
        true_field = truth[k, 0].double().numpy()
        low, high = np.nanpercentile(true_field, [1, 99])
        panels = [
            ("observed, with gaps", np.where(observed, true_field, np.nan), "field"),
            ("truth", true_field, "field"),
        ]
        for name in names:
            filled = np.where(observed, true_field, predictions[name][k, 0].double().numpy())
            filled = np.where(np.isfinite(true_field), filled, np.nan)
            panels.append((f"{name}: reconstruction", filled, "field"))
            panels.append((f"{name}: error", filled - true_field, "error"))
        spread = max(np.nanmax(np.abs(p[1])) for p in panels if p[2] == "error")
        for row, (title, values, kind) in enumerate(panels):
            axis = axes[case * rows_per_case + row, 0]
            style = (
                dict(cmap="RdBu_r", vmin=-spread, vmax=spread)
                if kind == "error"
                else dict(cmap="viridis", vmin=low, vmax=high)
            )
            image = axis.imshow(values, origin="lower", extent=extent, aspect="auto", **style)
            when = table.coords.get(data.split.dim)
            label = f" ({str(when[k])[:10]})" if when is not None else ""
            axis.set_title(f"{title}{label}", fontsize=8, loc="left")
            axis.tick_params(labelsize=6)
            figure.colorbar(image, ax=axis, fraction=0.02, pad=0.01).ax.tick_params(labelsize=6)
    figure.suptitle(f"{variable.name} ({variable.units}): test cases", fontsize=10)
    _save(figure, path)
    plt.close(figure)


def _last_frame(tensor: torch.Tensor, k: int):
    """Sample k's last target frame (fields: last channel; volumes: last level)."""
    field = tensor[k]
    while field.dim() > 2:
        field = field[-1]
    return field.double().numpy()


def busiest_cases(truth: torch.Tensor, cases: int) -> list[int]:
    """The test cases with the most going on (largest spread of the truth; for class maps,
    most points outside the commonest class), in their order: a dry radar scene or a
    calm day shows nothing of what a model can do."""
    flat = truth.reshape(len(truth), -1)
    if truth.dtype.is_floating_point:
        score = torch.stack([row[torch.isfinite(row)].double().std() for row in flat]).nan_to_num()
    else:
        commonest = flat[flat >= 0].mode().values
        score = ((flat >= 0) & (flat != commonest)).sum(1).double()
    return sorted(score.argsort(descending=True)[:cases].tolist())


def field_panels(
    predictions: dict[str, torch.Tensor], truth: torch.Tensor, data, path: Path, cases: int = 2
) -> None:
    """For a few test cases: the truth and every predictor's field (the last target frame
    of windows), blank where the truth is unknown. Wide fields (a latitude band) are
    stacked one under another, others side by side."""
    import numpy as np

    plt = _pyplot()
    picks = busiest_cases(truth, cases)
    cases = len(picks)
    count = 1 + len(predictions)
    height, width = _last_frame(truth, 0).shape
    stacked = width > 3 * height
    rows, columns = (cases * count, 1) if stacked else (cases, count)
    size = (10, 1.2 + 10 * height / width) if stacked else (3.2, 3.0)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(size[0] * columns, size[1] * rows),
        squeeze=False,
        constrained_layout=True,
    )
    axes = axes.reshape(cases, count)
    variable = data.targets[0]
    for row, k in enumerate(picks):
        true_field = _last_frame(truth, k)
        unknown = ~np.isfinite(true_field)
        low, high = np.nanpercentile(true_field, [1, 99.5])
        panels = [("truth", true_field)] + [
            (name, np.where(unknown, np.nan, _last_frame(p, k))) for name, p in predictions.items()
        ]
        for column, (title, values) in enumerate(panels):
            axis = axes[row, column]
            image = axis.imshow(values, origin="lower", cmap="viridis", vmin=low, vmax=high)
            axis.set_title(title, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
            if stacked:
                figure.colorbar(image, ax=axis, fraction=0.02)
        if not stacked:
            figure.colorbar(image, ax=axes[row, -1], fraction=0.05)
    frame = ", last target frame" if getattr(data, "window", None) else ""
    figure.suptitle(f"{variable.name} ({variable.units}){frame}", fontsize=10)
    _save(figure, path)
    plt.close(figure)


def class_map_panels(
    predictions: dict[str, torch.Tensor], truth: torch.Tensor, data, path: Path, cases: int = 2
) -> None:
    """For a few test cases: the true class map and every predictor's."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    plt = _pyplot()
    count = len(data.classes)
    colours = ListedColormap(
        ["#f0f0f0", "#9ecae1", "#3182bd", "#de2d26", "#31a354", "#756bb1", "#fd8d3c"][:count]
    )
    picks = busiest_cases(truth, cases)
    cases = len(picks)
    columns = 1 + len(predictions)
    figure, axes = plt.subplots(
        cases, columns, figsize=(3.2 * columns, 3.0 * cases), squeeze=False, constrained_layout=True
    )
    for row, k in enumerate(picks):
        maps = [("truth", truth[k].numpy())] + [
            (name, p[k].argmax(0).numpy()) for name, p in predictions.items()
        ]
        for column, (title, values) in enumerate(maps):
            axis = axes[row, column]
            shown = np.ma.masked_less(values, 0)
            image = axis.imshow(shown, origin="lower", cmap=colours, vmin=-0.5, vmax=count - 0.5)
            axis.set_title(title, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    bar = figure.colorbar(image, ax=axes[:, -1], ticks=range(count), fraction=0.05)
    bar.ax.set_yticklabels(data.classes)
    _save(figure, path)
    plt.close(figure)
