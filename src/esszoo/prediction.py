"""Apply a trained model to new data and write CF-NetCDF with the coordinates intact.

The data are checked against what the model was trained on: the input variables by
name, their units (converted where they convert, refused where they do not), and, for
fields, the grid (the same points in any order or longitude range, put in the training
order and back; another grid is refused, or interpolated with ``regrid``). The output
keeps the data's coordinates, bounds and global attributes, and appends to its history.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import esszoo
from esszoo.checkpoint import load
from esszoo.data.coords import time_dim
from esszoo.data.grid import Grid
from esszoo.data.source import for_writing, open_source
from esszoo.data.variables import Variable
from esszoo.errors import DataError
from esszoo.fileio import atomic_path
from esszoo.options import UncertaintyOptions
from esszoo.recipe import import_modules
from esszoo.tasks import DEFAULT_TASK, task_class
from esszoo.uncertainty import draws
from esszoo.units import converter


def _inputs(dataset: xr.Dataset, trained: list[Variable], notes: list[str]) -> list[xr.DataArray]:
    """The model's input variables from `dataset`, checked by name and dimensions, in the
    units the model was trained on (converted where the data's units convert to them)."""
    names = [v.name for v in trained]
    missing = [name for name in names if name not in dataset.data_vars]
    if missing:
        raise DataError(
            f"the data lack the model's input variable(s) {missing}; the model was trained "
            f"on {names} and the data hold {sorted(map(str, dataset.data_vars))}",
            "give data with the same variables (rename them with xarray if only names differ)",
        )
    # the dimensions of a sample: the first input's, less its vertical (a profile's levels)
    first = dataset[names[0]]
    sample_dims = [d for d in first.dims if d != trained[0].vertical]
    arrays = []
    for variable in trained:
        array = dataset[variable.name]
        vertical = [variable.vertical] if variable.vertical else []
        if set(array.dims) != set(sample_dims) | set(vertical):
            raise DataError(
                f"variable '{array.name}' has dimensions {tuple(array.dims)} but "
                f"{'a profile along ' + repr(vertical[0]) + ' over ' if vertical else ''}"
                f"the samples {tuple(sample_dims)} of '{names[0]}' were expected",
                "all inputs must share one grid",
            )
        if vertical and array.sizes[vertical[0]] != variable.levels:
            raise DataError(
                f"profile '{array.name}' has {array.sizes[vertical[0]]} {vertical[0]}s; the "
                f"model was trained on {variable.levels}",
                "give the profiles on the model's levels (interpolate them first)",
            )
        units = str(array.attrs.get("units", ""))
        convert = converter(units, variable.units, variable.name) if variable.units else None
        if convert is not None:
            notes.append(f"'{variable.name}' converted from {units} to {variable.units}")
            array = convert(array).assign_attrs(array.attrs | {"units": variable.units})
        arrays.append(array.transpose(*sample_dims, *vertical))
    return arrays


def _sample_dim(array: xr.DataArray, trained: str) -> str:
    """The data's dimension of samples: the one the model was trained along, else the
    data's time axis (a time dimension under another name)."""
    if trained in array.dims:
        return trained
    found = time_dim(array)
    if found is None:
        raise DataError(
            f"'{array.name}' has no '{trained}' dimension and no time axis: dimensions "
            f"{tuple(array.dims)}",
            f"give data along '{trained}' (or a time axis with CF attributes)",
        )
    return found


def predict_dataset(
    predictor: torch.nn.Module, dataset: xr.Dataset, *, regrid: bool = False
) -> xr.Dataset:
    """The outputs of a loaded model (`esszoo.load`) for `dataset`, with the data's
    coordinates, in the data's order of points; the same checks as `esszoo predict`."""
    description = predictor.description
    # the modules the run's recipe imported (its own task, for example), by name
    import_modules(description.get("recipe", {}).get("imports", []), "the run's recipe")
    task = task_class(description.get("task", {}).get("name", DEFAULT_TASK))
    trained = task.data_inputs(description)
    if not trained or not description.get("outputs"):
        raise DataError("the checkpoint does not name its variables")
    notes: list[str] = []
    arrays = _inputs(dataset, trained, notes)
    coarsen = description.get("recipe", {}).get("data", {}).get("coarsen") or {}
    if coarsen:  # the block means the run's data section made in training
        arrays = [a.coarsen(coarsen, boundary="trim").mean() for a in arrays]
    restore = None
    if description.get("grid"):
        grid = Grid.from_checkpoint(description["grid"], predictor.tensors)
        aligned = [grid.align(array, regrid=regrid) for array in arrays]
        arrays, restore = [a for a, _ in aligned], aligned[0][1]
    trained_dim = description.get("data", {}).get("dims", ["time"])[0]
    sample_dim = _sample_dim(arrays[0], trained_dim) if description.get("grid") else None
    with predictor.counting() as counts:
        predicted = task.predictions(predictor, arrays, description, sample_dim)
    uncertainty = description.get("recipe", {}).get("uncertainty")
    if uncertainty:
        predicted = _with_draws(predicted, task, predictor, arrays, description, sample_dim)
    if restore is not None:
        predicted = restore(predicted)
    notes += _beyond_bounds(predicted, counts, description)
    for name, variable in zip([v.name for v in trained], trained, strict=True):
        units = str(dataset[name].attrs.get("units", ""))
        convert = converter(variable.units, units, name) if variable.units and units else None
        if name in predicted.data_vars and convert is not None:  # written back as it came
            predicted[name] = convert(predicted[name]).assign_attrs(
                predicted[name].attrs | {"units": units}
            )
    for note in notes:
        print(f"note: {note}")
    return _with_provenance(predicted, dataset, description, notes)


def _with_draws(
    predicted: xr.Dataset,
    task: type,
    predictor: torch.nn.Module,
    arrays: list[xr.DataArray],
    description: dict,
    sample_dim: str | None,
) -> xr.Dataset:
    """The run's draws of the predictions (`esszoo.uncertainty`) along a ``realization``
    dimension: each output variable becomes their mean, beside its spread and the draws."""
    options = UncertaintyOptions(**description["recipe"]["uncertainty"])
    samples = draws(
        lambda member: task.predictions(member, arrays, description, sample_dim),
        [predictor, *getattr(predictor, "members", [])],
        options,
    )
    drawn = xr.concat(samples, dim="realization")
    drawn = drawn.assign_coords(realization=np.arange(len(samples)))
    drawn["realization"].attrs = {"standard_name": "realization", "long_name": "draw"}
    result = predicted.copy()
    method = {
        "bayes": "Bayes by Backprop weights",
        "mc_dropout": "MC dropout",
        "ensemble": "ensemble members",
    }[options.method]
    for name in [n for n in predicted.data_vars if n in drawn.data_vars]:
        draws_of = drawn[name]
        attrs = predicted[name].attrs
        result[name] = draws_of.mean("realization").assign_attrs(
            attrs | {"cell_methods": "realization: mean", "comment": f"mean of {len(samples)} "
                     f"draws ({method}); {attrs.get('comment', '')}".rstrip("; ")}
        )  # fmt: skip
        result[f"{name}_spread"] = draws_of.std("realization", ddof=1).assign_attrs(
            units=attrs.get("units", ""),
            long_name=f"standard deviation of the draws of {name}",
            cell_methods="realization: standard_deviation",
        )
        result[f"{name}_draws"] = draws_of.assign_attrs(attrs | {"long_name": f"draws of {name}"})
    return result


def _beyond_bounds(
    predicted: xr.Dataset, counts: dict[str, torch.Tensor], description: dict
) -> list[str]:
    """Record in each output variable's attributes how many predictions fell outside its
    physical bounds (and were clipped to them) or outside the range of the training
    targets; a note for each that did."""
    if "outputs" not in counts:
        return []
    # one channel per output, or per level of a profile
    channels = [
        v for v in map(Variable.from_dict, description["outputs"]) for _ in range(v.levels or 1)
    ]
    notes = []
    for variable in dict.fromkeys(v.name for v in channels):
        if variable not in predicted.data_vars:
            continue
        mine = torch.tensor([v.name == variable for v in channels])
        mine = mine.repeat(len(counts["outputs"]) // len(mine))  # a distribution's groups
        total = {key: int(value[mine].sum()) for key, value in counts.items()}
        found = {key: value for key, value in total.items() if key != "outputs"}
        predicted[variable].attrs |= {f"esszoo_{key}": value for key, value in found.items()}
        beyond = {key.replace("_", " "): value for key, value in found.items() if value}
        if beyond:
            listed = ", ".join(f"{value} {key}" for key, value in beyond.items())
            notes.append(
                f"{variable}: of {total['outputs']} predicted values, {listed}"
                + (" (clipped to the bounds)" if "bounds" in listed else "")
            )
    return notes


def _with_provenance(
    predicted: xr.Dataset, dataset: xr.Dataset, description: dict, notes: list[str]
) -> xr.Dataset:
    """The data's global attributes and the bounds of the coordinates written, kept;
    esszoo's note appended to the history, as CF asks of programs that change a file."""
    for name, coord in predicted.coords.items():
        for key in ("bounds", "climatology"):
            bounds = coord.attrs.get(key)
            if bounds is None:
                continue
            if bounds in dataset.variables and _same_coords(dataset[bounds], predicted):
                predicted[bounds] = dataset[bounds]
                predicted = predicted.set_coords(bounds)
            else:  # not on the points written (regridded): no bounds rather than wrong ones
                predicted[name].attrs = {k: v for k, v in coord.attrs.items() if k != key}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = f"{stamp}: esszoo {esszoo.__version__} predicted {', '.join(predicted.data_vars)}"
    line += f" with model {description['model']['name']}" + "".join(f"; {n}" for n in notes)
    history = str(dataset.attrs.get("history", "")).rstrip("\n")
    predicted.attrs = dict(dataset.attrs) | {
        "Conventions": str(dataset.attrs.get("Conventions") or "CF-1.8"),
        "history": f"{history}\n{line}" if history else line,
        "esszoo_model": description["model"]["name"],
        "esszoo_git_commit": description.get("git_commit", "unknown"),
    }
    return predicted


def _same_coords(bounds: xr.DataArray, predicted: xr.Dataset) -> bool:
    """Whether a bounds variable lies along coordinates that `predicted` has unchanged."""
    for dim in bounds.dims:
        if dim in predicted.dims and dim in bounds.coords and dim in predicted.coords:
            if not np.array_equal(bounds[dim].values, predicted[dim].values):
                return False
        elif dim in predicted.dims and bounds.sizes[dim] != predicted.sizes[dim]:
            return False
    return True


def predict_file(
    run: str | Path, data: str | Path, out: str | Path, *, regrid: bool = False
) -> Path:
    """Predict the outputs of run `run` for every point of `data`; write NetCDF to `out`, or,
    where its name ends in .csv, a table: a row per point of the outputs' dimensions (a
    detector's objects, say), a column per variable and coordinate."""
    precious = [Path(data), *Path(run).glob("*")]
    if Path(out).exists() and any(Path(out).samefile(p) for p in precious if p.exists()):
        raise DataError(
            f"--out '{out}' would overwrite the input data or a file of the run",
            "write the predictions to a new file",
        )
    out = Path(out)
    with open_source(data) as source:  # closed here, not whenever the collector gets to it
        predicted = predict_dataset(load(run), source, regrid=regrid)
        with atomic_path(out) as temporary:
            if out.suffix.lower() == ".csv":
                predicted.to_dataframe().to_csv(temporary)
            else:
                for_writing(predicted).to_netcdf(temporary)
    return out
