"""Search the zoo for a recipe: which model and which settings, by Optuna or at random;
NAS with reinforcement learning over the same space (`esszoo.automl.nas_rl`); or a cell,
by DARTS or ENAS, retrained as the recipe's `darts` model (`esszoo.automl.cells`).

The deck's last step automates the data scientist's choices. `esszoo search RECIPE` runs a
study: each trial draws values of the recipe's ``search.space`` (dotted recipe keys, each a
list of choices or a range; ``model.name`` picks among zoo models, and a ``model.*``
argument is drawn only for the models that take it), trains that recipe as an ordinary run
and is scored by its best validation loss, never by the test split, which stays for the
final comparison (`esszoo compare`). ``--method optuna`` draws by the tree-structured
Parzen estimator (Bergstra et al. 2011, Optuna's default sampler; with the "constant
liar" so that parallel workers do not draw alike), ``random`` uniformly: the same space,
budget and pruning, so that the two compare at equal cost. Both prune: a trial whose
validation loss after an epoch is worse than the median of earlier trials at that epoch
(Optuna's MedianPruner, after 3 trials and 2 epochs) stops there, its run kept as it was.

Storage and workers. The study lives by default in the search's own directory,
``OUT_DIR/NAME-search/study.journal`` (Optuna's journal file, safe for processes of one
machine); ``--storage`` takes a database URL (``sqlite:///search.db``,
``postgresql://host/db``), which workers on many machines can share. Each worker is an
``esszoo search`` process on the same storage and budget: Optuna numbers trials in the
storage, so none runs twice, and a worker starts no trial once the study holds the budget's
finished or running trials. Every trial is a run directory ``NAME-search/trial_NNNN``.

Resuming. Run the same command again: finished trials stay done. A trial left running
by a process that died (killed, a machine lost) is marked failed and its values are
queued to run again: on a journal file, where its process is gone from this machine;
on a database, where its heartbeat stopped (Optuna's heartbeat, 60 s, failed after 180 s
without one, retried once).
"""

from __future__ import annotations

import csv
import math
import os
import socket
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from esszoo.errors import ModelError, RecipeError, RunError
from esszoo.options import SearchOptions, SearchRange
from esszoo.recipe import Recipe, apply_overrides, read_yaml, validate
from esszoo.registry import list_models, model_arguments

METHODS = ("optuna", "random", "darts", "enas", "nas-rl")
CELL_METHODS = ("darts", "enas")  # one supernet, its cells retrained (esszoo.automl.cells)
TRIAL_DIR = "trial_{:04d}"
HEARTBEAT_S, GRACE_S = 60, 180
SKIPPED_KEYS = ("name", "out_dir", "search")  # a trial's own, never searched


class PruneOnValidation(Callback):
    """Report each epoch's validation loss to the trial; stop the run where the pruner
    says the trial will not be among the best."""

    def __init__(self, trial: Any):
        self.trial = trial
        self.pruned = False

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        value = trainer.callback_metrics.get("val_loss")
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def search_dir(recipe: Recipe) -> Path:
    return Path(recipe.out_dir) / f"{recipe.name}-search"


def open_storage(storage: str | None, folder: Path) -> Any:
    """The study's storage: a journal file in `folder` by default, else the file or the
    database URL `storage`, refused in one line if it cannot be opened."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
    from optuna.storages.journal import JournalFileBackend

    target = storage or str(folder / "study.journal")
    try:
        if "://" in target:
            return RDBStorage(
                target,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
            )
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(target))
    except (Exception, optuna.exceptions.OptunaError) as error:  # drivers, URLs, files
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise RunError(
            f"cannot open the study's storage '{target}' ({reason})",
            "give a database URL Optuna can open (sqlite:///search.db, postgresql://user@host/db) "
            "or a file path for a journal",
        ) from None


def _draw(trial: Any, key: str, choice: list[Any] | SearchRange) -> Any:
    if isinstance(choice, list):
        return trial.suggest_categorical(key, choice)
    if choice.integers():
        step = int(choice.step or 1)
        return trial.suggest_int(key, int(choice.low), int(choice.high), step=step)
    return trial.suggest_float(key, choice.low, choice.high, log=choice.log, step=choice.step)


def _taken(key: str, model: str) -> bool:
    """Whether the recipe key `key` applies to `model` (model.* keys: the models that take
    that argument)."""
    return not key.startswith("model.") or key == "model.name" or key[6:] in model_arguments(model)


def trial_values(trial: Any, recipe: Recipe) -> dict[str, Any]:
    """The values of one trial, drawn key by key (define-by-run: a model's own arguments
    only once the model is drawn)."""
    space = recipe.search.space
    values = {}
    if "model.name" in space:
        values["model.name"] = _draw(trial, "model.name", space["model.name"])
    model = values.get("model.name", recipe.model.name)
    for key, choice in space.items():
        if key != "model.name" and _taken(key, model):
            values[key] = _draw(trial, key, choice)
    return values


def trial_recipe(raw: dict[str, Any], values: dict[str, Any], folder: Path, number: int) -> Recipe:
    """The recipe `raw` with a trial's `values`, as the run ``folder/trial_NNNN``; a model
    drawn in place of the recipe's keeps those of its arguments that it takes."""
    raw = {key: value for key, value in raw.items() if key != "search"}
    model = dict(raw["model"])
    if values.get("model.name", model["name"]) != model["name"]:
        name = values["model.name"]
        taken = model_arguments(name)
        model = {"name": name} | {k: v for k, v in model.items() if k != "name" and k in taken}
    raw["model"] = model
    for key, value in values.items():
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    raw |= {"name": TRIAL_DIR.format(number), "out_dir": str(folder)}
    return validate(raw, where=f"trial {number} of the search")


def check_space(raw: dict[str, Any], recipe: Recipe) -> None:
    """Refuse, before anything runs, a space that leaves nothing to search, keys that are no
    recipe's, unknown models and values a recipe would refuse (each end of every range, every
    choice, tried on the recipe)."""
    if recipe.search is None or not recipe.search.space:
        raise RecipeError(
            "the recipe has no search space (search.space)",
            "add e.g. search: {space: {trainer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}",
        )
    space = recipe.search.space
    for key in space:
        if key.split(".")[0] in SKIPPED_KEYS or "." not in key and key != "init_from":
            raise RecipeError(
                f"search.space key '{key}' is not a recipe setting to search",
                "give dotted keys of the model, data, task or trainer sections, e.g. trainer.lr",
            )
    models = space.get("model.name", [recipe.model.name])
    if not isinstance(models, list):
        raise RecipeError("search.space 'model.name' must be a list of model names")
    known = list_models()
    for name in models:
        if name not in known:
            raise RecipeError(f"search.space 'model.name' names an unknown model '{name}'")
    choices = sum(
        len(choice) > 1 if isinstance(choice, list) else choice.high > choice.low
        for choice in space.values()
    )
    if not choices:
        raise RecipeError(
            "search.space leaves nothing to search: every key has one value",
            "give two or more choices, or a range with high above low",
        )
    for key, choice in space.items():
        ends = choice if isinstance(choice, list) else [choice.low, choice.high]
        for value in ends:
            model = value if key == "model.name" else models[0]
            if _taken(key, model):
                trial_recipe(raw, {"model.name": model, key: value}, Path("unused"), 0)


def _fail_orphans(study: Any) -> list[int]:
    """Trials left running on this machine by processes that are gone: marked failed, their
    values queued again. (On a database the heartbeat does this across machines.)"""
    from optuna.trial import TrialState

    host = socket.gethostname()
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("host") != host or _alive(trial.user_attrs.get("pid")):
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        orphans.append(trial.number)
    return orphans


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # not this worker's to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def best_validation_loss(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv") as handle:
        losses = [float(row["val_loss"]) for row in csv.DictReader(handle) if row.get("val_loss")]
    finite = [loss for loss in losses if math.isfinite(loss)]
    return min(finite) if finite else math.inf


def search(
    recipe_path: str | Path,
    overrides: list[str] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Run (or resume, or join) the search of a recipe (`esszoo search`); return its trials
    (or a cell search's epochs) as table rows. The trials share their baselines' scores."""
    from esszoo.run import shared_baselines

    with shared_baselines():
        return _search(recipe_path, overrides, **options)


def _search(
    recipe_path: str | Path,
    overrides: list[str] | None = None,
    *,
    method: str = "optuna",
    budget: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    pruner: Any = None,
) -> list[dict[str, Any]]:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from esszoo.training import train_recipe

    if method not in METHODS:
        raise RecipeError(
            f"unknown search method '{method}'",
            f"choose one of {', '.join(METHODS)}",
        )
    if budget < 1:
        raise RecipeError(
            f"a search budget of {budget} trials leaves nothing to run", "give --budget 1 or more"
        )
    if timeout is not None and timeout <= 0:
        raise RecipeError(
            f"a search timeout of {timeout} s leaves no time", "give a positive --timeout"
        )
    if storage is not None and method not in ("optuna", "random"):
        raise RecipeError(
            f"--storage is for the studies of optuna and random search; --method {method} "
            "keeps its state in the search's directory",
            "leave --storage out (run the same command again to resume)",
        )
    if timeout is not None and method in CELL_METHODS:
        raise RecipeError(
            f"--method {method} runs --budget epochs of its supernet, not against a clock",
            "leave --timeout out and give the epochs as --budget",
        )
    raw = apply_overrides(read_yaml(recipe_path), list(overrides or []))
    recipe = validate(raw, where=str(recipe_path))
    if recipe.search is None:
        recipe = recipe.model_copy(update={"search": SearchOptions()})
    folder = search_dir(recipe)
    if method in CELL_METHODS:  # --budget: epochs of the supernet
        from esszoo.automl.cells import search_cells

        return search_cells(recipe, raw, folder, method, budget)
    if method != "nas-rl" or recipe.search.layers is None:  # the layers are a space of their own
        check_space(raw, recipe)
    if method == "nas-rl":
        from esszoo.automl.nas_rl import search_nas_rl

        rows = search_nas_rl(recipe, raw, folder, budget, timeout)
        _write_rows(rows, folder / "search.csv")
        return rows
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(constant_liar=True)
        if method == "optuna"
        else optuna.samplers.RandomSampler()
    )
    study = optuna.create_study(
        study_name=recipe.name,
        storage=open_storage(storage, folder),
        sampler=sampler,
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        direction="minimize",
        load_if_exists=True,
    )
    study.set_user_attr("method", method)
    for number in _fail_orphans(study):
        print(f"trial {number} was left running by a process that is gone: it runs again")

    def objective(trial: Any) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        values = trial_values(trial, recipe)
        run = trial_recipe(raw, values, folder, trial.number)
        trial.set_user_attr("run_dir", str(run.run_dir()))
        print(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())}")
        pruning = PruneOnValidation(trial)
        try:
            run_dir = train_recipe(run, overwrite=True, callbacks=[pruning])
        except ModelError as error:  # a drawn model that cannot be built for these data
            print(f"trial {trial.number} failed: {error}")
            raise

        if pruning.pruned:
            raise optuna.TrialPruned()
        return best_validation_loss(run_dir)

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    study.optimize(
        objective,
        n_trials=None if _count(study, finished) < budget else 0,
        timeout=timeout,
        callbacks=[MaxTrialsCallback(budget, states=finished)],
        catch=(ModelError,),  # the study goes on; the trial is marked failed
    )
    rows = trial_rows(study)
    _write_rows(rows, folder / "search.csv")
    return rows


def _count(study: Any, states: tuple) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """The study's trials, best first: number, state, validation loss, values, run, seconds."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else None
        )
        last = max(trial.intermediate_values.items(), default=(None, None))[1]
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "val_loss": trial.value if trial.value is not None else last,
                **{key: value for key, value in trial.params.items()},
                "run": trial.user_attrs.get("run_dir", ""),
                "seconds": round(seconds, 1) if seconds is not None else None,
            }
        )
    done = [r for r in rows if r["state"] == "complete"]
    rest = [r for r in rows if r["state"] != "complete"]
    return sorted(done, key=lambda r: r["val_loss"]) + sorted(rest, key=lambda r: r["trial"])


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    from esszoo.fileio import atomic_path

    columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
