"""Blocks shared by the models of the zoo."""

from esszoo.layers.activations import activation_layer
from esszoo.layers.grid import check_grid
from esszoo.layers.padding import PADDINGS, earth_pad, set_padding

__all__ = ["PADDINGS", "activation_layer", "check_grid", "earth_pad", "set_padding"]
