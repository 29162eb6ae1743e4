"""Encoder-decoders: image-to-image networks for fields (autoencoders, UNets, DeepLab,
partial-convolution networks for missing data)."""
