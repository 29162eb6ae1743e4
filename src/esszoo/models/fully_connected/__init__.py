"""Fully connected networks: learned replacements of hand-written physics."""

from esszoo.models.fully_connected import bnn_mlp, mlp  # noqa: F401
