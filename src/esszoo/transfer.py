"""Start a model from a checkpoint trained on other variables.

Earth data sets differ in their variables, not only in their number: a network trained on
(temperature, humidity) should, on (humidity, pressure), keep what it learned of humidity.
So the first layer is adapted by variable name: the kernels of variables the checkpoint
knows are copied to their new positions; variables it does not know start small (the
fresh initialization times 0.01), so the network first behaves as it did on the variables
it knows. RGB-style tiling of kernels across channels is not done: variables are not
colours. A variable the new data give several times (the past frames of a window) gets the
kernel of the checkpoint divided among its copies, so that a field that does not change
in time meets the network as it did. Every other tensor whose shape is unchanged is
copied; tensors whose shape changed (e.g. a classifier for another number of classes) keep
their fresh values.

A checkpoint may fill a part of the new network: a classifier's ResNet becomes a
detector's or a segmenter's backbone. Its tensors are then looked for under the
submodule (``backbone.``, ...) where most of them find a tensor of their name and shape.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from esszoo.checkpoint import read_description
from esszoo.data.variables import Variable
from esszoo.errors import CheckpointError

NEW_VARIABLE_SCALE = 0.01


def init_from_checkpoint(
    net: torch.nn.Module, path: str | Path, inputs: list[Variable]
) -> dict[str, list[str]]:
    """Load the weights of checkpoint `path` into `net`, whose inputs are `inputs`.

    Returns what was done: {"copied": [...], "adapted": [...], "kept_fresh": [...]}.
    """
    record, weights_path = read_description(path)
    old_names = [v["name"] for v in record.get("inputs", [])]
    if not old_names:
        raise CheckpointError(f"the checkpoint '{path}' does not name its input variables")
    new = net.state_dict()
    old = _placed(load_file(weights_path), new, net)
    first = _first_layer(new)
    report: dict[str, list[str]] = {"copied": [], "adapted": [], "kept_fresh": []}
    for key, tensor in new.items():
        if key == first and key in old and old[key].shape[1] == len(old_names):
            new[key] = _adapt(tensor, old[key], old_names, [v.name for v in inputs])
            report["adapted"].append(key)
        elif key in old and old[key].shape == tensor.shape:
            new[key] = old[key]
            report["copied"].append(key)
        else:
            report["kept_fresh"].append(key)
    net.load_state_dict(new)
    return report


def _placed(
    old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], net: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors named as in `net`: under the submodule (or the network
    itself) where most of them match a tensor of `net` in name and shape."""

    def matches(prefix: str) -> int:
        return sum(
            1 for k, v in old.items() if prefix + k in new and new[prefix + k].shape == v.shape
        )

    prefixes = [""] + [f"{name}." for name, _ in net.named_modules() if name]
    best = max(prefixes, key=matches)  # the first of equals: the network itself
    return {best + key: tensor for key, tensor in old.items()}


def _first_layer(state: dict[str, torch.Tensor]) -> str | None:
    """The first weight with an input-channel dimension (conv or linear), in module order."""
    return next((key for key, value in state.items() if value.dim() >= 2), None)


def _adapt(
    fresh: torch.Tensor, trained: torch.Tensor, old_names: list[str], new_names: list[str]
) -> torch.Tensor:
    # weights (out, in, ...): column j of the new layer comes from the old column of the same
    # variable (shared among the copies of a variable given more than once), or is the
    # fresh column scaled down
    weight = fresh * NEW_VARIABLE_SCALE
    for j, name in enumerate(new_names):
        if name in old_names:
            weight[:, j] = trained[:, old_names.index(name)] / new_names.count(name)
    return weight
