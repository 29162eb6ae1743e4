"""The YAML recipe: everything a run needs, validated before anything runs.

A recipe names a model, its data, its task and the trainer settings. The task section is
validated against the options of the task it names (each task module defines them), and
the data section against the options of the data kind that task learns from (each data
kind defines them). Unknown keys and values of the wrong type are errors that name the
key and the nearest valid one, or the task it belongs to, so a typo never silently falls
back to a default. ``key=value`` overrides on the command line (``trainer.max_epochs=5``)
are applied before validation; ``esszoo recipe-schema`` writes the same rules as a JSON
schema for editors.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from esszoo.errors import RecipeError, did_you_mean
from esszoo.options import (
    DataOptions,
    Options,
    SearchOptions,
    TaskOptions,
    TrainerOptions,
    UncertaintyOptions,
)


class ModelOptions(BaseModel):
    """The model's registered name; every other key is a constructor argument."""

    model_config = ConfigDict(extra="allow")
    name: str

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Recipe(Options):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    imports: list[str] = Field(
        default_factory=list,
        description="modules to import before the recipe is read (your own tasks, data kinds "
        "or models), from the working directory or installed",
    )
    model: ModelOptions
    data: SerializeAsAny[DataOptions]
    task: SerializeAsAny[TaskOptions]
    trainer: TrainerOptions = TrainerOptions()
    init_from: str | None = Field(
        default=None,
        description="a run or checkpoint to start from; the first layer is adapted by "
        "variable name",
    )
    uncertainty: UncertaintyOptions | None = Field(
        default=None,
        description="draws of every prediction and their scores (esszoo.uncertainty): "
        "{method: bayes or mc_dropout, samples: 30}",
    )
    search: SearchOptions | None = Field(
        default=None,
        description="what `esszoo search` varies (esszoo.automl): {space: {trainer.lr: "
        "{low: 1.0e-4, high: 1.0e-2, log: true}, model.name: [unet, deeplabv3plus]}}",
    )
    out_dir: str = "runs"

    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# -- validation ------------------------------------------------------------------------------


def validate(raw: dict[str, Any], where: str = "the recipe") -> Recipe:
    """The recipe `raw` validated: its task section against the task's options, its data
    section against the options of the data kind the task learns from."""
    from esszoo.data.kinds import data_kind
    from esszoo.tasks import DEFAULT_TASK, task_class

    for key in raw:
        if key not in Recipe.model_fields:
            raise RecipeError(
                f"unknown recipe key '{key}' in {where}",
                did_you_mean(str(key), Recipe.model_fields)
                or f"valid keys here: {', '.join(Recipe.model_fields)}",
            )
    import_modules(raw.get("imports", []), where)
    task_section = _section(raw, "task", where, default={})
    name = task_section.get("name", DEFAULT_TASK)
    if not isinstance(name, str):
        raise RecipeError(f"recipe key 'task.name' in {where} must be a task name (got {name!r})")
    task = task_class(name)
    task_options = _validated(task.Options, task_section | {"name": name}, "task", where, task)
    data_section = _section(raw, "data", where)
    kind = data_kind(task.data_kind(data_section))
    data_options = _validated(kind.options, data_section, "data", where, task, kind.name)
    try:
        return Recipe.model_validate(raw | {"task": task_options, "data": data_options})
    except ValidationError as error:
        raise _explain(error, where, Recipe, ()) from None


def _section(
    raw: dict[str, Any], key: str, where: str, default: dict | None = None
) -> dict[str, Any]:
    section = raw.get(key, default)
    if section is None and default is None:
        raise RecipeError(f"the recipe key '{key}' is missing in {where}", "add it")
    if not isinstance(section, dict):
        raise RecipeError(
            f"recipe key '{key}' in {where} must be a section of keys (got {section!r})"
        )
    return section


def _validated(
    schema: type[BaseModel],
    section: dict[str, Any],
    prefix: str,
    where: str,
    task: Any,
    kind: str | None = None,
) -> BaseModel:
    try:
        return schema.model_validate(section)
    except ValidationError as error:
        raise _explain(error, where, schema, (prefix,), task, kind) from None


def _explain(
    error: ValidationError,
    where: str,
    schema: type[BaseModel],
    prefix: tuple[str, ...],
    task: Any = None,
    kind: str | None = None,
) -> RecipeError:
    """One line for a validation error of the section `prefix`, read as `schema`."""
    errors = error.errors()
    # An unknown key explains the errors it causes (a misspelt section is also "missing").
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    location = tuple(str(part) for part in first["loc"])
    key = ".".join((*prefix, *location))
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        valid = valid_keys(schema, location)
        here = f"valid keys here: {', '.join(valid)}"
        elsewhere = _elsewhere(prefix, location, task, kind) if task is not None else ""
        if elsewhere:
            return RecipeError(
                f"recipe key '{key}' in {where} {elsewhere}{more}", f"remove it; {here}"
            )
        return RecipeError(
            f"unknown recipe key '{key}' in {where}{more}",
            did_you_mean(location[-1], [*valid, *_keys_elsewhere(prefix, location)]) or here,
        )
    if first["type"] == "missing":
        hint = _description(schema, location)
        return RecipeError(
            f"the recipe key '{key}' is missing in {where}{more}",
            f"add it ({hint})" if hint else "add it",
        )
    value = first.get("input")
    hint = _description(schema, location)
    return RecipeError(
        f"recipe key '{key}' in {where}: {_lower_first(first['msg'])} (got {value!r}){more}",
        f"fix the value ({hint})" if hint else "fix the value in the recipe or the override",
    )


def _elsewhere(
    prefix: tuple[str, ...], location: tuple[str, ...], task: Any, kind: str | None
) -> str:
    """Where an unknown key belongs instead, as the end of a sentence: another task's
    options, or the data of another task (or of this task's other data kinds); '' if
    nowhere."""
    from esszoo.data.kinds import data_kinds
    from esszoo.tasks import tasks

    if prefix == ("task",):
        owners = [n for n, t in tasks().items() if t is not task and _reads(t.Options, location)]
        return f"is an option of {', '.join(owners)}, not of {task.name}" if owners else ""
    readers = [n for n, k in data_kinds().items() if n != kind and _reads(k.options, location)]
    own = f"{task.name}'s {_summary(kind)}"
    mine = [_summary(n) for n in readers if n in task.data_kinds]
    if mine:
        return f"is not read by {own}, only by its {' and '.join(mine)}"
    owners = [n for n, t in tasks().items() if any(r in t.data_kinds for r in readers)]
    return f"is an option of the data of {', '.join(owners)}, not of {own}" if owners else ""


def _keys_elsewhere(prefix: tuple[str, ...], location: tuple[str, ...]) -> set[str]:
    """The keys of every task (or data kind) at the same place, for 'did you mean'."""
    from esszoo.data.kinds import data_kinds
    from esszoo.tasks import tasks

    if prefix == ("task",):
        schemas = [t.Options for t in tasks().values()]
    else:
        schemas = [k.options for k in data_kinds().values()]
    return {key for schema in schemas for key in valid_keys(schema, location)}


def _reads(schema: type[BaseModel], location: tuple[str, ...]) -> bool:
    return location[-1] in valid_keys(schema, location)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _summary(kind: str | None) -> str:
    from esszoo.data.kinds import data_kind

    return data_kind(kind).summary if kind else "data"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (unwrapping `X | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            found = _model_of(argument)
            if found is not None:
                return found
    return None


def _section_model(schema: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model of the section at `path` (a path of keys) below `schema`."""
    model: type[BaseModel] | None = schema
    for key in path:
        field = model.model_fields.get(key) if model else None
        model = _model_of(field.annotation) if field else None
    return model


def valid_keys(schema: type[BaseModel], location: tuple[str, ...]) -> list[str]:
    """The keys valid beside the last key of `location` in `schema`."""
    model = _section_model(schema, location[:-1])
    return list(model.model_fields) if model else []


def _description(schema: type[BaseModel], location: tuple[str, ...]) -> str:
    if not location:
        return ""
    model = _section_model(schema, location[:-1])
    field = model.model_fields.get(location[-1]) if model else None
    return (field.description or "") if field else ""


def import_modules(names: Any, where: str) -> None:
    """Import the modules a recipe names, so that the tasks, data kinds and models they
    register are known; the working directory is searched first."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise RecipeError(
            f"recipe key 'imports' in {where} must be a list of module names (got {names!r})",
            "e.g. imports: [my_task]",
        )
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and name.startswith(error.name):
                raise RecipeError(
                    f"no module '{name}' to import (imports of {where})",
                    "give a module in the working directory (my_task for my_task.py) or an "
                    "installed one",
                ) from None
            raise _import_failure(name, where, error) from None
        except Exception as error:  # the module's own code failed: say where, in one line
            raise _import_failure(name, where, error) from None


def _import_failure(name: str, where: str, error: Exception) -> RecipeError:
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return RecipeError(
        f"module '{name}' (imports of {where}) fails on import: {type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''} ({frame.filename}:{frame.lineno})",
        "fix the module",
    )


# -- reading ---------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value as YAML (numbers, booleans, lists, null), else as text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 as text
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``dotted.key=value`` pairs into a copy of the raw recipe."""
    result = yaml.safe_load(yaml.safe_dump(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RecipeError(
                f"override '{item}' is not of the form key=value", "e.g. trainer.max_epochs=5"
            )
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"override '{item}': '{part}' is not a section of the recipe")
            node = child
        node[parts[-1]] = parse_value(text)
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no recipe file '{path}'", "check the path (recipes/ holds examples)")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())[:160]
        raise RecipeError(f"'{path}' is not valid YAML ({reason})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"'{path}' does not hold a recipe (a mapping of keys)")
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate the recipe at `path`."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    return validate(raw, where=str(path))


# -- the JSON schema, for editors ------------------------------------------------------------


def recipe_schema() -> dict[str, Any]:
    """The recipe's JSON schema: the shared sections, then for each task its own options
    and the options of the data kinds it learns from (draft 2020-12)."""
    from pydantic.json_schema import models_json_schema

    from esszoo.data.kinds import data_kinds
    from esszoo.tasks import DEFAULT_TASK, tasks

    known_tasks, kinds = tasks(), data_kinds()
    models = [Recipe, *(t.Options for t in known_tasks.values())]
    models += [k.options for k in kinds.values()]
    refs, definitions = models_json_schema([(m, "validation") for m in models])

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    top = definitions["$defs"].pop("Recipe")
    top["properties"]["task"] = {
        "type": "object",
        "properties": {"name": {"enum": sorted(known_tasks)}},
        "description": "the task and its options",
    }
    top["properties"]["data"] = {"type": "object", "description": "the data and how to split it"}
    top["required"] = [key for key in top["required"] if key != "task"]  # default: regression
    rules = []
    for name, task in known_tasks.items():
        task_name: dict[str, Any] = {"properties": {"name": {"const": name}}}
        named: dict[str, Any] = {"properties": {"task": task_name}}
        if name != DEFAULT_TASK:  # a recipe without a task section (or name) is a regression
            task_name["required"] = ["name"]
            named["required"] = ["task"]
        data = [ref(kinds[k].options) for k in task.data_kinds if k in kinds]
        rules.append(
            {
                "if": named,
                "then": {"properties": {"task": ref(task.Options), "data": {"anyOf": data}}},
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **top,
        "title": "esszoo recipe",
        "allOf": rules,
        "$defs": definitions["$defs"],
    }
