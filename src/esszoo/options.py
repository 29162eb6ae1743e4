"""The schemas recipe sections are made of, shared by the recipe, the tasks and the data.

Each task module defines the options of its recipe section as a subclass of
`TaskOptions`; each data kind (`esszoo.data.kinds`) the options it reads as a subclass of
`DataOptions`. They are pydantic models that refuse unknown keys, so that `recipe.py`
can name a misspelt key, the nearest valid one, or the task it belongs to.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Options(BaseModel):
    """A recipe section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SplitOptions(Options):
    """Contiguous blocks along `dim`, in time order: fractions of its length, or
    [first, last] dates."""

    dim: str | None = Field(
        default=None, description="the dimension to split along; default: the data's time axis"
    )
    train: float | list[str] = 0.7
    val: float | list[str] = 0.15
    test: float | list[str] = 0.15

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of the data builders' split."""
        return dict(split_dim=self.dim, train=self.train, val=self.val, test=self.test)


class ShuffledSplitOptions(SplitOptions):
    """A split that may first permute samples that are not a series (e.g. digits)."""

    shuffle: bool = Field(
        default=False,
        description="permute the samples before cutting (refused along a time coordinate)",
    )

    def arguments(self) -> dict[str, Any]:
        return super().arguments() | dict(shuffle=self.shuffle)


class BoundOptions(Options):
    """Physical bounds of a target variable, in `units` (default: the variable's own)."""

    min: float | None = None
    max: float | None = None
    units: str | None = Field(default=None, description="e.g. degC for SST >= -1.9 degC")


class DataOptions(Options):
    """What every data kind reads: where the data are, which variables, how to split."""

    source: str = Field(description="a built-in data set (esszoo data list) or a file path")
    inputs: list[str] = Field(description="input variables by name")
    split: SplitOptions = SplitOptions()
    bounds: dict[str, BoundOptions] = Field(
        default_factory=dict,
        description="physical bounds of target variables, e.g. {pr: {min: 0}}; outputs are "
        "clipped to them (default: the variables' CF valid_min and valid_max)",
    )


class GridOptions(DataOptions):
    """Data on grids, which may be coarsened by block means."""

    coarsen: dict[str, int] = Field(
        default_factory=dict, description="block means of the input grids, e.g. {y: 2, x: 2}"
    )


class StreamableOptions(GridOptions):
    """Grids that may be left on disk (`data.stream: true`): how they are then read. Every
    data kind that can stream keeps these beside the switch, so that turning it off
    needs no other change."""

    stream_block: int = Field(
        default=64, ge=1, description="time steps per block read (whole chunks of the store)"
    )
    stream_workers: int = Field(
        default=2, ge=0, description="worker processes reading blocks ahead of training"
    )


class TaskOptions(Options):
    """What every task section holds; a task's own options subclass this."""

    name: str = Field(description="the task (esszoo tasks lists them)")
    kl_weight: float = Field(
        default=1.0,
        ge=0,
        description="for Bayesian networks (model.bayesian): the weight of KL[q || prior] / N "
        "added to the loss (Blundell et al. 2015, Eq. 8; N training samples); for models "
        "with a variational latent (latent_ode): the weight of its KL per target value",
    )


class TrainerOptions(Options):
    """Engineering of a run: optimisation, devices, precision, stopping."""

    max_epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=256, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["cosine", "none"] = "cosine"
    gradient_clip: float | None = Field(
        default=None, gt=0, description="largest norm of the gradients (DETR: 0.1); null: off"
    )
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed", "64"] = "auto"
    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(default=1, ge=1)
    seed: int = 0
    early_stopping: int | None = Field(
        default=10, ge=1, description="patience in epochs on the validation loss; null: off"
    )
    memory_format: Literal["auto", "contiguous", "channels_last"] = Field(
        default="auto", description="auto: channels_last for batches of 2-D fields"
    )
    compile: bool | Literal["auto"] = Field(
        default="auto",
        description="torch.compile the network; auto: off (no consistent gain measured on an "
        "H200, slower to start on CPUs; BENCHMARKS.md)",
    )
    progress_bar: bool = True
    deterministic: bool = False
    threads: int | Literal["auto"] = Field(
        default="auto",
        description="CPU threads of the run; auto: its share of the cores it may use "
        "(affinity, cgroup quota, SLURM_CPUS_PER_TASK and the like) beside the other esszoo "
        "runs on the machine",
    )

    data_on_device: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="the fraction of an accelerator's memory the training and validation "
        "tensors may take to be kept there for the run (batches gathered there, no copy per "
        "step); 0: copied a batch at a time",
    )

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, value: Any) -> Any:
        if value != "auto" and value < 1:
            raise ValueError("threads must be at least 1, or auto")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class UncertaintyOptions(Options):
    """The recipe's ``uncertainty`` section."""

    method: Literal["bayes", "mc_dropout", "ensemble"] = Field(
        description="bayes: Bayes by Backprop weights; mc_dropout: dropout on at prediction; "
        "ensemble: independently seeded members (a draw per member)"
    )
    samples: int = Field(
        default=30, ge=2, description="draws of each prediction (bayes, mc_dropout)"
    )
    members: int = Field(default=5, ge=2, description="members of an ensemble, the run included")
    seed: int = Field(default=0, description="the seed of the draws")


class SearchRange(Options):
    """A range of numbers to search: integers where both ends are, else floats; ``log``
    draws uniformly in the logarithm (learning rates); ``step`` spaces the values."""

    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @field_validator("high")
    @classmethod
    def _ordered(cls, value: float, info: Any) -> float:
        low = info.data.get("low")
        if low is not None and value < low:
            raise ValueError(f"high ({value}) is below low ({low})")
        return value

    def integers(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer() and not self.log


class CellSearchOptions(Options):
    """The supernet of a cell search (``--method darts`` or ``enas``) and its optimizers;
    the defaults are the papers' (DARTS section 3.1 and appendix A.1.1; ENAS section 3.2)."""

    width: int = Field(default=16, ge=1, description="channels of the first cells")
    cells: int = Field(default=8, ge=1, description="cells of the supernet")
    order: Literal[1, 2] = Field(default=2, description="DARTS: first or second order")
    remedy: Literal["none", "skip_cap", "auxiliary_skip"] = Field(
        default="none",
        description="against DARTS's collapse onto skips: P-DARTS's cap of 2 skips in the "
        "normal cell, or DARTS-'s auxiliary skip",
    )
    lr: float | None = Field(
        default=None, gt=0, description="the weights' SGD rate (default DARTS 0.025, ENAS 0.05)"
    )
    lr_min: float | None = Field(
        default=None, ge=0, description="where its cosine ends (DARTS 0.001, ENAS 0.0005)"
    )
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float | None = Field(default=None, ge=0, description="DARTS 3e-4, ENAS 1e-4")
    arch_lr: float = Field(default=3e-4, gt=0, description="DARTS: alpha's Adam rate")
    arch_weight_decay: float = Field(default=1e-3, ge=0, description="DARTS: alpha's decay")
    controller_lr: float = Field(default=3.5e-3, gt=0, description="ENAS: controller's Adam")
    entropy_weight: float = Field(default=1e-4, ge=0, description="ENAS: entropy bonus")
    baseline_decay: float = Field(default=0.99, ge=0, lt=1, description="ENAS: moving average")
    controller_steps: int = Field(
        default=30, ge=1, description="ENAS: controller steps after each epoch of the weights"
    )
    aggregate: int = Field(
        default=10, ge=1, description="ENAS: architectures sampled per controller step"
    )
    batch_size: int | None = Field(default=None, ge=1, description="default: trainer.batch_size")


class LayerSearchOptions(Options):
    """NAS with RL's own space (Zoph & Le 2017, section 4.1): the layers of a `nas_cnn`, each
    a filter height, width and count, and with ``skips`` the earlier layers it reads."""

    count: int = Field(default=6, ge=1, description="layers (the paper starts at 6)")
    heights: list[int] = Field(default=[1, 3, 5, 7], min_length=1)
    widths: list[int] = Field(default=[1, 3, 5, 7], min_length=1)
    filters: list[int] = Field(default=[24, 36, 48, 64], min_length=1)
    skips: bool = Field(default=True, description="anchor points choose each layer's inputs")

    @field_validator("heights", "widths")
    @classmethod
    def _odd(cls, value: list[int]) -> list[int]:
        if any(size < 1 or size % 2 == 0 for size in value):
            raise ValueError(
                f"filter sizes {value}: each odd and positive (1, 3, 5, 7), so that a layer "
                "keeps the grid"
            )
        return value

    @field_validator("filters")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(count < 1 for count in value):
            raise ValueError(f"numbers of filters {value}: each at least 1")
        return value


class SearchOptions(Options):
    """What `esszoo search` varies: dotted recipe keys, each a list of choices or a range.
    ``model.name`` chooses among zoo models; a ``model.*`` argument is searched for the
    models that take it. ``cells``: the supernet of a DARTS or ENAS search, whose found
    cells are retrained as the recipe's model (``darts``)."""

    space: dict[str, list[Any] | SearchRange] = Field(
        default_factory=dict,
        description="e.g. {model.name: [unet, deeplabv3plus], model.width: [8, 16], "
        "trainer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}",
    )
    cells: CellSearchOptions = Field(default_factory=CellSearchOptions)
    layers: LayerSearchOptions | None = Field(
        default=None,
        description="--method nas-rl: search the layers of a nas_cnn, as Zoph & Le, instead of "
        "the space; e.g. {count: 6}",
    )
    children_per_step: int = Field(
        default=4, ge=1, description="NAS with RL: children trained per controller step (m)"
    )
