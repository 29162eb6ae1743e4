"""Fully connected networks: learned replacements of hand-written physics."""

from esszoo.models.fully_connected import mlp  # noqa: F401
