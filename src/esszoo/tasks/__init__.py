"""Tasks: the science of a run (batch contract, loss, metrics, baseline), one module each."""

from __future__ import annotations

import importlib

from esszoo.errors import RecipeError, choices_hint

_TASKS = {
    "regression": "esszoo.tasks.regression:RegressionTask",
    "classification": "esszoo.tasks.classification:ClassificationTask",
    "inpainting": "esszoo.tasks.inpainting:InpaintingTask",
    "segmentation": "esszoo.tasks.segmentation:SegmentationTask",
    "translation": "esszoo.tasks.translation:TranslationTask",
}


def task_class(name: str) -> type:
    """The task class registered as `name` (imported on demand: tasks import Lightning)."""
    if name not in _TASKS:
        raise RecipeError(f"unknown task '{name}'", choices_hint(name, _TASKS))
    module, cls = _TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def task_names() -> list[str]:
    return sorted(_TASKS)
