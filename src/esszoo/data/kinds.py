"""Data kinds: how a recipe's data section becomes train, validation and test tables.

A data kind is a builder registered with the options it reads, in the module that builds
it: a table of points (`tabular.py`), fields with one class each or with target fields
of the same time steps (`fields.py`), windows of frames (`windows.py`), windows with the
boxed objects of a later frame (`objects.py`), fields under gap patterns
(`inpainting.py`), fields left on disk (`stream.py`), windows over series (`series.py`),
columns of profiles (`columns.py`). A task names the kinds it learns from
(`Task.data_kinds`) and which one a data section asks for (`Task.data_kind`);
`esszoo.run.build_data` looks the builder up. A new kind is one module that calls
`register_data_kind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from esszoo.errors import RecipeError, choices_hint
from esszoo.options import DataOptions

BUILTIN_MODULES = (
    "esszoo.data.tabular",
    "esszoo.data.fields",
    "esszoo.data.windows",
    "esszoo.data.objects",
    "esszoo.data.inpainting",
    "esszoo.data.stream",
    "esszoo.data.series",
    "esszoo.data.columns",
)


@dataclass(frozen=True)
class DataContext:
    """What a builder needs beyond its options: the run's seed (shuffles and gap draws)
    and whether the model takes volumes (level or time, lat, lon) rather than fields."""

    seed: int = 0
    volume: bool = False


@dataclass(frozen=True)
class DataKind:
    """A registered builder: `build(dataset, options, context) -> SplitData`."""

    name: str
    options: type[DataOptions]
    build: Callable[..., Any]
    summary: str


_KINDS: dict[str, DataKind] = {}
_loaded = False


def register_data_kind(
    name: str, options: type[DataOptions], summary: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `build` as the data kind `name`, reading the data section as `options`."""

    def decorate(build: Callable[..., Any]) -> Callable[..., Any]:
        known = _KINDS.get(name)
        if known is not None and known.build.__qualname__ != build.__qualname__:
            raise RuntimeError(f"data kind '{name}' is registered twice")
        if not (isinstance(options, type) and issubclass(options, DataOptions)):
            raise RuntimeError(f"data kind '{name}': options must subclass DataOptions")
        if any(k.options is options and k.name != name for k in _KINDS.values()):
            raise RuntimeError(f"data kind '{name}': its options class is another kind's")
        _KINDS[name] = DataKind(name, options, build, summary)
        return build

    return decorate


def data_kinds() -> dict[str, DataKind]:
    """Every registered data kind by name (the built-in ones imported on first use)."""
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True
    return dict(_KINDS)


def data_kind(name: str) -> DataKind:
    """The data kind registered as `name`."""
    kinds = data_kinds()
    if name not in kinds:
        raise RecipeError(f"unknown data kind '{name}'", choices_hint(name, kinds))
    return kinds[name]


def kind_of(options: DataOptions) -> DataKind:
    """The data kind whose options `options` are."""
    for kind in data_kinds().values():
        if type(options) is kind.options:
            return kind
    raise RecipeError(f"no data kind reads options of type {type(options).__name__}")
