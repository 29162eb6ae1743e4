"""The model registry: every architecture of the zoo, with the card that describes it.

In the manner of timm, a builder is registered by decorator::

    @register_model(family="fully_connected", tasks=("regression",), paper=Paper(...))
    def mlp(*, in_channels: int, out_channels: int, depth: int = 4, ...) -> nn.Module: ...

and built by name with ``create_model("mlp", in_channels=3, out_channels=1)``. Constructor
arguments are keyword-only and share names across the zoo: ``in_channels``, then
``num_classes`` for classifiers or ``out_channels`` for dense and vector outputs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from esszoo.errors import ModelError, choices_hint, did_you_mean


@dataclass(frozen=True)
class Paper:
    """The publication a model follows."""

    authors: str
    year: int
    title: str
    venue: str = ""
    arxiv: str = ""
    doi: str = ""

    def cite(self) -> str:
        link = f"arXiv:{self.arxiv}" if self.arxiv else (f"doi:{self.doi}" if self.doi else "")
        parts = [f"{self.authors} ({self.year}). {self.title}.", self.venue, link]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class ModelCard:
    """What a model is, where it comes from, and how big its reference configuration is.

    ``reference`` holds the constructor arguments of the configuration the paper (or the
    canonical implementation) reports, and ``reference_params`` its trainable parameter
    count. ``small`` and ``example_input`` give a cheap configuration and an input shape
    for the contract tests; ``min_size`` is the smallest grid (H, W) a field model takes
    (it raises a clear error below); ``inputs`` names the forward's arguments: ("x",), or
    ("x", "mask") for models that take a validity mask (1 valid, 0 missing) of the shape of
    x, such as partial-convolution networks. ``export`` names the formats the model exports
    to; where one cannot work, ``export_note`` says why.
    """

    name: str
    family: str
    tasks: tuple[str, ...]
    summary: str
    paper: Paper | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    reference_params: int | None = None
    reference_note: str = ""
    small: dict[str, Any] = field(default_factory=dict)
    example_input: tuple[int, ...] = ()
    min_size: tuple[int, ...] = ()
    inputs: tuple[str, ...] = ("x",)
    export: tuple[str, ...] = ("torchscript", "onnx")
    export_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        data = dict(data)
        if data.get("paper"):
            data["paper"] = Paper(**data["paper"])
        for key in ("tasks", "example_input", "min_size", "inputs", "export"):
            if key in data:
                data[key] = tuple(data[key])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


_BUILDERS: dict[str, Callable[..., Any]] = {}
_CARDS: dict[str, ModelCard] = {}
# Families are imported on first use, so `esszoo --help` stays fast.
_FAMILY_MODULES = ("esszoo.models",)
_loaded = False


def register_model(
    *,
    family: str,
    tasks: tuple[str, ...],
    paper: Paper | None = None,
    name: str | None = None,
    reference: dict[str, Any] | None = None,
    reference_params: int | None = None,
    reference_note: str = "",
    small: dict[str, Any] | None = None,
    example_input: tuple[int, ...] = (),
    min_size: tuple[int, ...] = (),
    inputs: tuple[str, ...] = ("x",),
    export: tuple[str, ...] = ("torchscript", "onnx"),
    export_note: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model builder (a function or an ``nn.Module`` class) under its name."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        model_name = name or builder.__name__
        if model_name in _BUILDERS:
            raise RuntimeError(f"model '{model_name}' is registered twice")
        _check_keyword_only(model_name, builder)
        doc = inspect.getdoc(builder) or ""
        _BUILDERS[model_name] = builder
        _CARDS[model_name] = ModelCard(
            name=model_name,
            family=family,
            tasks=tuple(tasks),
            summary=doc.splitlines()[0] if doc else "",
            paper=paper,
            reference=dict(reference or {}),
            reference_params=reference_params,
            reference_note=reference_note,
            small=dict(small or {}),
            example_input=tuple(example_input),
            min_size=tuple(min_size),
            inputs=tuple(inputs),
            export=tuple(export),
            export_note=export_note,
        )
        return builder

    return decorate


def _check_keyword_only(name: str, builder: Callable[..., Any]) -> None:
    target = builder.__init__ if inspect.isclass(builder) else builder
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(builder):
        params = params[1:]
    positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    if positional:
        raise RuntimeError(f"model '{name}': arguments {positional} must be keyword-only")


def _load_families() -> None:
    global _loaded
    if not _loaded:
        for module in _FAMILY_MODULES:
            importlib.import_module(module)
        _loaded = True


def _builder(name: str) -> Callable[..., Any]:
    _load_families()
    if name not in _BUILDERS:
        raise ModelError(
            f"unknown model '{name}'",
            f"{choices_hint(name, _BUILDERS)} (list them with `esszoo models`)",
        )
    return _BUILDERS[name]


def model_arguments(name: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments of a model, by name."""
    builder = _builder(name)
    target = builder.__init__ if inspect.isclass(builder) else builder
    params = dict(inspect.signature(target).parameters)
    params.pop("self", None)
    return params


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the model registered as `name` with keyword arguments `kwargs`.

    ``bayesian`` (any model): a dict of `esszoo.layers.bayesian.to_bayesian`'s options
    ({} for its defaults), which makes the model's linear and convolutional layers Bayes
    by Backprop layers."""
    builder = _builder(name)
    params = model_arguments(name)
    bayesian = kwargs.get("bayesian")
    for key in [key for key in kwargs if key != "bayesian"]:
        if key not in params:
            hint = did_you_mean(key, params) or f"it takes: {', '.join(params)}"
            raise ModelError(f"model '{name}' has no argument '{key}'", hint)
    missing = [
        p
        for p, spec in params.items()
        if spec.default is inspect.Parameter.empty and p not in kwargs
    ]
    if missing:
        raise ModelError(f"model '{name}' needs the argument(s) {', '.join(missing)}")
    model = builder(**{key: value for key, value in kwargs.items() if key != "bayesian"})
    if bayesian is not None:
        _make_bayesian(name, model, bayesian)
    # Recorded on the module (as timm records `pretrained_cfg`) so that `esszoo.save` can
    # write a self-describing checkpoint of a model built here.
    model.esszoo_spec = {"name": name, "arguments": dict(kwargs)}
    return model


def _make_bayesian(name: str, model: Any, options: Any) -> None:
    from esszoo.layers.bayesian import to_bayesian

    taken = dict(inspect.signature(to_bayesian).parameters)
    taken.pop("net")
    if not isinstance(options, dict) or any(key not in taken for key in options):
        unknown = [key for key in options if key not in taken] if isinstance(options, dict) else []
        raise ModelError(
            f"model '{name}': bayesian takes a mapping of {', '.join(taken)}"
            + (f", not {', '.join(unknown)}" if unknown else f", got {options!r}"),
            "e.g. bayesian: {method: flipout, prior_sigma: 0.1} ({} for the defaults)",
        )
    to_bayesian(model, **options)


def list_models(task: str | None = None, family: str | None = None) -> list[str]:
    """Names of the registered models, optionally only those for a task or of a family."""
    _load_families()
    return sorted(
        name
        for name, card in _CARDS.items()
        if (task is None or task in card.tasks) and (family is None or card.family == family)
    )


def model_card(name: str) -> ModelCard:
    """The card of the model registered as `name`."""
    _builder(name)
    return _CARDS[name]


def count_parameters(name: str, **kwargs: Any) -> int:
    """Trainable parameters of a model, counted on the meta device (no weights allocated)."""
    import torch

    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def takes_mask(net: Any) -> bool:
    """Whether a zoo model takes the validity mask as an argument: its card says so, or it
    was built with the mask-aware switch (``partial_conv=True``)."""
    spec = getattr(net, "esszoo_spec", None)
    by_card = bool(spec) and "mask" in model_card(spec["name"]).inputs
    return by_card or bool(getattr(net, "partial_conv", False))
