"""Convolutional autoencoder: a field squeezed through a narrow code and rebuilt from it.

Papers: Hinton & Salakhutdinov (2006), "Reducing the Dimensionality of Data with Neural
Networks", Science 313, 504-507 (doi:10.1126/science.1127647): an encoder maps the data
to a code of few units, a decoder maps the code back, and both are trained to make the
reconstruction equal the input, so the code must keep what matters (their 784-1000-500-
250-30 network, fully connected, on MNIST digits). Masci, Meier, Cireşan & Schmidhuber
(2011), "Stacked Convolutional Auto-Encoders for Hierarchical Feature Extraction", ICANN
(LNCS 6791, 52-59): the same with convolutions, weights shared across locations, so the
code is itself a field and any grid can be encoded.

Two uses, one network:

- Compression. The code is ``latent_channels`` fields on a grid 2^depth times coarser in
  each direction: ``compression_ratio()`` = in_channels * H * W / (latent_channels *
  H/2^depth * W/2^depth) = in_channels * 4^depth / latent_channels numbers in for one
  number kept. ``encode`` gives the code, ``decode`` the field again; train with the
  ``translation`` task and the input as its own target.
- Denoising (Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and composing
  robust features with denoising autoencoders", ICML): train with the ``translation``
  task from noisy (or coarsened, or otherwise corrupted) fields to clean ones. The
  bottleneck keeps the large-scale structure and has no room for the noise, so the
  decoder rebuilds the clean field.

Paper to code:

- Encoder (Masci et al., Section 3: feature maps h = sigma(x * W + b)): ``depth`` stages
  (``ConvAutoencoder.encoder``), each a 3x3 convolution of stride 2 (halving the grid)
  and a 3x3 convolution, each followed by the ``activation``; ``width`` channels at the
  first stage, doubled at each later one.
- Code: a 3x3 convolution to ``latent_channels`` with no activation (``bottleneck``), as
  the code units of Hinton & Salakhutdinov's autoencoder are linear.
- Decoder (Masci et al.: the reconstruction convolves the feature maps again): the
  encoder mirrored (``expand``, then ``decoder``), each stage a 2x nearest upsampling and
  two 3x3 convolutions halving the channels back to ``width``, then a 1x1 convolution to
  ``out_channels`` (default: ``in_channels``), linear, since fields are unbounded.

Why upsampling and a convolution, not a transposed convolution: a transposed convolution
of stride 2 whose kernel the stride does not divide lays its kernel down unevenly and
paints a checkerboard on the output (Odena, Dumoulin & Olah 2016, "Deconvolution and
Checkerboard Artifacts", Distill), an artefact no physical field has; nearest upsampling
and then a convolution spreads each point evenly. And the convolution after the
upsampling is an ordinary one, so ``padding="earth"`` wraps it around in longitude like
every other.

Grids. The input is padded internally up to a multiple of 2^depth in each direction
(half before, half after; longitude with the other side of the dateline under earth
padding, `esszoo.layers.grid_padding`) and the output cropped back, so any grid works;
the code then has ceil(H / 2^depth) x ceil(W / 2^depth) points (``latent_grid``), and
``compression_ratio((H, W))`` gives the ratio on that grid.

Departures: the papers train layer by layer (Hinton & Salakhutdinov pretrain each layer
as a restricted Boltzmann machine; Masci et al. train each convolutional autoencoder of
the stack in turn) and then fine-tune; here the network is trained end to end by
backpropagation, as deep autoencoders are since. Masci et al. tie the decoder's weights
to the encoder's (flipped) and downsample with max pooling; here the decoder has its own
weights and the encoder downsamples with strided convolutions, which learn what to keep.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import activation_layer, check_grid, pad_to_multiple, set_padding
from esszoo.registry import Paper, register_model

MIN_SIZE = (1, 1)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


@register_model(
    name="autoencoder",
    family="encoder_decoder",
    tasks=("translation",),
    paper=Paper(
        authors="Hinton & Salakhutdinov",
        year=2006,
        title="Reducing the Dimensionality of Data with Neural Networks",
        venue="Science 313, 504-507",
        doi="10.1126/science.1127647",
    ),
    reference=dict(in_channels=1, out_channels=1, width=32, depth=3, latent_channels=4),
    reference_params=452_741,
    reference_note="neither paper gives a convolutional configuration to count (Hinton & "
    "Salakhutdinov's autoencoders are fully connected; Masci et al. 2011 stack single-layer "
    "convolutional autoencoders); the defaults on one variable, counted here: compression "
    "ratio 16 (1 x 4^3 / 4)",
    small=dict(in_channels=3, out_channels=3, width=4, depth=2, latent_channels=2),
    example_input=(2, 3, 20, 36),
    min_size=MIN_SIZE,
)
class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder: strided encoder, linear bottleneck, mirrored decoder.

    ``depth`` stride-2 stages of ``width``, 2 ``width``, ... channels encode the field into
    ``latent_channels`` fields 2^depth times coarser; ``out_channels`` defaults to
    ``in_channels``. For compression (``encode``, ``decode``, ``compression_ratio``) and,
    trained from noisy to clean fields, for denoising.
    """

    numbers_per_code = 1  # what the bottleneck gives for each number of the code

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int | None = None,
        width: int = 32,
        depth: int = 3,
        latent_channels: int = 4,
        activation: str = "relu",
        padding: str = "zeros",
    ):
        super().__init__()
        if depth < 1 or width < 1 or latent_channels < 1:
            raise ModelError(
                f"autoencoder needs depth, width and latent_channels >= 1, got {depth}, "
                f"{width} and {latent_channels}"
            )
        self.in_channels = in_channels
        self.depth = depth
        self.latent_channels = latent_channels
        self.wrap_longitude = padding == "earth"
        widths = [width * 2**stage for stage in range(depth)]

        encoder = []
        for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True):
            encoder += [conv3x3(c_in, c_out, stride=2), activation_layer(activation)]
            encoder += [conv3x3(c_out, c_out), activation_layer(activation)]
        self.encoder = nn.Sequential(*encoder)
        # linear code (a variational autoencoder's: a mean and a log-variance per number)
        self.bottleneck = conv3x3(widths[-1], latent_channels * self.numbers_per_code)

        self.expand = nn.Sequential(
            conv3x3(latent_channels, widths[-1]), activation_layer(activation)
        )
        decoder = []
        for c_in, c_out in zip(widths[::-1], [*widths[-2::-1], width], strict=True):
            decoder += [nn.Upsample(scale_factor=2.0, mode="nearest")]
            decoder += [conv3x3(c_in, c_out), activation_layer(activation)]
            decoder += [conv3x3(c_out, c_out), activation_layer(activation)]
        self.decoder = nn.Sequential(*decoder)
        self.head = nn.Conv2d(width, out_channels or in_channels, kernel_size=1)
        set_padding(self, padding)

    def latent_grid(self, height: int, width: int) -> tuple[int, int]:
        """The code's grid for an input grid of `height` x `width` points."""
        stride = 2**self.depth
        return math.ceil(height / stride), math.ceil(width / stride)

    def compression_ratio(self, grid: tuple[int, int] | None = None) -> float:
        """Input numbers per code number: in_channels * 4^depth / latent_channels, or, for
        a `grid` (H, W) that 2^depth does not divide, that grid's exact ratio."""
        if grid is None:
            return self.in_channels * 4**self.depth / self.latent_channels
        code = self.latent_channels * math.prod(self.latent_grid(*grid))
        return self.in_channels * math.prod(grid) / code

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Fields (B, in_channels, H, W) -> code (B, latent_channels, H/2^depth, W/2^depth)."""
        check_grid(x, MIN_SIZE, "autoencoder")
        # (B, C, H, W) -> (B, C, H', W'), H' and W' the next multiples of 2^depth
        x, _ = pad_to_multiple(x, 2**self.depth, dims=2, wrap_longitude=self.wrap_longitude)
        features = self.encoder(x)  # (B, width * 2^(depth-1), H'/2^depth, W'/2^depth)
        return self.bottleneck(features)  # (B, latent_channels, H'/2^depth, W'/2^depth)

    def decode(self, code: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Code (B, latent_channels, h, w) -> fields (B, out_channels, H, W) on `grid` (H, W)."""
        features = self.decoder(self.expand(code))  # (B, width, h * 2^depth, w * 2^depth)
        out = self.head(features)  # (B, out_channels, H', W')
        # crop as pad_to_multiple padded: half the extra points before, half after
        top = (out.shape[-2] - grid[0]) // 2
        left = (out.shape[-1] - grid[1]) // 2
        return out[..., top : top + grid[0], left : left + grid[1]]  # (B, out_channels, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), (x.shape[-2], x.shape[-1]))
