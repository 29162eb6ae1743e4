"""Tasks: the science of a run (options, data kind, loss, metrics, baselines), one file each.

A task is a `Task` subclass registered with `@register_task` in a module of its own; the
built-in ones are imported on first use (they import Lightning). Your own task is a file
too: import it before the recipe is read (the recipe's ``imports: [my_task]``, or
``import my_task`` in Python) and name it in ``task.name``.
"""

from __future__ import annotations

import importlib
from typing import Any

from esszoo.errors import RecipeError, choices_hint

BUILTIN_MODULES = (
    "esszoo.tasks.regression",
    "esszoo.tasks.classification",
    "esszoo.tasks.segmentation",
    "esszoo.tasks.detection",
    "esszoo.tasks.translation",
    "esszoo.tasks.inpainting",
    "esszoo.tasks.forecasting",
    "esszoo.tasks.column_emulation",
    "esszoo.tasks.generation",
)
DEFAULT_TASK = "regression"

_TASKS: dict[str, type] = {}
_loaded = False


def register_task(cls: type) -> type:
    """Class decorator: register a `Task` subclass under its `name`."""
    from esszoo.options import TaskOptions
    from esszoo.tasks.base import Task

    name = getattr(cls, "name", None)
    if not (isinstance(cls, type) and issubclass(cls, Task)) or not isinstance(name, str):
        raise RuntimeError(f"{cls!r}: a task is a subclass of esszoo.tasks.base.Task with a name")
    if not issubclass(cls.Options, TaskOptions):
        raise RuntimeError(f"task '{name}': its Options must subclass esszoo.options.TaskOptions")
    if not cls.data_kinds:
        raise RuntimeError(f"task '{name}' names no data kind (data_kinds)")
    known = _TASKS.get(name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise RuntimeError(f"task '{name}' is registered twice")
    _TASKS[name] = cls
    return cls


def tasks() -> dict[str, Any]:
    """Every registered task class by name (the built-in ones imported on first use)."""
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True
    return dict(_TASKS)


def task_class(name: str) -> Any:
    """The task class registered as `name`."""
    known = tasks()
    if name not in known:
        raise RecipeError(f"unknown task '{name}'", choices_hint(name, known))
    return known[name]


def task_names() -> list[str]:
    return sorted(tasks())
