"""What every task shares with Lightning, and what each task must define.

A task is one file: a `Task` subclass registered with `esszoo.tasks.register_task`, with

- ``name``, and ``Options``: the options of its recipe section (a `TaskOptions` subclass);
- ``data_kinds``: the data kinds it learns from (`esszoo.data.kinds`), and `data_kind`
  to say which one a recipe's data section asks for (the first, unless overridden);
- `model_shape`: the constructor arguments the data and the options fix (``in_channels``, ...);
- `prepare`: normalization from the training split, and each split's batch tensors;
- `batch_loss`: the loss of one batch (training and validation steps call it);
- `predictor`: the network in physical units (what is saved, exported and predicted with);
- `baselines` and `score`: predictors that need no learning, and the scores of any
  predictor on a split, so that a model is only ever reported beside its baselines;
  ``headline``: the score by which a model that loses to a baseline is marked;
- `plot` and ``plot_file``: the figure a run leaves of its test split;
- `predictions`: a trained model's outputs on new data, as an `xarray.Dataset`, and
  `exported`: the module `esszoo export` writes for codes outside Python.

Here are the network and its recipe sections, the epoch's mean training loss, the
optimizer, and the training and validation steps around `batch_loss`; for a Bayesian
network (`esszoo.layers.bayesian`) the training step adds ``task.kl_weight`` times the KL
term over the training samples N to each batch's loss (Blundell et al. 2015, Eq. 8), and
for a variational latent (`esszoo.layers.variational`) ``task.kl_weight`` times its KL per
sample over the target values of a sample, since the task's loss is a mean per target
value: with a mean squared error, the negative evidence lower bound of a Gaussian
likelihood of variance 1/2 in normalized units at kl_weight 1 (a beta-VAE's beta
otherwise). Engineering
(devices, precision, checkpoints, the run directory) is in `esszoo.training`.

Optimization is manual (Lightning's `automatic_optimization = False`): a training batch
may be a group of batches (`esszoo.data.batches.TensorBatches`), and the task takes one
optimizer step per batch of the group. The group's last step goes through Lightning (its
backward and optimizer hooks, loss scaling, DDP's gradient reduction); the others call
backward and the optimizer directly, as a hand-written loop does, and count as optimizer
steps of the run (`trainer.global_step`). Groups are never formed under DDP; with loss
scaling (fp16) every step of a group goes through Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
import xarray as xr
from torch import nn

from esszoo.data.dataset import SplitData, Table
from esszoo.data.variables import Variable
from esszoo.errors import DataError
from esszoo.layers.bayesian import bayesian_layers, kl_divergence
from esszoo.layers.variational import GaussianLatent, latent_kl
from esszoo.optim import configure_optimizer
from esszoo.options import TaskOptions, TrainerOptions
from esszoo.predictor import predict_in_batches
from esszoo.tasks.logging import EpochMean
from esszoo.tasks.moments import ChannelMoments


class Task(L.LightningModule):
    """A LightningModule that trains `net` on the loss `batch_loss` of each batch."""

    name: ClassVar[str]
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    data_kinds: ClassVar[tuple[str, ...]] = ()
    plot_file: ClassVar[str] = "prediction_vs_truth.png"
    # the score a model is judged by against its baselines: (score, "lower" or "higher")
    headline: ClassVar[tuple[str, str]] = ("rmse", "lower")
    # constructor arguments of `model_shape` that only some models take (the layout of a
    # column for vertically aware models): given to the models that take them
    optional_shape: ClassVar[tuple[str, ...]] = ()
    # whether only the models whose card names the task can learn it (a generative task
    # needs models that draw fields; any network maps fields to fields)
    card_models_only: ClassVar[bool] = False
    # what the task logs in training, beside its loss, for metrics.csv (a GAN's players)
    epoch_metrics: ClassVar[tuple[str, ...]] = ()
    # the scores the terminal's table shows (None: all; scores.csv always holds all)
    printed_scores: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, net: nn.Module, options: TaskOptions, trainer: TrainerOptions):
        super().__init__()
        self.net = net
        self.spec = options
        self.trainer_spec = trainer
        self.stats: dict[str, torch.Tensor] = {}  # normalization, fixed by `prepare`
        self.train_loss = EpochMean("train_loss")
        self.automatic_optimization = False
        self.bayesian_layers: list[nn.Module] = []  # Bayes by Backprop layers (`on_fit_start`)
        self.has_latents = False  # variational latents in the network (`on_fit_start`)
        self.samples = 1

    # -- what a task defines -----------------------------------------------------------------

    @classmethod
    def data_kind(cls, data: dict[str, Any]) -> str:
        """Which of `data_kinds` the recipe's (raw) data section asks for."""
        return cls.data_kinds[0]

    @staticmethod
    def model_shape(
        data: SplitData, takes_mask: bool = False, options: Any = None
    ) -> dict[str, int]:
        """The zoo constructor arguments that the data (and the task's `options`, its
        recipe section, where the outputs depend on them) fix."""
        raise NotImplementedError

    def prepare(self, data: SplitData) -> dict[str, dict[str, torch.Tensor]]:
        """Fix the normalization from the training split; return each split's batch tensors."""
        raise NotImplementedError

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def predictor(self) -> nn.Module:
        """The network in physical units, with its normalization."""
        raise NotImplementedError

    def baselines(self, data: SplitData) -> dict[str, Callable[[Table], torch.Tensor]]:
        """Predictors that need no learning, fitted on the training split; each takes a table."""
        raise NotImplementedError

    def score(
        self, prediction: torch.Tensor, truth: torch.Tensor, data: SplitData, table: Any = None
    ) -> dict[str, float]:
        """Scores of one predictor's outputs on a split, in physical units."""
        raise NotImplementedError

    def plot(
        self, predictions: dict[str, torch.Tensor], truth: torch.Tensor, data: SplitData, path: Path
    ) -> None:
        """The run's figure of the test split, for the model and its baselines."""

    def apply(self, predictor: nn.Module, table: Table) -> torch.Tensor:
        """The predictor's outputs for every sample of a split's `table`, a batch at a
        time (a generative task draws as many new fields instead)."""
        inputs = (table.x,) if table.mask is None else (table.x, table.mask)
        return predict_in_batches(predictor, *inputs)

    def scored_truth(self, table: Table) -> torch.Tensor:
        """The targets of `table` where a prediction is judged, NaN elsewhere: all of them,
        unless the task judges some points only (inpainting: the hidden ones)."""
        return table.y

    def plot_spread(
        self, ensemble: torch.Tensor, table: Table, data: SplitData, run_dir: Path
    ) -> None:
        """What a task shows of the spread of the draws `ensemble` (draws first) of the
        split `table`, beside the scores of uncertainty.csv (nothing by default)."""

    def target_range(self, data: SplitData) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest and largest training target of each output channel, to count the
        predictions that leave it (a pass over the training split's blocks)."""
        moments = ChannelMoments()
        for table in data.train.blocks():
            moments.add(table.y)
        return moments.range()

    def label(self, model_name: str) -> str:
        """How the run's model is named in score tables."""
        return model_name

    @classmethod
    def exported(cls, predictor: nn.Module) -> nn.Module:
        """The module `esszoo export` writes: the predictor itself, unless the task's model
        takes more than the data (a mask, ...) and needs a wrapper that makes it."""
        return predictor

    @classmethod
    def export_example(cls, predictor: nn.Module) -> torch.Tensor | None:
        """Inputs an export is traced with and checked on, where they are not the run's
        test inputs (a generator's noise)."""
        return None

    @classmethod
    def data_inputs(cls, description: dict[str, Any]) -> list[Variable]:
        """The variables new data must hold for `esszoo predict` (each once: windows of
        frames take one variable as several channels)."""
        inputs = [Variable.from_dict(v) for v in description.get("inputs", [])]
        return list({v.name: v for v in inputs}.values())

    @classmethod
    def predictions(
        cls,
        predictor: nn.Module,
        inputs: list[xr.DataArray],
        description: dict[str, Any],
        sample_dim: str | None,
    ) -> xr.Dataset:
        """The outputs of a trained `predictor` (its checkpoint's `description`) for the
        input variables `inputs`, already checked by name and units and, for fields, put
        on the training grid's order, as a Dataset; `sample_dim`: the data's dimension of
        samples (fields), None for tables of points."""
        raise DataError(f"esszoo predict does not serve task '{cls.name}' yet")

    # -- what Lightning calls ----------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        """One optimizer step for each batch of `trainer.batch_size` rows in `batch`."""
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        direct = getattr(self.trainer.precision_plugin, "scaler", None) is None
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        if batch_index == 0:
            self.train_loss.reset()
        size = self.trainer_spec.batch_size
        starts = range(0, len(batch["x"]), size)
        for start in starts:
            part = {name: tensor[start : start + size] for name, tensor in batch.items()}
            loss = self.batch_loss(part)
            if self.bayesian_layers:  # Bayes by Backprop's minibatch free energy (Eq. 8)
                loss = loss + self.spec.kl_weight * kl_divergence(self.net) / self.samples
            latent = latent_kl(self.net) if self.has_latents else None
            if latent is not None:  # the ELBO of a variational latent, per target value
                values = part.get("y", part["x"])[0].numel()  # (a field drawn anew: x)
                loss = loss + self.spec.kl_weight * latent / values
            # backward outside the forward's autocast, as PyTorch advises
            with torch.autocast(self.device.type, enabled=False):
                if direct and start != starts[-1]:
                    loss.backward()
                    self._clip(optimizer, direct)
                    optimizer.optimizer.step()
                    progress.increment_ready()
                    progress.increment_completed()
                else:
                    self.manual_backward(loss)
                    self._clip(optimizer, direct)
                    optimizer.step()
            optimizer.optimizer.zero_grad(set_to_none=True)
            if schedule is not None:
                schedule.step()
            self.train_loss.add(loss, len(part["x"]))
        if batch_index == self.trainer.num_training_batches - 1:
            self.train_loss.log(self)

    def _clip(self, optimizer: Any, direct: bool) -> None:
        """Scale the gradients down to the norm ``trainer.gradient_clip`` where they pass it
        (through Lightning where a loss scaler must unscale them first)."""
        limit = self.trainer_spec.gradient_clip
        if limit is None:
            return
        if direct:
            nn.utils.clip_grad_norm_(self.net.parameters(), limit)
        else:
            self.clip_gradients(optimizer, gradient_clip_val=limit, gradient_clip_algorithm="norm")

    def on_fit_start(self) -> None:
        self.bayesian_layers = bayesian_layers(self.net)
        # looked up once, not by walking the network at every batch
        self.has_latents = any(isinstance(m, GaussianLatent) for m in self.net.modules())
        loader = self.trainer.train_dataloader
        # the training samples N of the KL term: the rows of the split, or (for data read
        # from disk) the batches' rows
        self.samples = getattr(loader, "length", None) or (
            self.trainer.num_training_batches * self.trainer_spec.batch_size
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        self.log("val_loss", self.batch_loss(batch), on_epoch=True, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union of return types)
        return configure_optimizer(self.net.parameters(), self.trainer_spec, self.trainer)
