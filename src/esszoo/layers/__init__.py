"""Blocks shared by the models of the zoo."""

from esszoo.layers.activations import activation_layer

__all__ = ["activation_layer"]
