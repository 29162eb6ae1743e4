"""Export a trained model for codes outside Python: TorchScript (FTorch, C++) and ONNX.

What is exported is the run's `Predictor`: physical inputs in, physical outputs out, with
the normalization (and a hybrid's physics base) inside, so that a Fortran model passes
its own kelvin and pascal and gets kilograms per square metre back. A model that takes a
mask beside the field (inpainting) is exported as a function of the field alone: NaN
marks the missing points, and the field comes back filled. Each export is
loaded again (TorchScript with torch.jit.load, ONNX with onnxruntime) and checked against
esszoo's own outputs on the run's test inputs within ``TOLERANCE``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from esszoo.checkpoint import load
from esszoo.errors import EsszooError, RunError
from esszoo.fileio import atomic_path
from esszoo.predictor import Predictor
from esszoo.tasks import DEFAULT_TASK, task_class

FORMATS = ("torchscript", "onnx")
INPUT_NAMES = ("x", "mask")  # the forward's arguments, in order (see ModelCard.inputs)
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
# |exported - esszoo| <= atol + rtol * (|esszoo| + its channel's mean |esszoo|), in output units
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


class ExportError(EsszooError):
    """A model cannot be exported, or its export does not reproduce esszoo's outputs."""


def example_inputs(run: str | Path, predictor: Predictor) -> torch.Tensor:
    """Real inputs to trace with and check against: the run's test split, else draws
    around the training mean."""
    from esszoo.run import build_data, run_recipe

    try:
        data = build_data(run_recipe(run))
        return data.test.head(512).x
    except RunError:
        count = len(predictor.description.get("inputs", [])) or 1
        mean = predictor.input_mean if predictor.input_mean is not None else torch.zeros(count)
        std = predictor.input_std if predictor.input_std is not None else torch.ones(count)
        generator = torch.Generator().manual_seed(0)
        return mean + std * torch.randn(64, len(mean), generator=generator)


def export_run(
    run: str | Path,
    format: Literal["torchscript", "onnx"],
    out: str | Path | None = None,
) -> tuple[Path, float]:
    """Export run `run`; return the file written and the largest error found on checking."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format '{format}'", f"choose one of {FORMATS}")
    predictor = load(run)
    card = predictor.description.get("card", {})
    if format not in card.get("export", FORMATS):
        raise ExportError(
            f"model '{card.get('name')}' does not export to {format}: {card.get('export_note')}"
        )
    task = task_class(predictor.description.get("task", {}).get("name", DEFAULT_TASK))
    module = task.exported(predictor).eval()
    x = task.export_example(predictor)
    x = example_inputs(run, predictor) if x is None else x
    with torch.no_grad():
        expected = module(x)
    target = Path(out) if out else Path(run) / f"model{SUFFIX[format]}"
    with atomic_path(target) as temporary:
        if format == "torchscript":
            _torchscript(module, predictor.description, x, temporary)
            reproduced = run_torchscript(temporary, x)
        else:
            _onnx(module, predictor.description, x, temporary)
            reproduced = run_onnx(temporary, x)
        error = _check(reproduced, expected, format)
    return target, error


def _check(reproduced: torch.Tensor, expected: torch.Tensor, format: str) -> float:
    difference = (reproduced - expected).abs()
    # relative to the value, or to the output channel's typical size where the value is
    # near zero (a heating rate crossing zero keeps the float32 error of its channel)
    channel_size = expected.abs().mean(dim=0, keepdim=True) if expected.dim() > 1 else 0.0
    allowed = TOLERANCE["atol"] + TOLERANCE["rtol"] * (expected.abs() + channel_size)
    if not bool((difference <= allowed).all()):
        raise ExportError(
            f"the {format} export differs from esszoo by up to {float(difference.max()):.3g}, "
            f"more than the tolerance {TOLERANCE}"
        )
    return float(difference.max())


def _batch(inputs: torch.Tensor | tuple[torch.Tensor, ...], size: int) -> tuple:
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    return tuple(tensor[:size] for tensor in inputs)


def _torchscript(
    module: torch.nn.Module,
    description: dict,
    x: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
) -> None:
    # the trace is checked against the eager module (`_check`): the tracer's warnings about
    # Python values it freezes (a fixed ODE time grid, say) say nothing more
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, _batch(x, 2), check_trace=False)
    traced = torch.jit.freeze(traced.eval())
    variables = {"inputs": description.get("inputs"), "outputs": description.get("outputs")}
    traced.save(str(path), _extra_files={"esszoo.json": json.dumps(variables)})


def _drop_empty_buffers(module: torch.nn.Module) -> None:
    """Buffers registered as None (a bound that a run does not have) become plain None
    attributes: torch.export (2.13) miscounts its inputs when one precedes a tensor."""
    for part in module.modules():
        for name in [name for name, value in part._buffers.items() if value is None]:
            del part._buffers[name]
            setattr(part, name, None)


def _onnx(
    module: torch.nn.Module,
    description: dict,
    x: torch.Tensor | tuple[torch.Tensor, ...],
    path: Path,
) -> None:
    inputs = _batch(x, 2)
    names = list(INPUT_NAMES[: len(inputs)])
    _drop_empty_buffers(module)
    shapes = {name: {0: torch.export.Dim.DYNAMIC} for name in names}
    program = torch.export.export(module, inputs, dynamic_shapes=shapes)
    onnx_program = torch.onnx.export(program, input_names=names, output_names=["y"], verbose=False)
    onnx_program.save(str(path), external_data=False)
    import onnx

    model = onnx.load(str(path))
    for key, value in (
        ("esszoo_inputs", description.get("inputs")),
        ("esszoo_outputs", description.get("outputs")),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))


def run_torchscript(path: Path, x: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(*(x if isinstance(x, tuple) else (x,)))


def run_onnx(path: Path, x: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    import onnxruntime

    inputs = x if isinstance(x, tuple) else (x,)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = INPUT_NAMES[: len(inputs)]
    feed = {n: t.numpy().astype(np.float32) for n, t in zip(names, inputs, strict=True)}
    (output,) = session.run(None, feed)
    return torch.from_numpy(output)
