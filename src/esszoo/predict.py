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
    predictor = load(run)
    description = predictor.description
    trained = [Variable.from_dict(v) for v in description.get("inputs", [])]
    outputs = [Variable.from_dict(v) for v in description.get("outputs", [])]
    if not trained or not outputs:
        raise DataError(f"the checkpoint in '{run}' does not name its variables")
    dataset = open_source(data)
    arrays = _inputs(dataset, trained)
    template = arrays[0]
    values = np.stack([load_values(a) for a in arrays], axis=-1).reshape(-1, len(arrays))
    valid = np.isfinite(values).all(axis=1)
    result = np.full((values.shape[0], len(outputs)), np.nan, dtype=np.float32)
    if valid.any():
        x = torch.from_numpy(values[valid]).float()
        result[valid] = predict_in_batches(predictor, x).numpy()
    coords = {name: coord for name, coord in template.coords.items()}
    predicted = xr.Dataset(coords=coords)
    for column, variable in enumerate(outputs):
        attrs = variable.attrs() | {
            "comment": f"predicted by esszoo model '{description['model']['name']}' "
            f"from {', '.join(v.name for v in trained)}; NaN where an input is missing",
        }
        predicted[variable.name] = xr.DataArray(
            result[:, column].reshape(template.shape), dims=template.dims, attrs=attrs
        )
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
