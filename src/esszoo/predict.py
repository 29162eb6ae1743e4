"""Apply a trained model to new data and write CF-NetCDF with the coordinates intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

import esszoo
from esszoo.checkpoint import load
from esszoo.data.source import open_source
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError
from esszoo.fileio import atomic_path
from esszoo.run import predict_in_batches


def _inputs(dataset: xr.Dataset, trained: list[Variable]) -> list[xr.DataArray]:
    """The model's input variables from `dataset`, checked by name, units and grid."""
    names = [v.name for v in trained]
    missing = [name for name in names if name not in dataset.data_vars]
    if missing:
        raise DataError(
            f"the data lack the model's input variable(s) {missing}; the model was trained "
            f"on {names} and the data hold {sorted(map(str, dataset.data_vars))}",
            "give data with the same variables (rename them with xarray if only names differ)",
        )
    arrays = [dataset[name] for name in names]
    for array, variable in zip(arrays, trained, strict=True):
        units = str(array.attrs.get("units", ""))
        if variable.units and units != variable.units:
            raise DataError(
                f"variable '{variable.name}' is in '{units or 'no units'}' but the model "
                f"was trained on '{variable.units}'",
                f"convert '{variable.name}' to {variable.units}",
            )
        if set(array.dims) != set(arrays[0].dims):
            raise DataError(
                f"variable '{array.name}' has dimensions {tuple(array.dims)} but "
                f"'{arrays[0].name}' has {tuple(arrays[0].dims)}",
                "all inputs must share one grid",
            )
    return [array.transpose(*arrays[0].dims) for array in arrays]


def predict_file(run: str | Path, data: str | Path, out: str | Path) -> Path:
    """Predict the outputs of run `run` for every point of `data`; write NetCDF to `out`."""
    precious = [Path(data), *Path(run).glob("*")]
    if Path(out).exists() and any(Path(out).samefile(p) for p in precious if p.exists()):
        raise DataError(
            f"--out '{out}' would overwrite the input data or a file of the run",
            "write the predictions to a new file",
        )
    predictor = load(run)
    description = predictor.description
    trained = [Variable.from_dict(v) for v in description.get("inputs", [])]
    outputs = [Variable.from_dict(v) for v in description.get("outputs", [])]
    if not trained or not outputs:
        raise DataError(f"the checkpoint in '{run}' does not name its variables")
    dataset = open_source(data)
    arrays = _inputs(dataset, trained)
    model_name = description["model"]["name"]
    if description.get("task", {}).get("name") == "inpainting":
        predicted = _filled(predictor, arrays[0], description)
    elif description.get("classes"):
        predicted = _classes(predictor, arrays, description, dims=description["data"]["dims"])
    else:
        predicted = _points(predictor, arrays, outputs, model_name, trained)
    predicted.attrs = {
        "Conventions": "CF-1.8",
        "title": f"esszoo predictions of run {Path(run).name}",
        "source": f"esszoo {esszoo.__version__}, model {description['model']['name']}",
        "history": f"esszoo predict {run} --data {data}",
        "input_source": str(dataset.attrs.get("source", data)),
    }
    out = Path(out)
    with atomic_path(out) as temporary:
        predicted.to_netcdf(temporary)
    return out


def _points(
    predictor: torch.nn.Module,
    arrays: list[xr.DataArray],
    outputs: list[Variable],
    model_name: str,
    trained: list[Variable],
) -> xr.Dataset:
    """Vector models: every point of the inputs' grid is a sample; outputs on that grid."""
    template = arrays[0]
    values = np.stack([load_values(a) for a in arrays], axis=-1).reshape(-1, len(arrays))
    valid = np.isfinite(values).all(axis=1)
    result = np.full((values.shape[0], len(outputs)), np.nan, dtype=np.float32)
    if valid.any():
        x = torch.from_numpy(values[valid]).float()
        result[valid] = predict_in_batches(predictor, x).numpy()
    predicted = xr.Dataset(coords=dict(template.coords.items()))
    for column, variable in enumerate(outputs):
        attrs = variable.attrs() | {
            "comment": f"predicted by esszoo model '{model_name}' from "
            f"{', '.join(v.name for v in trained)}; NaN where an input is missing",
        }
        predicted[variable.name] = xr.DataArray(
            result[:, column].reshape(template.shape), dims=template.dims, attrs=attrs
        )
    return predicted


def _classes(
    predictor: torch.nn.Module, arrays: list[xr.DataArray], description: dict, dims: list[str]
) -> xr.Dataset:
    """Classifiers of fields: one class (and its probabilities) per sample."""
    sample_dim = dims[0]
    if sample_dim not in arrays[0].dims or arrays[0].ndim != 3:
        raise DataError(
            f"the model classifies 2-D fields along '{sample_dim}', but '{arrays[0].name}' "
            f"has dimensions {arrays[0].dims}",
            f"give fields with dimensions ({sample_dim}, lat, lon)",
        )
    grid = [d for d in arrays[0].dims if d != sample_dim]
    coarsen = description.get("recipe", {}).get("data", {}).get("coarsen") or {}
    if coarsen:  # the block means the run's data section made in training
        arrays = [a.coarsen(coarsen, boundary="trim").mean() for a in arrays]
    fields = np.stack(
        [load_values(a.transpose(sample_dim, *grid)).astype(np.float32) for a in arrays], axis=1
    )
    logits = predict_in_batches(predictor, torch.from_numpy(fields))
    probability = torch.softmax(logits, dim=1).numpy()
    classes = description["classes"]
    coords = {k: v for k, v in arrays[0].coords.items() if v.dims == (sample_dim,)}
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


def _filled(predictor: torch.nn.Module, array: xr.DataArray, description: dict) -> xr.Dataset:
    """Inpainting: fill the gaps of every field; keep observed values and the domain.

    A point missing in every field of the file lies outside the domain (land, for SST) and
    stays missing; a point missing in some fields is a gap and is filled. A flag variable
    says which values were filled.
    """
    sample_dim = description["data"]["dims"][0]
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
