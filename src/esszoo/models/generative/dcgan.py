"""DCGAN: a generator and a discriminator of strided convolutions, trained against each other.

Papers: Goodfellow et al. (2014), "Generative Adversarial Nets", NeurIPS: a generator G
maps noise z ~ p(z) to samples and a discriminator D tells samples from data; D is trained
to maximise log D(x) + log(1 - D(G(z))), G to fool it (in practice to maximise log
D(G(z)), the non-saturating loss of their Section 3), and at the game's equilibrium G
draws from the data's distribution. Radford, Metz & Chintala (2016), "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial Networks", ICLR
(arXiv:1511.06434): the convolutional architecture that made the game train.

Paper to code (their Section 3 and Figure 1, as the PyTorch DCGAN example builds them):

- No pooling: the generator upsamples by fractionally-strided (transposed) convolutions,
  4x4 of stride 2, and the discriminator downsamples by 4x4 convolutions of stride 2.
- Batch normalisation in both, except the generator's output layer and the
  discriminator's input layer.
- No fully connected hidden layers: z (``noise`` numbers) is projected to a 4 x 4 x
  8 ``width`` stack by a transposed convolution, then 4 x 4 -> 8 -> 16 -> 32 -> 64 with 4,
  2, 1 ``width`` channels; the discriminator mirrors it, 64 -> 32 -> ... -> 4 and a 4 x 4
  convolution to one logit.
- ReLU in the generator with Tanh at its output (data scaled into [-1, 1]); LeakyReLU of
  slope 0.2 in the discriminator. Weights drawn from N(0, 0.02), batch-norm scales from
  N(1, 0.02) (their Section 4). Convolutions without biases (batch norm has them).
- Adam with a learning rate of 2e-4 and beta1 0.5 (the recipe's trainer and the
  generation task's ``betas``).

At the paper's 64 x 64 and 3 channels with noise 100 and width 64 the generator counts
3,576,704 parameters and the discriminator 2,765,568 (the card counts both: 6,342,272).

Other grids: the first transposed convolution's kernel is the grid divided by 16 (4 x 4
at 64 x 64), the generator's field is cropped to the grid (half the extra points on each
side), and the discriminator pads its input to a multiple of 16 and ends with a
convolution of that kernel, so one logit judges a whole field of any grid. The values of
the fields (the generation task normalises them) enter and leave through Tanh's range:
the task scales each channel into [-1, 1] by the training fields' extremes for this model
(``bounded_output``). With ``padding="earth"`` the discriminator's convolutions wrap in
longitude; the generator's transposed convolutions pad nothing.

`forward(z)` is the generator: noise (B, noise) -> fields (B, C, H, W), what an export
holds; `discriminate(x)` gives D's logits (B,) (the sigmoid is in the loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import set_padding
from esszoo.registry import Paper, register_model

STAGES = 4  # doublings between the 4 x 4 start and 64 x 64


def initialise(module: nn.Module) -> None:
    """Radford et al., Section 4: weights from N(0, 0.02); batch-norm scales N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """z (B, noise) -> fields (B, channels, 16 h0, 16 w0) through 5 transposed convolutions."""

    def __init__(self, noise: int, channels: int, width: int, start: tuple[int, int]):
        super().__init__()
        widths = [width * 2**k for k in range(STAGES - 1, -1, -1)]  # 8w, 4w, 2w, w
        layers = [nn.ConvTranspose2d(noise, widths[0], start, 1, 0, bias=False)]
        layers += [nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]
            layers += [nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z[:, :, None, None])


class Discriminator(nn.Module):
    """Fields (B, channels, 16 h0, 16 w0) -> one logit each (B,)."""

    def __init__(self, channels: int, width: int, start: tuple[int, int]):
        super().__init__()
        widths = [width * 2**k for k in range(STAGES)]  # w, 2w, 4w, 8w
        layers = [nn.Conv2d(channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)]
            layers += [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(widths[-1], 1, start, 1, 0, bias=False)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten()


@register_model(
    name="dcgan",
    family="generative",
    tasks=("generation",),
    paper=Paper(
        authors="Radford, Metz & Chintala",
        year=2016,
        title="Unsupervised Representation Learning with Deep Convolutional Generative "
        "Adversarial Networks",
        venue="ICLR",
        arxiv="1511.06434",
    ),
    reference=dict(channels=3, grid=(64, 64), noise=100, width=64),
    reference_params=6_342_272,
    reference_note="generator 3,576,704 + discriminator 2,765,568 at the paper's 64 x 64 "
    "RGB configuration (noise 100, width 64), as the PyTorch DCGAN example builds it",
    small=dict(channels=3, grid=(20, 36), noise=8, width=4),
    example_input=(2, 8),
    inputs=("z",),
)
class DCGAN(nn.Module):
    """DCGAN generator and discriminator for fields of `channels` on `grid` (H, W).

    `forward(z)` generates fields from noise (B, ``noise``); `discriminate(x)` gives the
    discriminator's logits; `sample(count, grid)` draws z ~ N(0, I) and generates.
    """

    bounded_output = True  # Tanh: fields scaled into [-1, 1]

    def __init__(
        self,
        *,
        channels: int,
        grid: tuple[int, int] = (64, 64),
        noise: int = 100,
        width: int = 64,
        padding: str = "zeros",
    ):
        super().__init__()
        if noise < 1 or width < 1 or min(grid) < 1:
            raise ModelError(
                f"dcgan needs noise, width and grid >= 1, got {noise}, {width}, {grid}"
            )
        self.grid, self.noise = (int(grid[0]), int(grid[1])), noise
        self.start = tuple(math.ceil(n / 2**STAGES) for n in self.grid)  # 4 x 4 at 64 x 64
        self.generator = Generator(noise, channels, width, self.start)
        self.discriminator = Discriminator(channels, width, self.start)
        self.apply(initialise)
        set_padding(self.discriminator, padding)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Noise (B, noise) -> fields (B, channels, H, W)."""
        out = self.generator(z)
        top = (out.shape[-2] - self.grid[0]) // 2
        left = (out.shape[-1] - self.grid[1]) // 2
        return out[..., top : top + self.grid[0], left : left + self.grid[1]]

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """Fields (B, channels, H, W) -> the discriminator's logits (B,), the fields padded
        to 16 h0 x 16 w0 where the generator's crop took points off (edge values repeated)."""
        if tuple(x.shape[-2:]) != self.grid:
            raise ModelError(
                f"dcgan was built for fields of {self.grid[0]}x{self.grid[1]}, got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )
        height, width = (2**STAGES * n for n in self.start)
        top, left = (height - self.grid[0]) // 2, (width - self.grid[1]) // 2
        pads = (left, width - self.grid[1] - left, top, height - self.grid[0] - top)
        return self.discriminator(F.pad(x, pads, mode="replicate") if any(pads) else x)

    def sample(
        self,
        count: int,
        grid: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`count` fields generated from z ~ N(0, I)."""
        if grid is not None and tuple(grid) != self.grid:
            raise ModelError(f"dcgan generates fields of {self.grid[0]}x{self.grid[1]}, not {grid}")
        parameter = next(self.parameters())
        z = torch.randn(count, self.noise, generator=generator, dtype=parameter.dtype)
        return self(z.to(parameter.device))
