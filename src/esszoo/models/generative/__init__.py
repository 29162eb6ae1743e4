"""Generative models: networks that draw new fields from a learned distribution
(variational autoencoders, GANs) and conditional GANs that map fields to fields."""

from esszoo.models.generative import dcgan, vae  # noqa: F401
