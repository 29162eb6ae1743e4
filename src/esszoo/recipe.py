"""The YAML recipe: everything a run needs, validated before anything runs.

A recipe names a model, its data, its task and the trainer settings. Unknown keys and
values of the wrong type are errors that name the key (with the nearest valid one), so a
typo never silently falls back to a default. ``key=value`` overrides on the command line
(``trainer.max_epochs=5``) are applied before validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from esszoo.errors import RecipeError, did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(BaseModel):
    """The model's registered name; every other key is a constructor argument."""

    model_config = ConfigDict(extra="allow")
    name: str

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SplitSpec(Strict):
    """Contiguous blocks along `dim`: fractions of its length, or [first, last] dates.

    ``shuffle`` permutes samples that are not a series (e.g. digits) before cutting; it
    is refused along a time coordinate.
    """

    dim: str = "time"
    train: float | list[str] = 0.7
    val: float | list[str] = 0.15
    test: float | list[str] = 0.15
    shuffle: bool = False


class GapSpec(Strict):
    """Gap patterns laid over complete fields (inpainting): real shapes from `sources`."""

    sources: list[Literal["coast", "cloud"]] = ["coast", "cloud"]
    train: int = Field(default=16, ge=1, description="patterns per training field")
    eval: int = Field(default=4, ge=1, description="patterns per validation or test field")


class TrainOnSpec(Strict):
    """Train on another source (e.g. model output), regridded to the data's grid."""

    source: str
    variable: str


class WindowSpec(Strict):
    """Windows of consecutive fields: `past` frames in, the next `future` frames out."""

    past: int = Field(ge=1)
    future: int = Field(ge=1)
    stride: int = Field(default=1, ge=1, description="frames between window starts")


class DataSpec(Strict):
    source: str = Field(description="a built-in data set (esszoo data list) or a file path")
    inputs: list[str]
    targets: list[str] = []
    physics: str | None = Field(
        default=None, description="targets computed by this esszoo.physics function"
    )
    label_rule: str | None = Field(
        default=None, description="class labels from the inputs by this esszoo.data.labels rule"
    )
    coarsen: dict[str, int] = Field(
        default_factory=dict, description="block means of the input grids, e.g. {y: 2, x: 2}"
    )
    gaps: GapSpec = GapSpec()
    window: WindowSpec | None = None
    train_on: TrainOnSpec | None = None
    split: SplitSpec = SplitSpec()
    stream: bool = Field(
        default=False,
        description="translation: leave the data on disk and read a block of time steps at "
        "a time (data larger than memory)",
    )
    stream_block: int = Field(
        default=64, ge=1, description="time steps per block read (whole chunks of the store)"
    )
    stream_workers: int = Field(
        default=2, ge=0, description="worker processes reading blocks ahead of training"
    )


class TaskSpec(Strict):
    name: str = "regression"
    loss: Literal["mse", "mae", "huber", "cross_entropy", "l1"] | None = Field(
        default=None, description="the task's own default when not given"
    )
    residual_of: str | None = Field(
        default=None, description="learn the residual of this esszoo.physics function (hybrid)"
    )
    class_weights: Literal["balanced"] | list[float] | None = Field(
        default=None, description="classification: weights of the classes in the loss"
    )
    aux_weight: float = Field(
        default=0.3, ge=0, description="weight of auxiliary heads' losses (GoogLeNet: 0.3)"
    )
    loss_weights: dict[str, float] | None = Field(
        default=None, description="inpainting: weights of valid, hole, tv, perceptual, style"
    )
    dice_weight: float = Field(
        default=1.0, ge=0, description="segmentation: weight of the Dice term beside cross-entropy"
    )
    anomalies: bool = Field(
        default=False,
        description="inpainting: learn anomalies from the training split's mean at each point",
    )
    vgg_weights: str | None = Field(
        default=None, description="inpainting: an esszoo vgg16 checkpoint for perceptual/style"
    )


class TrainerSpec(Strict):
    max_epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=256, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["cosine", "none"] = "cosine"
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

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: ModelSpec
    data: DataSpec
    task: TaskSpec = TaskSpec()
    trainer: TrainerSpec = TrainerSpec()
    init_from: str | None = Field(
        default=None,
        description="a run or checkpoint to start from; the first layer is adapted by "
        "variable name",
    )
    out_dir: str = "runs"

    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _valid_keys(model: type[BaseModel], location: tuple) -> list[str]:
    """The field names valid at `location` (a path of keys) in the schema."""
    for key in location[:-1]:
        field = model.model_fields.get(str(key))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _explain(error: ValidationError, where: str) -> RecipeError:
    errors = error.errors()
    # An unknown key explains the errors it causes (a misspelt section is also "missing").
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    location = tuple(first["loc"])
    key = ".".join(str(part) for part in location)
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        near = did_you_mean(str(location[-1]), _valid_keys(Recipe, location))
        valid = ", ".join(_valid_keys(Recipe, location))
        return RecipeError(
            f"unknown recipe key '{key}' in {where}{more}", near or f"valid keys here: {valid}"
        )
    if first["type"] == "missing":
        return RecipeError(f"the recipe key '{key}' is missing in {where}{more}", "add it")
    value = first.get("input")
    return RecipeError(
        f"recipe key '{key}' in {where}: {first['msg'].lower()} (got {value!r}){more}",
        "fix the value in the recipe or the override",
    )


def parse_value(text: str) -> Any:
    """A command-line value as YAML (numbers, booleans, lists, null), else as text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 as text
        except ValueError:
            return value
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``dotted.key=value`` pairs into a copy of the raw recipe."""
    result = yaml.safe_load(yaml.safe_dump(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise RecipeError(
                f"override '{item}' is not of the form key=value", "e.g. trainer.max_epochs=5"
            )
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"override '{item}': '{part}' is not a section of the recipe")
            node = child
        node[parts[-1]] = parse_value(text)
    return result


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no recipe file '{path}'", "check the path (recipes/ holds examples)")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())[:160]
        raise RecipeError(f"'{path}' is not valid YAML ({reason})") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"'{path}' does not hold a recipe (a mapping of keys)")
    return raw


def validate(raw: dict[str, Any], where: str = "the recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as error:
        raise _explain(error, where) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate the recipe at `path`."""
    raw = apply_overrides(read_yaml(path), list(overrides or []))
    return validate(raw, where=str(path))
