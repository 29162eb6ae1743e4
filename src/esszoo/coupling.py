"""An esszoo emulator inside a running climt model, through its exported form.

In climt's column model RRTMG is a sympl `TendencyComponent`: the state in, a tendency of
air temperature and diagnostics out. `EmulatedRadiation` is one too. It reads the run's
model.json for which variables the emulator takes, in which units and layout, and calls
the exported TorchScript file (`esszoo export RUN --format torchscript`, model.pt), or
the ONNX one, never the Python model. That is the contract a Fortran model calls through
FTorch, so the coupled run tests what a host model would run.

`couple` runs climt's radiative-convective columns twice from one start, with RRTMG and
with the emulators in its place. It records the daily mean temperature and humidity
profiles of both runs, their drift apart, whether the coupled run stays stable (a
column that leaves the possible states stops it, `ColumnBlowUp`), and the wall time per
simulated day.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from esszoo.data.columns import slices
from esszoo.data.variables import Variable
from esszoo.errors import RunError
from esszoo.fileio import atomic_path, make_folder
from esszoo.units import same

# esszoo's column variable -> (climt's state name, its units there, esszoo's units)
CLIMT_INPUTS = {
    "ta": ("air_temperature", "degK", "K"),
    "hus": ("specific_humidity", "kg/kg", "kg kg-1"),
    "o3": ("mole_fraction_of_ozone_in_air", "mole/mole", "mol mol-1"),
    "pfull": ("air_pressure", "Pa", "Pa"),
    "phalf": ("air_pressure_on_interface_levels", "Pa", "Pa"),
    "ts": ("surface_temperature", "degK", "K"),
    "ps": ("surface_air_pressure", "Pa", "Pa"),
    "co2": ("mole_fraction_of_carbon_dioxide_in_air", "dimensionless", "mol mol-1"),
    "albedo": ("surface_albedo_for_direct_shortwave", "dimensionless", "1"),
    "coszen": ("zenith_angle", "radians", "1"),
}
PROFILE_DIMS = {"level": "mid_levels", "interface": "interface_levels"}
HELD_ON_LEVELS = {"co2"}  # scalars of a column that climt holds on every level
BANDS = {  # the heating rate an emulator outputs -> its band
    "tendency_of_air_temperature_due_to_longwave_heating": "longwave",
    "tendency_of_air_temperature_due_to_shortwave_heating": "shortwave",
}


def _sympl_component_class():  # noqa: ANN202 (sympl is imported only where coupling runs)
    from sympl import TendencyComponent

    class EmulatedRadiation(TendencyComponent):
        """An exported esszoo radiation emulator in RRTMG's place in a climt model."""

        tendency_properties = {"air_temperature": {"units": "degK day^-1"}}
        input_properties: dict = {}  # set per emulator, from its model.json
        diagnostic_properties: dict = {}

        def __init__(self, run: str | Path, format: str = "torchscript"):
            self.run = Path(run)
            self.call_seconds = 0.0
            self.calls = 0
            self._layout(_description(self.run))
            self._forward = _exported(self.run, format)
            super().__init__(name=f"emulated_{self.band}")

        def _layout(self, description: dict[str, Any]) -> None:
            self.inputs = [Variable.from_dict(v) for v in description["inputs"]]
            self.outputs = [Variable.from_dict(v) for v in description["outputs"]]
            heating = [v for v in self.outputs if v.standard_name in BANDS]
            if not heating:
                raise RunError(
                    f"the run {self.run} outputs no heating rate (standard names {sorted(BANDS)})",
                    "couple an emulator of recipes/emulate_rrtmg_lw.yaml or _sw.yaml",
                )
            self.heating, self.band = heating[0], BANDS[heating[0].standard_name]
            self.output_slices = slices(self.outputs)
            properties = {}
            for variable in self.inputs:
                if variable.name not in CLIMT_INPUTS:
                    raise RunError(
                        f"the emulator's input '{variable.name}' is not a state of climt's "
                        f"column model; it knows {sorted(CLIMT_INPUTS)}"
                    )
                climt_name, units, expected = CLIMT_INPUTS[variable.name]
                if not same(variable.units, expected):
                    raise RunError(
                        f"the emulator takes '{variable.name}' in '{variable.units}'; the "
                        f"coupling gives it in {expected}",
                        "train the emulator on the rrtmg_columns data (or convert there)",
                    )
                if variable.vertical:
                    dims = [PROFILE_DIMS[variable.vertical], "*"]
                elif variable.name in HELD_ON_LEVELS:
                    dims = ["mid_levels", "*"]
                else:
                    dims = ["*"]
                properties[climt_name] = {"dims": dims, "units": units}
            self.input_properties = properties
            self.diagnostic_properties = {
                f"air_temperature_tendency_from_{self.band}": {
                    "dims": ["mid_levels", "*"],
                    "units": "degK day^-1",
                }
            }

        def array_call(self, state: dict[str, np.ndarray]) -> tuple[dict, dict]:
            columns = []
            for variable in self.inputs:
                values = np.asarray(state[CLIMT_INPUTS[variable.name][0]])
                if variable.name == "coszen":
                    values = np.cos(values)
                if variable.vertical:
                    columns.append(values.T)  # (vertical, column) -> (column, vertical)
                elif values.ndim == 2:  # a mixing ratio held on levels: its lowest value
                    columns.append(values[0][:, None])
                else:
                    columns.append(values[:, None])
            x = torch.from_numpy(np.concatenate(columns, axis=1).astype(np.float32))
            started = time.perf_counter()
            y = self._forward(x)
            self.call_seconds += time.perf_counter() - started
            self.calls += 1
            heating = y[:, self.output_slices[self.heating.name]].astype(np.float64).T
            return {"air_temperature": heating}, {
                f"air_temperature_tendency_from_{self.band}": heating
            }

    return EmulatedRadiation


def emulated_radiation(run: str | Path, format: str = "torchscript"):  # noqa: ANN201
    """The sympl component that runs the exported emulator of `run` (see the module)."""
    return _sympl_component_class()(run, format)


def _description(run: Path) -> dict[str, Any]:
    from esszoo.checkpoint import read_description

    return read_description(run)[0]


def _exported(run: Path, format: str):  # noqa: ANN202 (a callable on float32 tensors)
    """The run's exported model as a function (N, features) -> (N, outputs) numpy."""
    from esszoo.export import FORMATS, SUFFIX, export_run

    if format not in FORMATS:
        raise RunError(f"unknown export format '{format}'", f"choose one of {FORMATS}")
    path = run / f"model{SUFFIX[format]}"
    if not path.is_file():
        export_run(run, format)
    if format == "torchscript":
        module = torch.jit.load(str(path))

        def forward(x: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return module(x).numpy()

        return forward
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def online_states(
    runs: list[str | Path],
    path: str | Path,
    *,
    columns: int = 24,
    days: float = 20,
    spin_up: timedelta = timedelta(days=1),
    seed: int = 200,
    format: str = "torchscript",
    log: Any = print,
) -> Path:
    """The states climt's columns visit with the emulators of `runs` in RRTMG's place,
    labelled by RRTMG, written to `path` in the layout of the `rrtmg_columns` data.

    They are what the emulators meet online and their training lacked: training again
    with them beside the original data (`data.train_extra`) is the remedy of imitation
    learning (DAgger, Ross, Gordon & Bagnell 2011, AISTATS) that Rasp (2020, Geosci.
    Model Dev. 13, 2185-2196) applied to coupled parameterizations. Column climates are
    drawn with their own `seed`, apart from the training runs' and `couple`'s."""
    from esszoo.data.simulated import simulate_rrtmg_columns

    emulators = {e.band: e for e in (emulated_radiation(run, format) for run in runs)}
    return simulate_rrtmg_columns(
        Path(path),
        runs=columns,
        days=days,
        spin_up=spin_up,
        seed=seed,
        longwave=emulators.get("longwave"),
        shortwave=emulators.get("shortwave"),
        log=log,
    )


@dataclass
class OnlineRun:
    """Daily mean profiles of one coupled run, and what it cost."""

    label: str
    temperature: list[np.ndarray]  # per day: (column, level) K
    humidity: list[np.ndarray]  # per day: (column, level) kg kg-1
    seconds: float = 0.0
    radiation_seconds: float = 0.0
    blew_up: float | None = None  # the day it stopped, if it did


def couple(
    runs: list[str | Path],
    *,
    days: int = 100,
    columns: int = 8,
    seed: int = 100,
    format: str = "torchscript",
    out: str | Path | None = None,
    log: Any = print,
) -> Path:
    """climt's radiative-convective columns with RRTMG and with the emulators of `runs`
    in its place (a longwave and/or a shortwave one), side by side from one start for
    `days`; writes online.nc, online_drift.csv, online_cost.csv and online.png to `out`
    (default: the first run's folder `online/`). Column climates are drawn afresh
    (`seed`), unseen in training."""
    from esszoo.physics.column_model import ColumnBlowUp, ColumnModel, draw_columns

    emulators = [emulated_radiation(run, format) for run in runs]
    bands = {e.band: e for e in emulators}
    if len(bands) != len(emulators):
        raise RunError("give at most one longwave and one shortwave emulator")
    settings = draw_columns(columns, seed)
    models = {
        "RRTMG": ColumnModel(settings),
        "emulator": ColumnModel(
            settings, longwave=bands.get("longwave"), shortwave=bands.get("shortwave")
        ),
    }
    steps_per_day = round(timedelta(days=1) / timedelta(minutes=10))
    results = {}
    for label, model in models.items():
        record = OnlineRun(label, [], [])
        radiation = [model.longwave, model.shortwave]
        started = time.perf_counter()
        try:
            for day in range(days):
                temperature = humidity = 0.0
                for _ in range(steps_per_day):
                    model.step()
                    temperature = temperature + model.state["air_temperature"].values[:, 0, :].T
                    humidity = humidity + model.state["specific_humidity"].values[:, 0, :].T
                record.temperature.append(temperature / steps_per_day)
                record.humidity.append(humidity / steps_per_day)
                if (day + 1) % 10 == 0:
                    log(f"  {label}: day {day + 1} of {days}")
        except ColumnBlowUp as blow_up:
            record.blew_up = blow_up.days
            log(f"  {label}: {blow_up.what}")
        record.seconds = time.perf_counter() - started
        record.radiation_seconds = sum(getattr(r, "call_seconds", 0.0) for r in radiation)
        results[label] = record
    folder = make_folder(Path(out) if out else Path(runs[0]) / "online")
    dataset = _as_dataset(results, settings, days, [str(r) for r in runs])
    with atomic_path(folder / "online.nc") as temporary:
        dataset.to_netcdf(temporary)
    _write_summary(results, dataset, folder)
    _plot(dataset, folder / "online.png")
    return folder


def _as_dataset(
    results: dict[str, OnlineRun], settings: Any, days: int, runs: list[str]
) -> xr.Dataset:
    """(model, day, column, level); days after a blow-up are NaN."""
    levels = results["RRTMG"].temperature[0].shape[1]

    def stack(name: str) -> np.ndarray:
        out = np.full((len(results), days, len(settings), levels), np.nan)
        for m, record in enumerate(results.values()):
            values = getattr(record, name)
            if values:
                out[m, : len(values)] = np.stack(values)
        return out

    pressure = settings.surface_pressure  # for the plot's axis: the mean column's levels
    import climt

    grid = climt.get_grid(nx=1, ny=1, nz=levels)
    sigma = grid["air_pressure"].values[:, 0, 0] / grid["surface_air_pressure"].values[0, 0]
    dataset = xr.Dataset(
        {
            "ta": (
                ("model", "day", "column", "level"),
                stack("temperature"),
                {"units": "K", "standard_name": "air_temperature", "long_name": "daily mean"},
            ),
            "hus": (
                ("model", "day", "column", "level"),
                stack("humidity"),
                {
                    "units": "kg kg-1",
                    "standard_name": "specific_humidity",
                    "long_name": "daily mean",
                },
            ),
            "seconds_per_day": (
                "model",
                [r.seconds / max(len(r.temperature), 1) for r in results.values()],
                {"units": "s"},
            ),
            "radiation_seconds": (
                "model",
                [r.radiation_seconds for r in results.values()],
                {"units": "s", "long_name": "inside the emulators' calls"},
            ),
            "blew_up_after": (
                "model",
                [np.nan if r.blew_up is None else r.blew_up for r in results.values()],
                {"units": "days"},
            ),
        },
        coords={
            "model": list(results),
            "day": ("day", np.arange(1, days + 1), {"long_name": "simulated day from the start"}),
            "level": np.arange(levels),
            "pressure": ("level", sigma * pressure.mean() / 100.0, {"units": "hPa"}),
            **settings.as_coords("column"),
        },
        attrs={"emulators": ", ".join(runs), "history": "written by esszoo.coupling.couple"},
    )
    return dataset


def _write_summary(results: dict[str, OnlineRun], dataset: xr.Dataset, folder: Path) -> None:
    """online_drift.csv: how far the coupled run drifts from RRTMG's, by day;
    online_cost.csv: wall time per simulated day, and whether each run blew up."""
    from esszoo.run import write_csv

    difference_t = dataset["ta"].sel(model="emulator") - dataset["ta"].sel(model="RRTMG")
    difference_q = dataset["hus"].sel(model="emulator") / dataset["hus"].sel(model="RRTMG") - 1
    drift = []
    for day in sorted({1, 10, 30, 50, 100, dataset.sizes["day"]}):
        if day > dataset.sizes["day"]:
            continue
        dt, dq = difference_t.sel(day=day), difference_q.sel(day=day)
        drift.append(
            {
                "day": day,
                "ta_rmse_K": float(np.sqrt((dt**2).mean())),
                "ta_bias_K": float(dt.mean()),
                "ta_max_abs_K": float(np.abs(dt).max()),
                "hus_relative_rmse": float(np.sqrt((dq**2).mean())),
                "hus_relative_bias": float(dq.mean()),
            }
        )
    write_csv(drift, folder / "online_drift.csv")
    cost = [
        {
            "model": label,
            "simulated_days": len(record.temperature),
            "seconds_per_simulated_day": record.seconds / max(len(record.temperature), 1),
            "seconds_in_emulator_calls": record.radiation_seconds,
            "blew_up_after_days": record.blew_up,
        }
        for label, record in results.items()
    ]
    write_csv(cost, folder / "online_cost.csv")


def _plot(dataset: xr.Dataset, path: Path) -> None:
    from esszoo.plots import online_profiles

    online_profiles(dataset, path)


warnings.filterwarnings("ignore", message=".*ImplicitTendencyComponent.*")
