"""Networks found by architecture search, retrained: the cells of DARTS (and ENAS), and the
layer-wise children of NAS with reinforcement learning."""

from esszoo.models.nas import darts, nas_cnn  # noqa: F401
