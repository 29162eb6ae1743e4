"""Self-describing checkpoints: ``model.safetensors`` (tensors) + ``model.json`` (the rest).

The safetensors file holds the network's weights under their own names, and, under
names that start with ``esszoo.``, the other tensors a model needs: the normalization
statistics of the training split (per channel, or per grid point for anomalies) and the
coordinates of the training grid. The JSON names the model and its constructor
arguments, carries its card, the input and output variables with their units, the grid's
description, the data source and split, and the versions and git commit that made it.
`load` rebuilds the model from these alone: no user code, and nothing is ever unpickled
(safetensors holds bare tensors; JSON holds plain values).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

import esszoo
from esszoo.errors import CheckpointError, ModelError
from esszoo.fileio import atomic_path
from esszoo.predictor import Predictor
from esszoo.registry import create_model, model_card

FORMAT = "esszoo-checkpoint"
FORMAT_VERSION = 2  # 1: normalization statistics as JSON lists (still read)
WEIGHTS = "model.safetensors"
DESCRIPTION = "model.json"
EXTRA = "esszoo."  # prefix of the tensors that are not the network's weights
# the Predictor's tensors: normalization, physical bounds, range of the training targets
STATISTICS = (
    "input_mean",
    "input_std",
    "output_mean",
    "output_std",
    "output_lower",
    "output_upper",
    "output_min",
    "output_max",
)


def git_commit() -> str:
    """The commit of the esszoo source tree, with '+dirty' if it has changes, else 'unknown'."""
    source = Path(esszoo.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def save(
    model: torch.nn.Module,
    directory: str | Path,
    *,
    tensors: dict[str, torch.Tensor] | None = None,
    **description: Any,
) -> Path:
    """Write `model` (a zoo model or a `Predictor` around one) to `directory`.

    `tensors` (e.g. the grid's coordinates) go to the safetensors file beside the weights;
    extra keyword arguments (``inputs``, ``outputs``, ``data``, ``task``, ...) are stored in
    the JSON as given; they must be JSON values.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model)
    spec = getattr(predictor.net, "esszoo_spec", None)
    if spec is None:
        raise ModelError(
            "esszoo.save needs a model built by esszoo.create_model",
            "build it with esszoo.create_model(name, ...) so its name and arguments are known",
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in predictor.net.state_dict().items()}
    statistics = {
        name: getattr(predictor, name)
        for name in STATISTICS
        if getattr(predictor, name) is not None
    }
    extra = {f"normalization.{name}": value for name, value in statistics.items()}
    extra |= dict(tensors or {})
    # copies: statistics may share memory (inpainting's input and output means are one)
    weights |= {EXTRA + key: value.detach().cpu().clone() for key, value in extra.items()}
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"name": spec["name"], "arguments": spec["arguments"]},
        "card": model_card(spec["name"]).to_dict(),
        "normalization": {
            "statistics": {name: list(value.shape) for name, value in statistics.items()},
            "fill_missing": predictor.fill_missing,
            "mask_channels": predictor.mask_channels,
            "channels_last": predictor.channels_last,
            "distribution": predictor.distribution,
        },
        "tensors": sorted(extra),
        "base": {"physics": predictor.base, "columns": predictor.base_columns},
        **description,
        "versions": {
            "esszoo": esszoo.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "git_commit": git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    payload = safetensors_bytes(weights, metadata={"format": FORMAT})
    record["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    # Both files go to temporary names and are renamed only once both are complete, so an
    # interrupted save leaves the previous pair as it was.
    with (
        atomic_path(directory / WEIGHTS) as weights_file,
        atomic_path(directory / DESCRIPTION) as description_file,
    ):
        weights_file.write_bytes(payload)
        description_file.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return directory


def read_description(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The JSON record of a checkpoint and the path of its weights."""
    path = Path(path)
    if path.is_dir():
        path = path / DESCRIPTION
    elif path.suffix == ".safetensors":
        path = path.with_name(DESCRIPTION)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at '{path}'",
            f"give a run directory or the path of a {DESCRIPTION} written by esszoo",
        )
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"'{path}' is not valid JSON ({error})", "the file is corrupt"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is not an esszoo checkpoint description")
    if record.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' was written by a newer esszoo (format {record['format_version']})",
            "upgrade esszoo",
        )
    return record, path.with_name(WEIGHTS)


def load(path: str | Path) -> Predictor:
    """Rebuild the model saved at `path` (a run directory, model.json or model.safetensors).

    Returns a `Predictor`: physical inputs in, physical outputs out, in eval mode. Its
    ``description`` attribute holds the checkpoint's JSON record.
    """
    record, weights_path = read_description(path)
    try:
        name = record["model"]["name"]
        arguments = dict(record["model"]["arguments"])
        normalization = record.get("normalization", {})
        base = record.get("base") or {}
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"'{path}' lacks the entry {error}", "the file is corrupt") from None
    net = create_model(name, **arguments)
    if not weights_path.is_file():
        raise CheckpointError(f"the weights file '{weights_path}' is missing")
    expected_sum = record.get("weights_sha256")
    if expected_sum and hashlib.sha256(weights_path.read_bytes()).hexdigest() != expected_sum:
        raise CheckpointError(
            f"'{weights_path}' is not the weights file its {DESCRIPTION} describes "
            "(its sha256 differs)",
            "the pair was mixed up or edited; restore both files from the same save",
        )
    try:
        weights = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read weights '{weights_path}' ({str(error)[:120]})", "the file is corrupt"
        ) from None
    extra = {k[len(EXTRA) :]: weights.pop(k) for k in list(weights) if k.startswith(EXTRA)}
    _check_weights(net, weights, name, weights_path)
    net.load_state_dict(weights, strict=True)
    # format 1 kept the statistics in the JSON, as lists
    statistics = {
        key: extra.get(f"normalization.{key}", normalization.get(key)) for key in STATISTICS
    }
    predictor = Predictor(
        net,
        **statistics,
        base=base.get("physics"),
        base_columns=base.get("columns") or (),
        fill_missing=bool(normalization.get("fill_missing", False)),
        mask_channels=bool(normalization.get("mask_channels", False)),
        channels_last=bool(normalization.get("channels_last", False)),
        distribution=normalization.get("distribution"),
    )
    predictor.description = record
    predictor.tensors = extra  # the grid's coordinates, ... (without the prefix)
    predictor.members = _ensemble_members(record, weights_path.parent)
    return predictor.eval()


def _ensemble_members(record: dict[str, Any], directory: Path) -> list[Predictor]:
    """The other members of a run trained as an ensemble (uncertainty.method ensemble),
    kept in its members/ folder."""
    uncertainty = record.get("recipe", {}).get("uncertainty") or {}
    if uncertainty.get("method") != "ensemble" or directory.parent.name == "members":
        return []
    folders = [directory / "members" / f"member_{k}" for k in range(1, uncertainty["members"])]
    missing = [str(folder) for folder in folders if not (folder / DESCRIPTION).is_file()]
    if missing:
        raise CheckpointError(
            f"the ensemble's member(s) {', '.join(missing)} are missing",
            "keep the run directory whole (its members/ folder), or train it again",
        )
    return [load(folder) for folder in folders]


def _check_weights(
    net: torch.nn.Module, weights: dict[str, torch.Tensor], name: str, path: Path
) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [
        f"{k} {tuple(weights[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        detail = wrong + [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
        raise CheckpointError(
            f"the weights in '{path}' do not fit model '{name}' as described "
            f"({len(detail)} mismatch(es), first: {detail[0]})",
            "the checkpoint belongs to another model or its JSON was edited",
        )
