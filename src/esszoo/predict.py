"""Apply a trained model to new data and write CF-NetCDF with the coordinates intact."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

import esszoo
from esszoo.checkpoint import load
from esszoo.data.source import open_source
from esszoo.data.variables import Variable
from esszoo.errors import DataError
from esszoo.fileio import atomic_path
from esszoo.recipe import import_modules
from esszoo.tasks import DEFAULT_TASK, task_class


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
    # the modules the run's recipe imported (its own task, for example), by name
    import_modules(description.get("recipe", {}).get("imports", []), f"run '{run}'")
    dataset = open_source(data)
    arrays = _inputs(dataset, trained)
    task = task_class(description.get("task", {}).get("name", DEFAULT_TASK))
    predicted = task.predictions(predictor, arrays, description)
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
