"""The architectures of the zoo, one file each, grouped by family.

Importing this package registers every model; `esszoo.list_models()` does it on demand.
"""

from esszoo.models import (  # noqa: F401
    cnn,
    detection,
    encoder_decoder,
    fully_connected,
    generative,
    nas,
    ode,
    sequence,
)
