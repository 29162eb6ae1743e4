"""Convolutional networks: the classification lineage and fully convolutional nets."""

from esszoo.models.cnn import (
    alexnet,  # noqa: F401
    densenet,  # noqa: F401
    fcn,  # noqa: F401
    googlenet,  # noqa: F401
    lenet,  # noqa: F401
    resnet,  # noqa: F401
    vgg,  # noqa: F401
)
