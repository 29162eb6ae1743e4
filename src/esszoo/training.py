"""Engineering of a run: recipe -> data + task + Lightning Trainer -> run directory.

Science (loss, metrics, baselines) lives in the task; here are devices, precision, seeds,
early stopping, checkpoints, resumption, and the files a run leaves behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from esszoo import checkpoint, plots
from esszoo.data.batches import TensorBatches, group_for, on_device
from esszoo.errors import RecipeError, RunError
from esszoo.fileio import atomic_path, write_text
from esszoo.layers.bayesian import bayesian_layers
from esszoo.layers.ode import ODEBlock, ode_blocks
from esszoo.predictor import predict_in_batches
from esszoo.recipe import Recipe, load_recipe
from esszoo.registry import create_model, list_models, model_arguments, model_card
from esszoo.run import (
    RECIPE_FILE,
    RunLock,
    build_data,
    build_task,
    print_table,
    score_rows,
    task_inputs,
    with_units,
    write_csv,
)
from esszoo.tasks import task_class
from esszoo.threads import CoreShare
from esszoo.transfer import init_from_checkpoint
from esszoo.uncertainty import check_model, reliability_plot, score_uncertainty

LAST_CHECKPOINT = "checkpoints/last.ckpt"


def resolve_accelerator(requested: str) -> str:
    """'auto' -> cuda if present, else mps, else cpu."""
    if requested != "auto":
        return "cuda" if requested == "gpu" else requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(requested: str, accelerator: str, volumes: bool = False) -> str:
    """'auto' -> the fastest correct precision for the device (measured in BENCHMARKS.md).

    CUDA with bf16 (Ampere and later) and CPUs with native bf16 (AVX512-BF16, AMX): bf16
    autocast; weights, optimizer state and evaluation stay fp32. Older CUDA: fp16 autocast
    with loss scaling. Other CPUs and MPS: fp32. Volumes (3-D convolutions) on the CPU: fp32,
    because bf16 autocast of 3-D convolutions gave a non-finite first-step gradient (1e35)
    in a UNet3D run here, intermittently.
    """
    if requested != "auto":
        return requested
    if accelerator == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator == "cpu" and cpu_has_bf16() and not volumes:
        return "bf16-mixed"
    return "32-true"


def resolve_memory_format(requested: str, fields: bool) -> str:
    """'auto' -> channels_last for batches of 2-D fields (measured faster for conv nets)."""
    if requested != "auto":
        return requested
    return "channels_last" if fields else "contiguous"


def resolve_compile(requested: bool | str) -> bool:
    """'auto' -> eager everywhere. Measured (BENCHMARKS.md, GPU section): on an H200 the
    compiled ResNet-50 step was slower in one run (38.5 against 25.2 ms) and faster in
    another (29.9 against 44.8 ms), no consistent gain for a minute of compilation; on
    CPUs compiling costs more minutes than a run saves. `trainer.compile: true` asks."""
    if requested != "auto":
        return bool(requested)
    return False


class Compile(Callback):
    """Compile the task's network in place (`nn.Module.compile`): the parameters and the
    checkpoint's keys stay those of the eager network."""

    def setup(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        task.net.compile()


class ChannelsLast(Callback):
    """Keep the network and the batches of fields (or volumes) in channels-last layout."""

    def __init__(self, volumes: bool = False):
        self.format = torch.channels_last_3d if volumes else torch.channels_last
        self.active = True

    def setup(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        # only for networks with kernels of the data's rank: a ConvLSTM reads volumes of
        # frames with 2-D convolutions, frame by frame, and stays as it is
        rank = 5 if self.format is torch.channels_last_3d else 4
        self.active = any(p.dim() == rank for p in task.net.parameters())
        if self.active:
            task.to(memory_format=self.format)

    def _convert(self, batch: dict[str, torch.Tensor]) -> None:
        if self.active:
            batch["x"] = batch["x"].contiguous(memory_format=self.format)

    def on_train_batch_start(self, trainer, task, batch, batch_index) -> None:  # noqa: ANN001
        self._convert(batch)

    def on_validation_batch_start(  # noqa: ANN001
        self, trainer, task, batch, batch_index, dataloader_index=0
    ) -> None:
        self._convert(batch)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written under a temporary name and renamed into place: a process killed
    while writing one leaves the previous checkpoint whole, so `--resume` always works."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        with atomic_path(path) as temporary:
            torch.save(checkpoint, temporary)


class StopOnNonFinite(Callback):
    """Stops training at a NaN or infinite loss before it reaches a checkpoint.

    Every task logs the epoch's mean training loss at the epoch's last batch
    (`tasks.logging.EpochMean`), and one non-finite step makes that mean non-finite. It is
    read before validation, which precedes the epoch's checkpoint (and at the epoch's end,
    for runs without validation), so `checkpoints/last.ckpt` keeps the last good weights,
    at no cost per step.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_validation_start(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None and not torch.isfinite(loss):
            raise RunError(
                f"the training loss became {float(loss)} in epoch {trainer.current_epoch}",
                f"lower trainer.lr or check the data; {self.run_dir / LAST_CHECKPOINT} keeps the "
                "last good weights (--resume continues from it)",
            )


class ShareCores(Callback):
    """Keeps the run's threads at its share of the cores as other runs start and end
    (`esszoo.threads`): a clock read per batch, the claims read about once a second."""

    def __init__(self, cores: CoreShare):
        self.cores = cores

    def on_train_batch_start(self, trainer, task, batch, batch_index) -> None:  # noqa: ANN001
        self.cores.update()

    def on_validation_batch_start(  # noqa: ANN001
        self, trainer, task, batch, batch_index, dataloader_index=0
    ) -> None:
        self.cores.update()


class MetricsHistory(Callback):
    """Writes metrics.csv after every epoch, and with `echo` a line of it to the log (for
    output that is not a terminal, where a progress bar would leave only its last line)."""

    def __init__(self, path: Path, keep: list[dict[str, Any]], echo: bool = False):
        self.path = path
        self.rows = keep
        self.echo = echo
        self.started = time.perf_counter()
        # an ODE network's function evaluations in training batches (not validation's)
        self.ode_blocks: list[ODEBlock] = []
        self.evaluations, self.before, self.epoch_step = 0, 0, 0

    def setup(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        self.ode_blocks = ode_blocks(task.net)

    def on_train_epoch_start(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        self.evaluations, self.epoch_step = 0, trainer.global_step

    def on_train_batch_start(self, trainer, task, batch, batch_index) -> None:  # noqa: ANN001
        if self.ode_blocks:
            self.before = sum(block.evaluations for block in self.ode_blocks)

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_index) -> None:  # noqa: ANN001
        if self.ode_blocks:
            self.evaluations += sum(block.evaluations for block in self.ode_blocks) - self.before

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "train_loss": metrics.get("train_loss"),
            "val_loss": metrics.get("val_loss"),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - self.started, 3),
        }
        row |= {k: v for k, v in sorted(metrics.items()) if k.startswith("val_") and k not in row}
        row |= {k: metrics[k] for k in getattr(task, "epoch_metrics", ()) if k in metrics}
        if self.ode_blocks:  # the ODE's cost: evaluations of its network per optimizer step
            steps = max(1, trainer.global_step - self.epoch_step)
            row["function_evaluations"] = self.evaluations / steps
        self.rows.append(row)
        if trainer.is_global_zero:
            write_csv(self.rows, self.path)
            if self.echo:
                print(epoch_line(row, trainer.max_epochs), flush=True)


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One epoch of metrics.csv as a line of the log."""
    losses = "  ".join(
        f"{key} {row[key]:.4g}" for key in ("train_loss", "val_loss") if row.get(key) is not None
    )
    return (
        f"epoch {row['epoch'] + 1}/{epochs}  {losses}  lr {row['lr']:.3g}  {row['seconds']:.0f} s"
    )


def _read_history(path: Path, before_epoch: int) -> list[dict[str, Any]]:
    import csv

    if not path.is_file():
        return []
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    parsed = []
    for row in rows:
        values = {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
        values["epoch"], values["step"] = int(values["epoch"]), int(values["step"])
        if values["epoch"] < before_epoch:
            parsed.append(values)
    return parsed


def _prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    last = run_dir / LAST_CHECKPOINT
    if resume:
        if not last.is_file():
            raise RunError(
                f"nothing to resume: '{last}' does not exist",
                "train without --resume to start the run",
            )
        return
    if (run_dir / RECIPE_FILE).exists():
        if not overwrite:
            raise RunError(
                f"run directory '{run_dir}' already holds a run",
                "pass --resume to continue it, --overwrite to replace it, or name=OTHER",
            )
        for child in run_dir.iterdir():
            if child.name == ".lock":
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def train(
    recipe_path: str | Path,
    overrides: list[str] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train the recipe; return its run directory."""
    return train_recipe(load_recipe(recipe_path, overrides), resume=resume, overwrite=overwrite)


def train_recipe(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Callback] | None = None,
) -> Path:
    """Train a validated recipe; return its run directory. `callbacks`: Lightning callbacks
    added to the run's own (a search's pruning, say)."""
    run_dir = recipe.run_dir()
    extra = list(callbacks or [])
    with CoreShare(recipe.trainer.threads) as cores:
        if launch_rank() > 0:  # one of several processes (torchrun, SLURM): rank 0 owns the run
            return _train(recipe, run_dir, resume, cores, extra)
        with RunLock(run_dir):
            _prepare_run_dir(run_dir, resume, overwrite)
            return _train(recipe, run_dir, resume, cores, extra)


def launch_rank() -> int:
    """This process's global rank as set by torchrun or SLURM before any process group
    exists (0 when launched alone)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def show_progress_bar(spec: Any) -> bool:
    """A progress bar on a terminal; a line per epoch where output goes to a file (a batch
    job's log) or the recipe turns the bar off."""
    return bool(spec.progress_bar) and sys.stdout.isatty()


def _silence_lightning() -> None:
    """Lightning's start-up notes (GPU/TPU availability, tips) are not for esszoo's users."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_trainer(
    recipe: Recipe,
    run_dir: Path,
    callbacks: list[Callback],
    volumes: bool = False,
    **options: Any,
) -> L.Trainer:
    """The Lightning Trainer `esszoo train` uses for `recipe`, with extra `callbacks`
    (and Trainer `options`, e.g. limit_train_batches for benchmarks)."""
    _silence_lightning()
    spec = recipe.trainer
    accelerator = resolve_accelerator(spec.accelerator)
    if resolve_compile(spec.compile):
        callbacks = [*callbacks, Compile()]
    callbacks = [
        *callbacks,
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor="val_loss",
            save_last=True,
            enable_version_counter=False,
        ),
    ]
    if spec.early_stopping:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=spec.early_stopping))
    settings: dict[str, Any] = dict(
        max_epochs=spec.max_epochs,
        accelerator=accelerator,
        devices=spec.devices,
        num_nodes=spec.num_nodes,
        precision=resolve_precision(spec.precision, accelerator, volumes),
        deterministic=spec.deterministic,
        # esszoo's grids keep one shape per run: let cuDNN pick its fastest convolutions
        benchmark=accelerator == "cuda" and not spec.deterministic,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=show_progress_bar(spec),
        enable_model_summary=False,
        default_root_dir=run_dir,
        plugins=[AtomicCheckpointIO()],
    )
    return L.Trainer(**(settings | options))


def _train(
    recipe: Recipe, run_dir: Path, resume: bool, cores: CoreShare, extra: list[Callback]
) -> Path:
    spec = recipe.trainer
    if cores.threads < (os.cpu_count() or 1):
        print(f"note: {cores.describe()}")
    L.seed_everything(spec.seed, workers=True, verbose=False)
    task_type = task_class(recipe.task.name)
    card = model_card(recipe.model.name)
    if task_type.card_models_only and task_type.name not in card.tasks:
        raise RecipeError(
            f"model '{card.name}' is not a model of the {task_type.name} task",
            f"choose one of: {', '.join(list_models(task=task_type.name))}",
        )
    data = build_data(recipe)
    for note in data.notes:
        print(f"note: {note}")
    arguments = recipe.model.arguments()
    takes_mask = "mask" in model_card(recipe.model.name).inputs or bool(
        arguments.get("partial_conv")
    )
    shape = task_type.model_shape(data, takes_mask, recipe.task)
    taken = model_arguments(recipe.model.name)
    shape = {k: v for k, v in shape.items() if k in taken or k not in task_type.optional_shape}
    net = create_model(recipe.model.name, **shape, **arguments)
    if recipe.uncertainty is not None:
        net = uncertain_model(recipe, net, shape, arguments, data)
    if recipe.init_from and not resume:
        report = init_from_checkpoint(net, recipe.init_from, data.inputs)
        print(
            f"started from {recipe.init_from}: {len(report['copied'])} tensors copied, "
            f"first layer adapted by variable name: {report['adapted'] or 'no'}, "
            f"{len(report['kept_fresh'])} kept fresh"
        )
    task = build_task(recipe, net)
    if data.streamed:  # left on disk: statistics by blocks, batches from worker processes
        loaders = task.stream_loaders(data, spec.batch_size, spec.seed)
        sample = data.train.head(1).x
    else:
        tensors = task.prepare(data)
        sample = tensors["train"]["x"]
    # written once data and model are known good: a recipe whose data fail leaves no run
    if launch_rank() == 0:
        write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
    # fields (N, C, H, W) and volumes (N, C, D, H, W); series (N, T, C) are neither
    fields, volumes = sample.dim() in (4, 5), sample.dim() == 5
    last = run_dir / LAST_CHECKPOINT
    start_epoch = _checkpoint_epoch(last) if resume else 0
    history = MetricsHistory(
        run_dir / "metrics.csv",
        _read_history(run_dir / "metrics.csv", start_epoch),
        echo=not show_progress_bar(spec),
    )
    callbacks: list[Callback] = [StopOnNonFinite(run_dir), history, ShareCores(cores), *extra]
    if resolve_memory_format(spec.memory_format, fields) == "channels_last":
        callbacks.append(ChannelsLast(volumes=volumes))
    trainer = make_trainer(recipe, run_dir, callbacks, volumes=volumes)
    if not data.streamed:
        loaders = memory_loaders(tensors, spec, trainer.strategy.root_device)
    trainer.fit(task, *loaders, ckpt_path=last if resume else None, weights_only=True)
    members = []  # an ensemble's other members: every process of a DDP run trains them
    if recipe.uncertainty is not None and recipe.uncertainty.method == "ensemble":
        members = train_members(recipe, run_dir, cores)
    if not trainer.is_global_zero:
        return run_dir
    best = run_dir / "checkpoints" / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        task.load_state_dict(state)
    predictor = task.predictor().cpu().float().eval()
    if not data.classes:  # outputs in physical units: clipped to the targets' bounds
        predictor.bound(data.targets).set_training_range(*task.target_range(data))
    # the model is saved before it is scored, so a failing baseline loses nothing
    checkpoint.save(
        predictor,
        run_dir,
        tensors=data.grid.tensors() if data.grid else None,
        **describe_run(recipe, data, trainer, history),
    )
    rows, predictions, truth = score_rows(
        task,
        predictor,
        data,
        "test",
        model_label=task.label(recipe.model.name),
        same_baselines=baseline_key(recipe),
    )
    write_csv(rows, run_dir / "scores.csv")
    plots.loss_curves(history.rows, run_dir / "loss_curve.png", title=recipe.name)
    task.plot(predictions, truth, data, run_dir / task.plot_file)
    print_table(rows, f"{recipe.name}: test split ({len(data.test)} samples)", task.printed_scores)
    if recipe.uncertainty is not None:
        _score_uncertainty(recipe, task, predictor, data, run_dir, members)
    print(f"run written to {run_dir}")
    print(f"maps and plots: {run_dir / task.plot_file}, {run_dir / 'loss_curve.png'}")
    return run_dir


def baseline_key(recipe: Recipe) -> str:
    """What a run's baselines depend on: its data, its task and its seed."""
    return json.dumps(
        [
            recipe.data.model_dump(mode="json"),
            recipe.task.model_dump(mode="json"),
            recipe.trainer.seed,
        ],
        sort_keys=True,
    )


def uncertain_model(
    recipe: Recipe, net: torch.nn.Module, shape: dict, arguments: dict, data: Any
) -> torch.nn.Module:
    """The network of a recipe with an uncertainty section: made Bayesian for method bayes
    (unless it is already), checked to draw by its method."""
    method = recipe.uncertainty.method
    if data.streamed:
        raise RunError(
            "uncertainty needs the data in memory: its draws are scored on the whole test split",
            "set data.stream: false, or remove the uncertainty section",
        )
    if method == "bayes" and not bayesian_layers(net) and "bayesian" not in arguments:
        net = create_model(recipe.model.name, **shape, **arguments, bayesian={})
    check_model(net, method, recipe.model.name)
    return net


def _score_uncertainty(
    recipe: Recipe,
    task: Any,
    predictor: torch.nn.Module,
    data: Any,
    run_dir: Path,
    member_runs: list[Path],
) -> None:
    """Draws of the test predictions (for an ensemble, of `predictor` and its other
    members' runs) scored beside a climatological ensemble: uncertainty.csv and
    reliability.png."""
    test = data.tables["test"]
    inputs = task_inputs(test)
    label = task.label(recipe.model.name)
    members = [predictor] + [checkpoint.load(run) for run in member_runs]
    truth = task.scored_truth(test)  # NaN where a prediction is not judged
    rows, ensembles = score_uncertainty(
        lambda member: predict_in_batches(member, *inputs),
        members,
        recipe.uncertainty,
        truth,
        data.tables["train"].y,
        label,
    )
    rows = with_units(rows, data)
    write_csv(rows, run_dir / "uncertainty.csv")
    reliability_plot(ensembles, truth, run_dir / "reliability.png", recipe.name)
    task.plot_spread(ensembles[label], test, data, run_dir)
    print_table(rows, f"{recipe.name}: draws of the test split ({recipe.uncertainty.method})")


def member_dirs(run_dir: Path, members: int) -> list[Path]:
    """Where the members of an ensemble other than the run itself are kept."""
    return [run_dir / "members" / f"member_{k}" for k in range(1, members)]


def train_members(recipe: Recipe, run_dir: Path, cores: CoreShare) -> list[Path]:
    """The ensemble's other members: the recipe with seeds seed + 1, seed + 2, ...; in a
    run of several processes each takes part in each member's training, and rank 0 owns
    the members' directories as it owns the run's."""
    runs = []
    count = recipe.uncertainty.members
    for k, member_dir in enumerate(member_dirs(run_dir, count), start=1):
        seed = recipe.trainer.seed + k
        print(f"ensemble member {k + 1} of {count} (seed {seed})")
        member = recipe.model_copy(
            update={
                "name": member_dir.name,
                "out_dir": str(member_dir.parent),
                "uncertainty": None,
                "trainer": recipe.trainer.model_copy(update={"seed": seed}),
            }
        )
        if launch_rank() > 0:
            runs.append(_train(member, member_dir, False, cores, []))
            continue
        with RunLock(member_dir):
            _prepare_run_dir(member_dir, resume=False, overwrite=True)
            runs.append(_train(member, member_dir, False, cores, []))
    return runs


def memory_loaders(
    tensors: dict[str, dict[str, torch.Tensor]], spec: Any, device: torch.device
) -> tuple[TensorBatches, TensorBatches]:
    """The training and validation batches of splits held in memory: kept on the run's
    device where they fit (`trainer.data_on_device`), grouped for small batches."""
    splits, note = on_device(
        {name: tensors[name] for name in ("train", "val")}, device, spec.data_on_device
    )
    if note and launch_rank() == 0:
        print(f"note: {note}")
    sample = splits["train"]["x"]
    train = TensorBatches(
        splits["train"],
        spec.batch_size,
        shuffle=True,
        seed=spec.seed,
        group=group_for(sample[0], spec.batch_size),
    )
    return train, TensorBatches(splits["val"], spec.batch_size if sample.dim() > 2 else 8192)


def _checkpoint_epoch(path: Path) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return int(state.get("epoch", 0)) + 1


def describe_run(recipe: Recipe, data: Any, trainer: L.Trainer, history: MetricsHistory) -> dict:
    """What model.json says about the data and training beyond the model itself."""
    val_losses = [row["val_loss"] for row in history.rows if row.get("val_loss") is not None]
    return {
        "inputs": [v.to_dict() for v in data.inputs],
        "outputs": [v.to_dict() for v in data.targets],
        "classes": list(data.classes),
        "grid": data.grid.describe() if data.grid else None,
        "notes": list(data.notes),
        "task": recipe.task.model_dump(mode="json"),
        "data": {
            "source": recipe.data.source,
            "dims": list(data.dims),
            "physics": data.physics,
            "split": data.split.to_dict(),
            "samples": {name: len(table) for name, table in data.tables.items()},
            "dropped_for_missing_values": data.dropped,
        },
        "training": {
            "epochs": len(history.rows),
            "best_val_loss": min(val_losses) if val_losses else None,
            "precision": str(trainer.precision),
            "accelerator": type(trainer.accelerator).__name__,
            "seed": recipe.trainer.seed,
        },
        "recipe": recipe.model_dump(mode="json"),
    }
