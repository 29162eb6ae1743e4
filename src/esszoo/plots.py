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


# the curves a run's loss figure draws: its losses, and a GAN's two players
CURVES = (
    ("train_loss", "training"),
    ("val_loss", "validation"),
    ("g_loss", "generator"),
    ("d_loss", "discriminator"),
)


def loss_curves(history: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Training and validation loss by epoch (and a GAN's players'), on a log scale where
    every loss is positive."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    positive = True
    for key, label in CURVES:
        points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        if points:
            epochs, values = zip(*points, strict=True)
            axis.plot(epochs, values, marker="o", markersize=3, label=label)
            positive = positive and min(values) > 0
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (normalized units)")
    axis.set_yscale("log" if positive else "linear")
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


def case_paths(path: Path, count: int) -> list[Path]:
    """One file per test case: PATH for the first, PATH_2, PATH_3, ... for the others."""
    return [
        path if k == 0 else path.with_name(f"{path.stem}_{k + 1}{path.suffix}")
        for k in range(count)
    ]


def _date(times, k: int) -> str:
    """Sample k's time as text for a panel's title ('' where the samples have no time)."""
    if times is None or k >= len(times):
        return ""
    return f" ({str(times[k]).replace('T', ' ')[:16]})"


def field_style(*fields) -> dict:
    """Colour limits from the 1st and 99th percentiles of the fields (a few outliers do not
    set the scale); a signed field (winds, anomalies) gets a diverging map centred on 0."""
    import numpy as np

    values = np.concatenate([np.asarray(f, dtype=np.float64).ravel() for f in fields])
    values = values[np.isfinite(values)]
    if not len(values):
        return dict(cmap="viridis")
    low, high = np.percentile(values, [1, 99])
    if low < 0 < high and min(-low, high) > 0.1 * max(-low, high):
        spread = max(-low, high)
        return dict(cmap="RdBu_r", vmin=-spread, vmax=spread)
    return dict(cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-6)


def error_style(*errors) -> dict:
    """A diverging map centred on 0, its limits the 99th percentile of |error|."""
    import numpy as np

    values = np.abs(np.concatenate([np.asarray(e, dtype=np.float64).ravel() for e in errors]))
    values = values[np.isfinite(values)]
    spread = float(np.percentile(values, 99)) if len(values) else 1.0
    return dict(cmap="RdBu_r", vmin=-(spread or 1e-6), vmax=spread or 1e-6)


def _placement(grid, shape: tuple[int, int]) -> dict:
    """imshow's extent and origin: north up, on longitudes and latitudes where the grid
    is regular, on the grid's own rows and columns otherwise."""
    lat, lon = (grid.lat_axis, grid.lon_axis) if grid is not None else (None, None)
    if lat is None or lon is None:
        return dict(origin="lower")
    north_up = "lower" if lat[-1] >= lat[0] else "upper"
    extent = (float(lon.min()), float(lon.max()), float(lat.min()), float(lat.max()))
    return dict(origin=north_up, extent=extent)


def _panel(figure, axis, values, style: dict, placement: dict, title: str) -> None:
    image = axis.imshow(values, aspect="auto", **placement, **style)
    axis.set_title(title, fontsize=8, loc="left")
    axis.tick_params(labelsize=6)
    figure.colorbar(image, ax=axis, fraction=0.03, pad=0.01).ax.tick_params(labelsize=6)


def _panel_size(shape: tuple[int, int]) -> tuple[float, float]:
    """Inches of one map panel: wide fields (a latitude band) wide and low."""
    height, width = shape
    if width > 3 * height:
        return 7.0, max(7.0 * height / width, 0.9) + 0.5
    return 4.0, 4.0 * height / max(width, 1) + 0.5


def reconstruction_panels(
    predictions: dict[str, torch.Tensor],
    truth: torch.Tensor,
    table,
    data,
    path: Path,
    cases: int = 2,
) -> None:
    """A file per test case: the observed field with its gaps beside the truth, then each
    predictor's completed field (observed values kept, gaps filled) beside its error, with
    the case's date on every panel."""
    import numpy as np

    plt = _pyplot()
    picks = np.linspace(0, len(truth) - 1, cases).astype(int)
    variable = data.targets[0]
    times = table.coords.get(data.split.dim)
    placement = _placement(data.grid, tuple(truth.shape[-2:]))
    width, height = _panel_size(tuple(truth.shape[-2:]))
    for k, target in zip(picks, case_paths(path, len(picks)), strict=True):
        observed = table.mask[k, 0].numpy() > 0
        true_field = truth[k, 0].double().numpy()
        filled = {}
        for name, prediction in predictions.items():
            field = np.where(observed, true_field, prediction[k, 0].double().numpy())
            filled[name] = np.where(np.isfinite(true_field), field, np.nan)
        values = field_style(true_field)
        errors = error_style(*[f - true_field for f in filled.values()])
        rows = 1 + len(filled)
        figure, axes = plt.subplots(
            rows, 2, figsize=(2 * width, rows * height), squeeze=False, constrained_layout=True
        )
        when = _date(times, k)
        _panel(
            figure,
            axes[0, 0],
            np.where(observed, true_field, np.nan),
            values,
            placement,
            f"observed, with gaps{when}",
        )
        _panel(figure, axes[0, 1], true_field, values, placement, f"truth{when}")
        for row, (name, field) in enumerate(filled.items(), start=1):
            _panel(figure, axes[row, 0], field, values, placement, f"{name}: reconstruction{when}")
            _panel(
                figure,
                axes[row, 1],
                field - true_field,
                errors,
                placement,
                f"{name}: error ({variable.units}){when}",
            )
        figure.suptitle(f"{variable.name} ({variable.units}), test case{when}", fontsize=10)
        _save(figure, target)
        plt.close(figure)


def spread_panels(
    observed, error, spread, distance, data, path: Path, when: str = "", units: str = ""
) -> None:
    """One test case of an inpainting ensemble: the observed field with its gaps, the
    error of the draws' mean, their spread, and the distance of each hidden point from the
    nearest observed one (grid points), on the grid."""
    plt = _pyplot()
    placement = _placement(data.grid, observed.shape)
    width, height = _panel_size(observed.shape)
    figure, axes = plt.subplots(
        2, 2, figsize=(2 * width, 2 * height), squeeze=False, constrained_layout=True
    )
    _panel(figure, axes[0, 0], observed, field_style(observed), placement, f"observed{when}")
    _panel(figure, axes[0, 1], error, error_style(error), placement, f"error of the mean ({units})")
    _panel(figure, axes[1, 0], spread, dict(cmap="magma"), placement, f"spread ({units})")
    _panel(
        figure,
        axes[1, 1],
        distance,
        dict(cmap="viridis"),
        placement,
        "distance to the nearest observation (grid points)",
    )
    _save(figure, path)
    plt.close(figure)


def field_panels(
    predictions: dict[str, torch.Tensor], truth: torch.Tensor, data, path: Path, cases: int = 2
) -> None:
    """A file per test case (those with the most going on): the truth and each
    predictor's field (the last target frame of windows), each above its error, blank
    where the truth is unknown, the case's date on every panel. Wide fields (a latitude
    band) are stacked, a field beside its error."""
    import numpy as np

    plt = _pyplot()
    picks = busiest_cases(truth, cases)
    variable = data.targets[0]
    times = data.test.coords.get(data.split.dim)
    shape = _last_frame(truth, 0).shape
    placement = _placement(data.grid, shape)
    width, height = _panel_size(shape)
    stacked = shape[1] > 3 * shape[0]
    frame = ", last target frame" if getattr(data, "window", None) else ""
    for k, target in zip(picks, case_paths(path, len(picks)), strict=True):
        true_field = _last_frame(truth, k)
        unknown = ~np.isfinite(true_field)
        fields = {
            name: np.where(unknown, np.nan, _last_frame(p, k)) for name, p in predictions.items()
        }
        values = field_style(true_field, *fields.values())
        errors = error_style(*[f - true_field for f in fields.values()])
        count = 1 + len(fields)
        rows, columns = (count, 2) if stacked else (2, count)
        figure, axes = plt.subplots(
            rows,
            columns,
            figsize=(columns * width, rows * height),
            squeeze=False,
            constrained_layout=True,
        )
        axes = axes if stacked else axes.T  # axes[i] = (field, error) of panel pair i
        when = _date(times, k)
        _panel(figure, axes[0, 0], true_field, values, placement, f"truth{when}")
        axes[0, 1].axis("off")
        for pair, (name, field) in enumerate(fields.items(), start=1):
            _panel(figure, axes[pair, 0], field, values, placement, f"{name}{when}")
            error_title = f"{name}: error ({variable.units}){when}"
            _panel(figure, axes[pair, 1], field - true_field, errors, placement, error_title)
        figure.suptitle(f"{variable.name} ({variable.units}){frame}, test case{when}", fontsize=10)
        _save(figure, target)
        plt.close(figure)


def sample_panels(
    predictions: dict[str, torch.Tensor], truth: torch.Tensor, data, path: Path, count: int = 4
) -> None:
    """Real test fields in the first row (the most varied), each generator's draws in the
    next, on one colour scale (of the first channel), and their mean power spectra."""
    import numpy as np

    from esszoo.verification import radial_spectrum

    plt = _pyplot()
    busiest = truth[:, 0].nan_to_num().flatten(1).std(1).argsort(descending=True)
    rows = {"test fields (real, the most varied)": truth[busiest], **predictions}
    shape = tuple(truth.shape[-2:])
    placement = _placement(data.grid, shape)
    width, height = _panel_size(shape)
    style = field_style(*[np.asarray(r[:count, 0]) for r in rows.values()])
    figure, axes = plt.subplots(
        len(rows),
        count + 1,
        figsize=((count + 1) * width, len(rows) * height),
        squeeze=False,
        constrained_layout=True,
    )
    for row, (name, fields) in zip(axes, rows.items(), strict=True):
        for k, axis in enumerate(row[:count]):
            _panel(figure, axis, fields[k, 0].numpy(), style, placement, f"{name} {k + 1}")
        spectrum = radial_spectrum(fields[:, 0].double().nan_to_num()).mean(0)[1:].numpy()
        axes[0, count].loglog(np.arange(1, len(spectrum) + 1), spectrum, label=name)
    for axis in axes[1:, count]:
        axis.axis("off")
    axes[0, count].set(title="mean power spectrum", xlabel="wavenumber (1 / domain)")
    axes[0, count].legend(fontsize=6)
    variable = data.inputs[0]
    figure.suptitle(f"{variable.name} ({variable.units}): real and generated", fontsize=10)
    _save(figure, path)
    plt.close(figure)


def sample_grid(fields: torch.Tensor, variable, path: Path, title: str, columns: int = 4) -> None:
    """The first draws of a generative model (N, C, H, W), first channel, on one scale."""
    import math

    import numpy as np

    plt = _pyplot()
    shown = fields[: 4 * columns, 0].numpy()
    rows = math.ceil(len(shown) / columns)
    width, height = _panel_size(shown.shape[-2:])
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(columns * width, rows * height),
        squeeze=False,
        constrained_layout=True,
    )
    style = field_style(*[np.asarray(f) for f in shown])
    for k, axis in enumerate(axes.flat):
        if k < len(shown):
            _panel(figure, axis, shown[k], style, dict(origin="lower"), f"{k}")
        else:
            axis.axis("off")
    figure.suptitle(f"{variable.name} ({variable.units}): {title}", fontsize=9)
    _save(figure, path)
    plt.close(figure)


def class_map_panels(
    predictions: dict[str, torch.Tensor], truth: torch.Tensor, data, path: Path, cases: int = 2
) -> None:
    """For a few test cases (those with the most going on): the true class map and every
    predictor's, a row per case, its date on every panel."""
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
    times = data.test.coords.get(data.split.dim)
    placement = _placement(data.grid, tuple(truth.shape[-2:]))
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
            image = axis.imshow(
                shown, cmap=colours, vmin=-0.5, vmax=count - 0.5, aspect="auto", **placement
            )
            axis.set_title(f"{title}{_date(times, k)}", fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
    bar = figure.colorbar(image, ax=axes[:, -1], ticks=range(count), fraction=0.05)
    bar.ax.set_yticklabels(data.classes)
    _save(figure, path)
    plt.close(figure)


def forecast_panels(forecasts: dict, truth: torch.Tensor, times, label: str, path: Path) -> None:
    """The test split's forecasts of the first series' first target, at the first and the
    last lead, against the truth: one row per lead, one line per predictor, the model's
    central 50% and 90% intervals shaded where it has them."""
    import numpy as np

    plt = _pyplot()
    leads = sorted({0, truth.shape[1] - 1})
    figure, axes = plt.subplots(len(leads), 1, figsize=(11, 3.4 * len(leads)), squeeze=False)
    count = min(len(truth), 400)  # the first stretch of the test split, readable
    for axis, lead in zip(axes[:, 0], leads, strict=True):
        when = np.asarray(times)[:count, lead] if times is not None else np.arange(count)
        axis.plot(when, truth[:count, lead, 0], color="black", linewidth=1.4, label="truth")
        for index, (name, forecast) in enumerate(forecasts.items()):
            style = {"linewidth": 1.2} if index == 0 else {"linewidth": 0.8, "alpha": 0.8}
            axis.plot(when, forecast.center[:count, lead, 0], label=name, **style)
            if index == 0 and forecast.probabilistic:
                for low, high, alpha in ((0.05, 0.95, 0.15), (0.25, 0.75, 0.3)):
                    lower, upper = forecast.quantile(low), forecast.quantile(high)
                    if lower is not None and upper is not None:
                        axis.fill_between(
                            when,
                            lower[:count, lead, 0],
                            upper[:count, lead, 0],
                            alpha=alpha,
                            color="tab:blue",
                            linewidth=0,
                        )
        axis.set_title(f"lead {lead + 1}: forecasts valid at each time")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=3, loc="lower left", bbox_to_anchor=(0, 1.1))
    _save(figure, path)
    plt.close(figure)


def skill_by_lead(rows: list[dict], label: str, path: Path) -> None:
    """RMSE and CRPS against lead time, one line per predictor."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = list(dict.fromkeys(row["predictor"] for row in rows))
    for score, axis in zip(("rmse", "crps"), axes, strict=True):
        for name in names:
            mine = [row for row in rows if row["predictor"] == name]
            axis.plot([r["lead"] for r in mine], [r[score] for r in mine], marker="o", label=name)
        axis.set_xlabel("lead (steps)")
        axis.set_ylabel(f"{score.upper()} ({label})")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(figure, path)
    plt.close(figure)


def reliability(curves: dict[str, list[tuple[float, float]]], path: Path) -> None:
    """Observed frequency of the truth below each forecast quantile against the quantile's
    level: on the diagonal a forecast is calibrated; below it, too high."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.6, 4.6))
    axis.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    for name, points in curves.items():
        levels, observed = zip(*points, strict=True)
        axis.plot(levels, observed, marker="o", label=name)
    axis.set_xlabel("forecast quantile level")
    axis.set_ylabel("observed frequency below it")
    axis.set_title("reliability")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    _save(figure, path)
    plt.close(figure)


def errors_by_level(panels: dict, pressure, path: Path) -> None:
    """For each profile variable, RMSE and bias against level (pressure, surface at the
    bottom), one line per predictor, the truth's spread dashed beside the RMSE."""
    import numpy as np

    plt = _pyplot()
    figure, axes = plt.subplots(len(panels), 2, figsize=(10, 4.5 * len(panels)), squeeze=False)
    for row, (variable, (curves, spread)) in zip(axes, panels.items(), strict=True):
        height = pressure if pressure is not None else np.arange(len(spread))
        for name, (rmse, bias) in curves.items():
            row[0].plot(rmse, height, marker=".", label=name)
            row[1].plot(bias, height, marker=".", label=name)
        row[0].plot(spread, height, "k--", label="truth's spread (std)")
        row[0].set_xscale("log")
        row[1].axvline(0.0, color="grey", lw=0.8)
        for axis, score in zip(row, ("RMSE", "bias"), strict=True):
            axis.set_xlabel(f"{variable.name} {score} ({variable.units})")
            axis.set_ylabel("pressure (hPa)" if pressure is not None else "level")
            if pressure is not None:
                axis.invert_yaxis()
            axis.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    _save(figure, path)
    plt.close(figure)


def online_profiles(dataset, path: Path) -> None:
    """The coupled runs over time: column-mean temperature and humidity differences
    (emulator minus RRTMG) by day and pressure, and both runs' last profiles."""
    import numpy as np

    plt = _pyplot()
    figure, axes = plt.subplots(1, 4, figsize=(18, 4.5))
    pressure = dataset["pressure"].values
    days = dataset["day"].values
    emulator, reference = dataset.sel(model="emulator"), dataset.sel(model="RRTMG")
    panels = [
        ((emulator["ta"] - reference["ta"]).mean("column"), "temperature, emulator - RRTMG (K)"),
        (
            100 * (emulator["hus"] / reference["hus"] - 1).mean("column"),
            "humidity, emulator / RRTMG - 1 (%)",
        ),
    ]
    for axis, (difference, title) in zip(axes[:2], panels, strict=True):
        values = difference.transpose("level", "day").values
        limit = float(np.nanmax(np.abs(values))) or 1.0
        image = axis.pcolormesh(days, pressure, values, cmap="RdBu_r", vmin=-limit, vmax=limit)
        figure.colorbar(image, ax=axis)
        axis.invert_yaxis()
        axis.set_xlabel("simulated day")
        axis.set_ylabel("pressure (hPa)")
        axis.set_title(title, fontsize=9)
    last = int(np.flatnonzero(np.isfinite(emulator["ta"].values).all(axis=(1, 2)))[-1])
    for axis, name, label in ((axes[2], "ta", "temperature (K)"), (axes[3], "hus", "humidity")):
        for column in range(dataset.sizes["column"]):
            for model, style in (("RRTMG", "-"), ("emulator", "--")):
                profile = dataset[name].sel(model=model).isel(day=last, column=column)
                axis.plot(profile, pressure, style, color=f"C{column % 10}", lw=1)
        axis.invert_yaxis()
        axis.set_xlabel(label)
        axis.set_title(f"day {days[last]}: RRTMG (solid), emulator (dashed)", fontsize=9)
        if name == "hus":
            axis.set_xscale("log")
    _save(figure, path)
    plt.close(figure)


def box_overlays(
    detections: dict[str, tuple],
    truth: torch.Tensor,
    data,
    path: Path,
    min_score: float,
    cases: int = 4,
) -> None:
    """One PNG per test case (those with the most objects): the last input frame, the true
    objects (black, dashed) and each predictor's objects of score >= `min_score` (a colour each),
    drawn in grid cells, a box across the side edge of a global grid drawn on both sides."""
    import numpy as np
    from matplotlib.patches import Rectangle

    from esszoo.boxes import to_corners

    plt = _pyplot()
    counts = (truth[..., 0] >= 0).sum(1)
    picks = sorted(counts.argsort(descending=True)[: min(cases, len(truth))].tolist())
    times = data.test.coords.get(data.split.dim)
    height, width = data.test.x.shape[-2:]
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    colours = ["#e41a1c", "#00bfff", "#ff7f00", "#4daf4a", "#984ea3"]
    variable = data.inputs[0]

    def draw(axis, boxes: torch.Tensor, colour: str, style: str, label: str) -> None:
        axis.plot([], [], color=colour, linestyle=style, label=label)  # the legend's entry
        for x0, y0, x1, y1 in (to_corners(boxes) * scale).tolist():
            for shift in (
                (0.0, -width, width) if data.grid is not None and data.grid.wraps else (0.0,)
            ):
                if x1 + shift <= 0 or x0 + shift >= width:
                    continue
                axis.add_patch(
                    Rectangle(
                        (x0 + shift - 0.5, y0 - 0.5),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        edgecolor=colour,
                        linestyle=style,
                        linewidth=1.2,
                    )
                )

    for case_path, k in zip(case_paths(path, len(picks)), picks, strict=True):
        field = data.test.x[k, -1].double().numpy()
        figure, axis = plt.subplots(figsize=_panel_size((height, width)), constrained_layout=True)
        origin = _placement(data.grid, (height, width))["origin"]  # north up where known
        image = axis.imshow(np.ma.masked_invalid(field), origin=origin, cmap="Blues", aspect="auto")
        bar = figure.colorbar(image, ax=axis, fraction=0.03, pad=0.01)
        bar.ax.tick_params(labelsize=6)
        bar.set_label(f"{variable.name} ({variable.units})", fontsize=6)
        objects = truth[k][truth[k, :, 0] >= 0]
        draw(axis, objects[:, 1:], "black", "--", f"truth ({len(objects)})")
        for colour, (name, (scores, _, boxes)) in zip(colours, detections.items(), strict=False):
            kept = boxes[k][scores[k] >= min_score]
            draw(axis, kept, colour, "-", f"{name} ({len(kept)})")
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(*((-0.5, height - 0.5) if origin == "lower" else (height - 0.5, -0.5)))
        axis.set_title(f"last input frame and objects{_date(times, k)}", fontsize=8, loc="left")
        axis.tick_params(labelsize=6)
        axis.set_facecolor("#d9d9d9")
        axis.legend(fontsize=6, loc="upper right", framealpha=0.6)
        _save(figure, case_path)
        plt.close(figure)
