"""Encoder-decoders: image-to-image networks for fields (autoencoders, UNets, DeepLab,
partial-convolution networks for missing data)."""

from esszoo.models.encoder_decoder import (
    autoencoder,  # noqa: F401
    deeplab,  # noqa: F401
    pconv_unet,  # noqa: F401
    unet,  # noqa: F401
    unet3d,  # noqa: F401
)
