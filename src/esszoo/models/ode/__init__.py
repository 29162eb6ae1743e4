"""Neural ODEs: networks whose depth is continuous, solved by torchdiffeq."""

from esszoo.models.ode import odenet  # noqa: F401
