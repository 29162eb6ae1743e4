"""esszoo: the deep-learning model zoo for Earth system science.

    import esszoo
    esszoo.list_models(task="regression")
    model = esszoo.create_model("mlp", in_channels=3, out_channels=1)
    run = esszoo.train("recipes/emulate_precip.yaml", trainer={"max_epochs": 5})
    predictions = esszoo.predict(run, dataset)   # an xarray.Dataset in, one out
    esszoo.evaluate(run)                         # the scores beside the baselines
    model = esszoo.load("runs/emulate_precip")   # physical units in, physical units out

Heavy modules (torch, Lightning, xarray) are imported on first use, so that the command
line starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "esszoo.registry",
    "list_models": "esszoo.registry",
    "model_card": "esszoo.registry",
    "count_parameters": "esszoo.registry",
    "register_model": "esszoo.registry",
    "load": "esszoo.checkpoint",
    "save": "esszoo.checkpoint",
    "train": "esszoo.api",
    "predict": "esszoo.api",
    "evaluate": "esszoo.api",
    "Run": "esszoo.api",
    "EsszooError": "esszoo.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'esszoo' has no attribute '{name}'")
