"""Neural ODEs: networks whose depth or time is continuous, solved by torchdiffeq."""

from esszoo.models.ode import latent_ode, ode_rnn, odenet  # noqa: F401
