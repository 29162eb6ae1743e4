"""Activation functions by name, so that recipes and cards can name them."""

from __future__ import annotations

from torch import nn

from esszoo.errors import ModelError, choices_hint

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


def activation_layer(name: str) -> nn.Module:
    """A new activation module from its name; ``"leaky_relu:0.3"`` sets the negative slope,
    ``"gelu:tanh"`` is GELU's tanh approximation (as GPT-2 computes it)."""
    base, _, argument = name.partition(":")
    if base not in _ACTIVATIONS:
        raise ModelError(f"unknown activation '{name}'", choices_hint(base, _ACTIVATIONS))
    if not argument:
        return _ACTIVATIONS[base]()
    if base == "gelu" and argument == "tanh":
        return nn.GELU(approximate="tanh")
    if base != "leaky_relu":
        raise ModelError(f"activation '{base}' takes no argument (got '{name}')")
    try:
        return nn.LeakyReLU(float(argument))
    except ValueError:
        raise ModelError(
            f"activation '{name}': the negative slope '{argument}' is not a number",
            "write it like 'leaky_relu:0.3'",
        ) from None
