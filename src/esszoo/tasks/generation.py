"""Generation: new fields drawn from a distribution learnt from real ones.

Batch contract: ``{"x": (B, C, H, W), "known": 1 where a value is known}``: the fields of
``data.inputs``, each channel normalized by the training split (mean and standard
deviation; for a model whose output is bounded by Tanh, ``bounded_output``, its training
range scaled into [-1, 1]), missing points at 0. With ``transform: log1p`` the fields are
generated as log(1 + x), for skewed, non-negative fields such as rain, whose values are
mostly zero and whose few heavy ones would otherwise decide the normalization.

Models: a variational autoencoder (a variational latent, `esszoo.layers.variational`),
trained on its evidence lower bound (the reconstruction's squared error over the known
points plus ``kl_weight`` times the KL: the base task's variational term); or a GAN (a
model with ``discriminate``), trained by the two-player game (Goodfellow et al. 2014) with
Lightning's manual optimization: per batch ``discriminator_steps`` steps of the
discriminator on real fields and on generated ones, then one of the generator. The game's
stabilisers are options: the discriminator's own learning rate (the two time-scale update
rule of Heusel et al. 2017), one-sided label smoothing of the real fields (Salimans et al.
2016), spectral normalisation of the discriminator's layers (Miyato et al. 2018), and the
hinge loss (Lim & Ye 2017; DGMR's). Both draw new fields with ``net.sample(count, grid)``;
generated fields are given the missing points of the real fields they are judged beside.

Validation and scores compare distributions, not fields one by one: a generated field has
no partner. Validation: the Wasserstein-1 distance between the normalized values of
generated and real fields plus the mean absolute log10 ratio of their radially averaged
power spectra (a batched torch version, `esszoo.verification.radial_spectrum`, equal to
pysteps'); that sum is the ``val_loss`` the best checkpoint is chosen by. A run stops,
keeping its best checkpoint, when the generated fields of a batch no longer differ
(their spread across the batch under ``collapse_spread`` of the real fields': mode
collapse) or its losses are not finite (divergence). Scores on the test split, in
physical units: the Wasserstein-1 distance of the values (``w1``), the spectral error
(``spectrum_error``), the bias of the mean and the ratio of the standard deviations.

Baselines: training fields drawn at random (real fields of other days: what a perfect
generator would score), and Gaussian random fields with the training fields' mean power
spectrum whose values are matched to the training distribution (pysteps' nonparametric
noise generator and its probability matching, STEPS's stochastic component), the classic
stochastic generator of rain fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from esszoo.data.dataset import SplitData, Table
from esszoo.data.variables import Variable, load_values
from esszoo.errors import DataError, ModelError, RecipeError
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import Predictor, predict_in_batches
from esszoo.tasks import register_task
from esszoo.tasks.base import Task
from esszoo.tasks.moments import ChannelMoments
from esszoo.verification import radial_spectrum

QUANTILES = 512  # levels at which two value distributions are compared


def log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(x.clamp(min=0))


TRANSFORMS: dict[str, tuple[Callable, Callable]] = {
    "none": (lambda x: x, lambda x: x),
    "log1p": (log1p, torch.expm1),
}


class GenerationOptions(TaskOptions):
    name: str = "generation"
    transform: Literal["none", "log1p"] = Field(
        default="none", description="log1p: fields generated as log(1 + x) (rain amounts)"
    )
    adversarial_loss: Literal["bce", "hinge"] = Field(
        default="bce", description="a GAN's game: the non-saturating cross-entropy, or hinge"
    )
    discriminator_steps: int = Field(
        default=1, ge=1, description="a GAN's discriminator steps per generator step"
    )
    discriminator_lr: float | None = Field(
        default=None, gt=0, description="a GAN's discriminator learning rate (trainer.lr if unset)"
    )
    betas: tuple[float, float] = Field(
        default=(0.5, 0.999), description="Adam's betas for a GAN's players (DCGAN's)"
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=0.5, description="one-sided: real fields labelled 1 - this"
    )
    spectral_norm: bool = Field(
        default=False, description="spectral normalisation of the discriminator's layers"
    )
    collapse_spread: float = Field(
        default=0.05,
        ge=0,
        description="stop as collapsed when the samples' spread falls under this share of "
        "the real fields'",
    )


def adversarial(net: nn.Module) -> bool:
    """Whether `net` is a GAN (it has a discriminator)."""
    return hasattr(net, "discriminate")


@register_task
class GenerationTask(Task):
    """Train `net` to draw fields like the training fields."""

    name = "generation"
    Options = GenerationOptions
    data_kinds = ("paired_fields",)
    headline = ("w1", "lower")
    plot_file = "samples.png"
    optional_shape = ("in_channels", "channels", "grid")
    epoch_metrics = ("g_loss", "d_loss", "d_real", "d_fake")
    card_models_only = True

    def __init__(self, net: nn.Module, spec: GenerationOptions, trainer: TrainerOptions):
        super().__init__(net, spec, trainer)
        if not hasattr(net, "sample"):
            raise ModelError(
                f"the generation task needs a generative model, and "
                f"'{type(net).__name__}' draws no samples",
                "choose one of: vae, dcgan",
            )
        self.forward_transform, self.inverse_transform = TRANSFORMS[spec.transform]
        if adversarial(net) and spec.spectral_norm:
            for module in net.discriminator.modules():
                if isinstance(module, nn.Conv2d | nn.Linear):
                    nn.utils.parametrizations.spectral_norm(module)
        self.varied = False  # whether the generator's fields have differed yet

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, Any]:
        sample = data.train.head(1).x
        channels = sample.shape[1]
        return {"in_channels": channels, "channels": channels, "grid": tuple(sample.shape[2:])}

    # -- data ------------------------------------------------------------------------------

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        if data.window is not None or [v.name for v in data.targets] != [
            v.name for v in data.inputs
        ]:
            raise DataError(
                "the generation task learns the fields of data.inputs alone",
                "remove data.targets and data.window from the recipe",
            )
        if data.train.x.dim() != 4:
            raise DataError("the generation task draws 2-D fields (sample, channel, y, x)")
        moments = ChannelMoments()
        moments.add(self.forward_transform(data.train.x))
        if moments.count is None or not (moments.count > 0).all():
            raise DataError("the training split holds no valid value of an input channel")
        if getattr(self.net, "bounded_output", False):  # Tanh: the range into [-1, 1]
            low, high = moments.range()
            centre, scale = (high + low) / 2, ((high - low) / 2).clamp(min=1e-6)
        else:
            centre, scale = moments.result()
        self.stats = {
            "input_mean": centre,
            "input_std": scale,
            "output_mean": centre,
            "output_std": scale,
        }
        return {split: self.tensors(table) for split, table in data.tables.items()}

    def tensors(self, table: Table) -> dict[str, torch.Tensor]:
        known = torch.isfinite(table.x)
        x = self.forward_transform(table.x)
        x = (x - self.stats["input_mean"].view(1, -1, 1, 1)) / self.stats["input_std"].view(
            1, -1, 1, 1
        )
        return {"x": torch.where(known, x, 0.0).float(), "known": known.float()}

    def predictor(self) -> Predictor:
        """The network with its normalization; a spectrally normalised discriminator keeps
        its normalised weights as plain ones (what a fresh `dcgan` loads)."""
        for module in self.net.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
        return Predictor(self.net, **self.stats, fill_missing=True)

    # -- training --------------------------------------------------------------------------

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A VAE's reconstruction error over the known points (its KL is added by the
        training step)."""
        error = (self.net(batch["x"]).float() - batch["x"]) ** 2
        return (error * batch["known"]).sum() / batch["known"].sum().clamp(min=1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        if not adversarial(self.net):
            return super().training_step(batch, batch_index)
        generator_optimizer, discriminator_optimizer = self.optimizers()
        if batch_index == 0:
            self.train_loss.reset()
            self.player_losses = {"g_loss": [], "d_loss": [], "d_real": [], "d_fake": []}
        size = self.trainer_spec.batch_size
        for start in range(0, len(batch["x"]), size):
            real, known = batch["x"][start : start + size], batch["known"][start : start + size]
            steps = self.spec.discriminator_steps
            for step in range(steps):  # the last step's fields also train the generator
                with torch.set_grad_enabled(step == steps - 1):
                    fake = self.generate(len(real), known)
                real_logits = self.net.discriminate(real)
                fake_logits = self.net.discriminate(fake.detach())
                d_loss = self.discriminator_loss(real_logits.float(), fake_logits.float())
                discriminator_optimizer.optimizer.zero_grad(set_to_none=True)
                self.manual_backward(d_loss)
                discriminator_optimizer.optimizer.step()
            g_loss = self.generator_loss(self.net.discriminate(fake).float())
            generator_optimizer.optimizer.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            generator_optimizer.step()  # through Lightning: it counts the run's steps
            self.train_loss.add(g_loss, len(real))
            for key, value in (
                ("g_loss", g_loss),
                ("d_loss", d_loss),
                ("d_real", torch.sigmoid(real_logits).mean()),
                ("d_fake", torch.sigmoid(fake_logits).mean()),
            ):
                self.player_losses[key].append(value.detach())
        if batch_index == self.trainer.num_training_batches - 1:
            self.train_loss.log(self)
            for key, values in self.player_losses.items():
                self.log(key, torch.stack(values).mean(), on_epoch=True)

    def generate(self, count: int, known: torch.Tensor) -> torch.Tensor:
        """`count` normalized fields from the model, with the missing points of `known`."""
        return self.net.sample(count, tuple(known.shape[-2:])) * known

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.spec.adversarial_loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        target = torch.full_like(real, 1.0 - self.spec.label_smoothing)
        return F.binary_cross_entropy_with_logits(
            real, target
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        if self.spec.adversarial_loss == "hinge":
            return -fake.mean()
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))  # non-saturating

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union of return types)
        if not adversarial(self.net):
            return super().configure_optimizers()
        if self.trainer_spec.precision == "16-mixed":
            raise RecipeError(
                "a GAN's two players are not trained with fp16 loss scaling",
                "set trainer.precision to 32 or bf16-mixed",
            )
        rate = self.trainer_spec.lr
        generator = [p for n, p in self.net.named_parameters() if not n.startswith("discrimin")]
        return [
            torch.optim.Adam(generator, lr=rate, betas=self.spec.betas),
            torch.optim.Adam(
                self.net.discriminator.parameters(),
                lr=self.spec.discriminator_lr or rate,
                betas=self.spec.betas,
            ),
        ]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        real, known = batch["x"], batch["known"]
        fake = self.generate(len(real), known)
        distance = wasserstein(fake[known > 0], real[known > 0]) + spectral_error(fake, real)
        self.log("val_loss", distance, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_spread", spread(fake) / spread(real).clamp(min=1e-12), on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        """Stop a generator that has collapsed: its fields differed, and differ no more
        (one that has not yet learnt to vary has not collapsed)."""
        ratio = self.trainer.callback_metrics.get("val_spread")
        if self.trainer.sanity_checking or ratio is None:
            return
        ratio, limit = float(ratio), self.spec.collapse_spread
        if ratio >= limit:
            self.varied = True
        elif self.varied:
            print(
                f"error: the generator collapsed: its fields differ {ratio:.1%} as much as "
                f"real ones (task.collapse_spread {limit:g}); training stops, the best "
                "checkpoint is kept"
            )
            self.trainer.should_stop = True

    # -- sampling, baselines and scores ----------------------------------------------------

    def apply(self, predictor: nn.Module, table: Table) -> torch.Tensor:
        """As many fields drawn as `table` holds, with its fields' missing points."""
        drawn = draw(predictor, len(table), tuple(table.x.shape[-2:]), self.spec, seed=0)
        return torch.where(torch.isfinite(table.x), drawn, torch.nan)

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        train = data.train.x

        def training_fields(table: Table) -> torch.Tensor:
            rows = torch.randint(
                len(train), (len(table),), generator=torch.Generator().manual_seed(0)
            )
            return torch.where(torch.isfinite(table.x), train[rows], torch.nan)

        found = {"training fields drawn at random": training_fields}
        if train.shape[1] == 1:
            noise = spectral_noise(self.forward_transform(train[:, 0]).numpy())

            def gaussian_fields(table: Table) -> torch.Tensor:
                fields = torch.from_numpy(noise(len(table))).unsqueeze(1).float()
                fields = self.inverse_transform(fields)
                return torch.where(torch.isfinite(table.x), fields, torch.nan)

            found["Gaussian fields of the training spectrum (pysteps)"] = gaussian_fields
        return found

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        known = torch.isfinite(truth) & torch.isfinite(prediction)
        p, t = prediction.double(), truth.double()
        return {
            "w1": float(wasserstein(p[known], t[known])),
            "spectrum_error": float(spectral_error(p.nan_to_num(), t.nan_to_num())),
            "mean_bias": float(p[known].mean() - t[known].mean()),
            "std_ratio": float(p[known].std() / t[known].std()) if t[known].std() > 0 else math.nan,
        }

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        from esszoo.plots import sample_panels

        sample_panels(predictions, truth, data, path)

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """`esszoo predict` of a VAE: every field rebuilt through its code (the posterior
        mean); a GAN has nothing to rebuild from data (`esszoo sample` draws its fields)."""
        if adversarial(predictor.net):
            raise DataError(
                "a GAN draws its fields from noise and rebuilds none from data",
                "draw fields with esszoo sample RUN --n N",
            )
        spec = GenerationOptions(**description["recipe"]["task"])
        forward, inverse = TRANSFORMS[spec.transform]
        grid = [d for d in inputs[0].dims if d != sample_dim]
        x = torch.from_numpy(
            np.stack([load_values(a.transpose(sample_dim, *grid), np.float32) for a in inputs], 1)
        )

        def rebuild(fields: torch.Tensor) -> torch.Tensor:
            code_in = predictor.normalize(forward(fields)).float()
            return inverse(predictor.denormalize(predictor.net(code_in)))

        rebuilt = predict_in_batches(rebuild, x)
        rebuilt = torch.where(torch.isfinite(x), rebuilt, torch.nan).numpy()
        coords = {k: v for k, v in inputs[0].coords.items() if set(v.dims) <= {sample_dim, *grid}}
        comment = f"rebuilt through the code of esszoo model '{description['model']['name']}'"
        predicted = xr.Dataset(coords=coords)
        for channel, variable in enumerate(Variable.from_dict(v) for v in description["outputs"]):
            attrs = variable.attrs() | {"comment": comment}
            predicted[variable.name] = ((sample_dim, *grid), rebuilt[:, channel], attrs)
        return predicted

    @classmethod
    def exported(cls, predictor: nn.Module) -> nn.Module:
        """A GAN's generator in physical units, noise in; a VAE's reconstruction."""
        if not adversarial(predictor.net):
            return predictor
        spec = GenerationOptions(**predictor.description["recipe"]["task"])
        return Generated(predictor, TRANSFORMS[spec.transform][1])

    @classmethod
    def export_example(cls, predictor: nn.Module) -> torch.Tensor | None:
        """A GAN's export is traced on noise; a VAE's on the run's test fields."""
        if not adversarial(predictor.net):
            return None
        return torch.randn(64, predictor.net.noise, generator=torch.Generator().manual_seed(0))


class Generated(nn.Module):
    """Noise (B, noise) -> fields in physical units: what an export of a GAN holds."""

    def __init__(self, predictor: Predictor, inverse: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.predictor, self.inverse = predictor, inverse

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inverse(self.predictor.denormalize(self.predictor.net(z)))


def draw(
    predictor: Predictor,
    count: int,
    grid: tuple[int, int],
    spec: GenerationOptions,
    seed: int = 0,
) -> torch.Tensor:
    """`count` fields (count, C, H, W) in physical units drawn from a trained model."""
    inverse = TRANSFORMS[spec.transform][1]
    generator = torch.Generator().manual_seed(seed)
    out = []
    with torch.inference_mode():
        for start in range(0, count, 32):
            fields = predictor.net.sample(min(32, count - start), grid, generator=generator)
            out.append(inverse(predictor.denormalize(fields)))
    out = torch.cat(out)
    if predictor.output_lower is not None:  # the variables' physical bounds
        lower = predictor.output_lower.view(1, -1, 1, 1)
        upper = predictor.output_upper.view(1, -1, 1, 1)
        out = torch.minimum(torch.maximum(out, lower), upper)
    return out.float()


def wasserstein(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The Wasserstein-1 distance of the distributions of the values `a` and `b` (any
    shapes), from their quantiles at QUANTILES levels."""
    levels = torch.linspace(0, 1, QUANTILES, dtype=a.dtype, device=a.device)
    sample = 2**22  # torch.quantile's limit on its input's size
    a, b = a.flatten()[:sample], b.flatten()[:sample]
    return (torch.quantile(a, levels) - torch.quantile(b, levels.to(b.dtype))).abs().mean()


def spectral_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The mean absolute log10 ratio of the mean radially averaged power spectra of the
    fields `a` and `b` (..., H, W)."""
    pa = radial_spectrum(a.flatten(0, -3)).mean(0)[1:]  # without the mean (wavenumber 0)
    pb = radial_spectrum(b.flatten(0, -3)).mean(0)[1:]
    floor = 1e-8 * torch.maximum(pa.max(), pb.max()).clamp(min=1e-30)  # fields without power
    return (torch.log10(pa.clamp(min=floor)) - torch.log10(pb.clamp(min=floor))).abs().mean()


def spread(fields: torch.Tensor) -> torch.Tensor:
    """The standard deviation across a batch of fields, averaged over their points."""
    return fields.float().std(0).mean() if len(fields) > 1 else fields.new_tensor(math.inf)


def spectral_noise(fields: np.ndarray, seed: int = 0) -> Callable[[int], np.ndarray]:
    """Gaussian random fields with the mean power spectrum of `fields` (N, H, W), their
    values matched to the fields' distribution: pysteps' nonparametric FFT filter (Seed
    et al. 2013) and its empirical-CDF probability matching."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps.noise.fftgenerators import (
            generate_noise_2d_fft_filter,
            initialize_nonparam_2d_fft_filter,
        )
        from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf

    values = np.nan_to_num(fields.astype(np.float64), nan=float(np.nanmin(fields)))
    fft_filter = initialize_nonparam_2d_fft_filter(values)
    rng = np.random.default_rng(seed)
    pooled = values.ravel()

    def draw_fields(count: int) -> np.ndarray:
        out = []
        for _ in range(count):
            noise = generate_noise_2d_fft_filter(fft_filter, seed=int(rng.integers(2**31)))
            target = rng.choice(pooled, size=noise.size)
            out.append(nonparam_match_empirical_cdf(noise, target))
        return np.stack(out)

    return draw_fields
