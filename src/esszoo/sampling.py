"""New fields from a trained generative model: `esszoo sample RUN --n N`.

A run of the generation task (`esszoo.tasks.generation`) draws `N` fields from its model,
in the variables' units, on the training grid with its coordinates (the grid's 1-D
coordinates, or its 2-D latitudes and longitudes), and writes them as NetCDF along a new
``sample`` dimension, with a PNG of the first draws. With ``--between DATA I J`` a
variational autoencoder walks instead, in its latent space, from the I-th field of the
data file to the J-th: the fields decoded at ``--n`` evenly spaced points of the straight
line between their codes (the first and last are the two fields' reconstructions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from esszoo.checkpoint import load
from esszoo.data.grid import Grid
from esszoo.data.source import open_source
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError, RunError
from esszoo.fileio import atomic_path


def sample_run(
    run: str | Path,
    count: int,
    out: str | Path | None = None,
    seed: int = 0,
    between: tuple[str, int, int] | None = None,
) -> tuple[Path, Path]:
    """Write `count` draws (or a walk `between` two fields of a file) of run `run`; return
    the NetCDF file and the PNG written."""
    from esszoo.plots import sample_grid
    from esszoo.tasks.generation import GenerationOptions, draw

    if count < 1:
        raise RunError(f"--n {count}: give at least one field to draw")
    predictor = load(run)
    description = predictor.description
    task = description.get("task", {}).get("name")
    if task != "generation":
        raise RunError(
            f"'{run}' is a run of the {task} task: esszoo sample draws from generation runs",
            "train a generative model (vae, dcgan) with task.name: generation",
        )
    spec = GenerationOptions(**description["recipe"]["task"])
    grid = Grid.from_checkpoint(description["grid"], predictor.tensors)
    variables = [Variable.from_dict(v) for v in description["outputs"]]
    if between is None:
        fields = draw(predictor, count, tuple(grid.shape), spec, seed=seed)
        what = f"{count} fields drawn by esszoo model '{description['model']['name']}'"
    else:
        fields = walk(predictor, spec, variables, between, count)
        what = (
            f"{count} fields decoded between fields {between[1]} and {between[2]} of "
            f"{between[0]} by esszoo model '{description['model']['name']}'"
        )
    dataset = fields_dataset(fields, grid, variables, what)
    target = Path(out) if out else Path(run) / ("walk.nc" if between else "samples.nc")
    with atomic_path(target) as temporary:
        dataset.to_netcdf(temporary)
    picture = target.with_suffix(".png")
    sample_grid(fields, variables[0], picture, title=what)
    return target, picture


def walk(
    predictor: torch.nn.Module,
    spec,  # noqa: ANN001 (GenerationOptions)
    variables: list[Variable],
    between: tuple[str, int, int],
    steps: int,
) -> torch.Tensor:
    """Fields (steps, C, H, W) decoded along the line between two fields' codes."""
    from esszoo.tasks.generation import TRANSFORMS

    if not hasattr(predictor.net, "interpolate"):
        raise RunError(
            f"model '{predictor.description['model']['name']}' has no encoder to place real "
            "fields in its latent space",
            "walk between fields with a vae run, or drop --between to draw new fields",
        )
    path, first, last = between
    dataset = open_source(path)
    missing = [v.name for v in variables if v.name not in dataset]
    if missing:
        raise DataError(f"'{path}' holds no variable {', '.join(missing)}", "give the run's data")
    arrays = [dataset[v.name] for v in variables]
    dim = arrays[0].dims[0]
    size = arrays[0].sizes[dim]
    if not (0 <= first < size and 0 <= last < size):
        raise DataError(f"'{path}' has {size} fields along '{dim}': {first} or {last} is not one")
    forward, inverse = TRANSFORMS[spec.transform]
    ends = []
    for index in (first, last):
        values = np.stack([load_values(a.isel({dim: index}), dtype=np.float32) for a in arrays])
        ends.append(predictor.normalize(forward(torch.from_numpy(values)[None])))
    with torch.inference_mode():
        out = predictor.net.interpolate(*ends, steps)
        return inverse(predictor.denormalize(out)).float()


def fields_dataset(
    fields: torch.Tensor, grid: Grid, variables: list[Variable], comment: str
) -> xr.Dataset:
    """Fields (N, C, H, W) as a Dataset along ``sample`` with the grid's coordinates."""
    dims = ("sample", *grid.dims)
    coords: dict[str, object] = {"sample": np.arange(len(fields))}
    coords |= {d: (d, values) for d, values in grid.coords.items()}
    for role in ("latitude", "longitude"):
        values = getattr(grid, role)
        name = grid.names.get(role, role)
        if values is not None and name not in coords and role not in grid.roles.values():
            units = "degrees_north" if role == "latitude" else "degrees_east"
            coords[name] = (grid.dims, values, {"standard_name": role, "units": units})
    dataset = xr.Dataset(coords=coords)
    for channel, variable in enumerate(variables):
        attrs = variable.attrs() | {"comment": comment}
        dataset[variable.name] = (dims, fields[:, channel].numpy(), attrs)
    dataset.attrs = {"Conventions": "CF-1.8", "title": comment}
    return dataset
