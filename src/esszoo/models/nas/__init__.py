"""Networks found by architecture search, retrained: the cells of DARTS."""

from esszoo.models.nas import darts  # noqa: F401
