"""Blocks shared by the models of the zoo."""

from esszoo.layers.activations import activation_layer
from esszoo.layers.grid import check_grid
from esszoo.layers.grid_padding import pad_to_multiple
from esszoo.layers.padding import PADDINGS, earth_pad, set_padding
from esszoo.layers.partial_conv import MaskedBatchNorm2d, PartialConv2d, PartialConv3d

__all__ = [
    "PADDINGS",
    "MaskedBatchNorm2d",
    "PartialConv2d",
    "PartialConv3d",
    "activation_layer",
    "check_grid",
    "earth_pad",
    "pad_to_multiple",
    "set_padding",
]
