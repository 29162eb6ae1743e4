"""The errors esszoo raises for a user's mistakes.

Each error reads as one line: what is wrong, where, and how to fix it. The CLI prints it
and exits with status 2; a traceback is reserved for esszoo's own bugs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EsszooError(Exception):
    """A user error: bad input, not a bug in esszoo."""

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(f"{what}; {fix}" if fix else what)


class DataError(EsszooError):
    """A data file or variable cannot be used as asked."""


class RecipeError(EsszooError):
    """A recipe or a key=value override is not valid."""


class ModelError(EsszooError):
    """An unknown model, or arguments a model does not take."""


class CheckpointError(EsszooError):
    """A checkpoint is missing, corrupt, or does not fit its model."""


class RunError(EsszooError):
    """A run directory cannot be written, resumed or read."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """The nearest valid choice to `name`, phrased for an error message, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else ""


def choices_hint(name: str, choices: Iterable[str], limit: int = 12) -> str:
    """`did you mean` if a choice is close, else the list of valid choices."""
    choices = sorted(str(c) for c in choices)
    near = did_you_mean(name, choices)
    if near:
        return near
    shown = ", ".join(choices[:limit]) + (", ..." if len(choices) > limit else "")
    return f"valid choices: {shown}"
