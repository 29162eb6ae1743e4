"""Forecasting real series: the sequence models at every lead, beside the forecasters'
baselines, a peer library, and what pretraining buys.

- Two days of hourly air temperature from the last week (TMY3, two stations, 8760
  hours; split in time 70/15/15%, a window every 2 hours; at most 8 epochs each): LSTM,
  seq2seq without and with attention (the claim of Bahdanau et al. 2015: a fixed-size
  summary of a long input loses what a long forecast needs), and the Transformer, each
  a Gaussian forecast trained by its likelihood, against persistence, the
  calendar-month-and-hour climatology and a linear autoregression on the same windows,
  and neuralforecast's LSTM (benchmarks/forecast_peer.py) where it is installed. RMSE
  (K) at leads 1, 6, 12, 24 and 48 hours, and over all leads
  with CRPS. A TMY3 file is one typical year: the test block (mid-November to December)
  holds months the training block (January to mid-September) never saw, so the calendar
  climatology falls back to the training mean there, and every model forecasts a season
  it was not trained on; the models read the phase of the day, not of the year (whose
  test values training never saw).
- Pretraining on many series (recipes/pretrain_radolan_gpt.yaml, ..._bert.yaml: 107
  radar boxes, 10-16 May 2018) and fine-tuning on one day of one box
  (recipes/forecast_radolan_box_gpt.yaml, ..._bert.yaml), against the same forecaster
  trained on that day from scratch; the next hour of rain (mm/h) on 19-20 May.
- The built-in climate series (Nino 1+2, ONI, SOI, Mauna Loa CO2, HadCRUT5): an LSTM's
  Gaussian forecast against the same baselines, by CRPS.
- Radar nowcasting: ConvLSTM (Shi et al. 2015) beside UNet3D on the same DWD frames,
  with persistence and the task's regressions.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import esszoo
from benchmarks.common import ROOT, table
from esszoo.recipe import read_yaml

LEADS = (1, 6, 12, 24, 48)
PAST, FUTURE, STRIDE = 168, 48, 2  # a window every 2 hours

TEMPERATURE = {
    "data": {
        "source": "tmy3",
        "inputs": ["tas"],
        "window": {"past": PAST, "future": FUTURE, "stride": STRIDE},
        "time_features": ["daily"],  # the phase of a year of which the test months are unseen
        "split": {"train": 0.7, "val": 0.15, "test": 0.15},
    },
    "task": {"name": "forecasting", "distribution": "gaussian"},
    "trainer": {
        "max_epochs": 8,  # the same budget for every model (the attentive ones are slow)
        "batch_size": 256,
        "lr": 1.0e-3,
        "early_stopping": 4,
        "seed": 0,
        "progress_bar": False,
    },
}

MODELS = {
    "lstm": {"name": "lstm", "width": 64, "depth": 2},
    "seq2seq": {"name": "seq2seq", "width": 64, "depth": 2},
    "seq2seq_attention": {"name": "seq2seq_attention", "width": 64},
    "transformer": {"name": "transformer", "width": 64, "hidden": 256, "depth": 2, "heads": 4},
}

PRETRAINED = ("gpt", "bert")

# the built-in climate series: (variable, past, future) in their own steps
SERIES = {
    "nino12": ("sst", 24, 6),
    "oni": ("oni", 24, 6),
    "soi": ("soi", 24, 6),
    "co2": ("co2", 52, 13),
    "hadcrut5": ("tas_anomaly", 20, 5),
}


def run(sections: list[str] | None = None) -> str:
    chosen = {
        "temperature": temperature,
        "pretraining": pretraining,
        "series": climate_series,
        "nowcast": nowcast,
    }
    with tempfile.TemporaryDirectory() as folder:
        return "\n\n".join(
            section(Path(folder))
            for name, section in chosen.items()
            if not sections or name in sections
        )


def temperature(folder: Path) -> str:
    """Every model on the same windows; the baselines from the first run."""
    rows, baselines, seconds = [], None, {}
    for name, model in MODELS.items():
        start = time.perf_counter()
        run_dir = _train(TEMPERATURE | {"name": name, "model": model}, folder)
        seconds[name] = time.perf_counter() - start
        by_lead = _by_lead(run_dir)
        rows.append(_row(name, by_lead[name], seconds[name], _epochs(run_dir)))
        baselines = baselines or {k: v for k, v in by_lead.items() if k != name}
    base = [_row(name, scores, None, None) for name, scores in baselines.items()]
    # a model loses to the baselines better on CRPS (the headline), a peer without a
    # spread to those better on RMSE
    rows = [r + [_loses_to(r[7], {b[0]: b[7] for b in base})] for r in rows]
    rows += [b + [""] for b in base]
    peer = _peer()
    if isinstance(peer, str):
        note = f"neuralforecast: {peer}"
    else:
        rows += [r + [_loses_to(r[6], {b[0]: b[6] for b in base})] for r in peer]
        note = "neuralforecast's LSTM on the same windows (benchmarks/forecast_peer.py)"
    header = [
        "forecaster",
        *(f"RMSE {h} h" for h in LEADS),
        "RMSE",
        "CRPS",
        "epochs",
        "s",
        "loses to",
    ]
    return (
        f"Hourly air temperature, the next {FUTURE} h from the last {PAST} h (TMY3, two "
        f"stations; K); {note}\n\n" + table(header, rows)
    )


def pretraining(folder: Path) -> str:
    """Each pretrained model fine-tuned on one day, and the same trained from scratch."""
    rows = []
    for model in PRETRAINED:
        pre = _train(read_yaml(ROOT / "recipes" / f"pretrain_radolan_{model}.yaml"), folder)
        name = f"forecast_radolan_box_{model}"
        recipe = read_yaml(ROOT / "recipes" / f"{name}.yaml")
        for start, init in (("pretrained", str(pre)), ("scratch", None)):
            run_dir = _train(recipe | {"name": f"{name}_{start}", "init_from": init}, folder)
            scores = _scores(run_dir)
            rows.append(
                [model, start, scores[model]["rmse"], scores[model]["crps"], _epochs(run_dir)]
            )
            if model == PRETRAINED[0] and start == "scratch":
                baselines = {k: v for k, v in scores.items() if k != model}
    crps = {name: s["crps"] for name, s in baselines.items()}
    rows = [r + [_loses_to(r[3], crps)] for r in rows]
    rows += [["", name, s["rmse"], s["crps"], "", ""] for name, s in baselines.items()]
    return (
        "Rain rate of one 19 km radar box, the next hour from the last two (mm/h), after "
        "one day of training, from a model pretrained on 107 boxes or from scratch\n\n"
        + table(["model", "start", "RMSE", "CRPS", "epochs", "loses to (CRPS)"], rows)
    )


def _loses_to(score: float, baselines: dict[str, float]) -> str:
    """The baselines with a lower score, by name."""
    better = [name.removeprefix("baseline: ") for name, b in baselines.items() if b < score]
    return "; ".join(better)


def climate_series(folder: Path) -> str:
    """An LSTM's Gaussian forecast of each built-in climate series beside its baselines
    (CRPS over all leads, in the series' units; split in time 70/15/15%)."""
    rows = []
    for source, (variable, past, future) in SERIES.items():
        recipe = {
            "name": f"lstm_{source}",
            "model": {"name": "lstm", "width": 32, "depth": 2},
            "data": {
                "source": source,
                "inputs": [variable],
                "window": {"past": past, "future": future},
            },
            "task": {"name": "forecasting", "distribution": "gaussian"},
            "trainer": {"max_epochs": 150, "batch_size": 32, "early_stopping": 20, "seed": 0},
        }
        run_dir = _train(recipe, folder)
        scores = _scores(run_dir)
        lstm = scores.pop("lstm")
        crps = {name.removeprefix("baseline: "): s["crps"] for name, s in scores.items()}
        best = min(crps, key=crps.get)
        rows.append(
            [
                f"{source} ({variable}, {past} in, {future} out)",
                lstm["rmse"],
                lstm["crps"],
                *crps.values(),
                best if crps[best] < lstm["crps"] else "",
            ]
        )
    return (
        "The built-in climate series: an LSTM's Gaussian forecast against the baselines, "
        "CRPS over all leads (test split, the series' units)\n\n"
        + table(
            [
                "series",
                "LSTM RMSE",
                "LSTM CRPS",
                "persistence",
                "climatology",
                "autoregression",
                "LSTM loses to",
            ],
            rows,
        )
    )


def nowcast(folder: Path) -> str:
    """ConvLSTM beside UNet3D on the same radar volumes, with the task's baselines."""
    rows = []
    for name in ("radar_nowcast_convlstm", "radar_nowcast_unet3d"):
        run_dir = _train(read_yaml(ROOT / "recipes" / f"{name}.yaml"), folder)
        with open(run_dir / "scores.csv") as handle:
            for row in csv.DictReader(handle):
                if row["predictor"].startswith("baseline") and name.endswith("unet3d"):
                    continue  # the same baselines on the same windows as the ConvLSTM's
                scores = [float(row[c]) for c in ("rmse", "mae", "corr")]
                rows.append([row["predictor"], *scores, row.get("loses_to", "")])
    return (
        "Radar nowcasting: the next 30 minutes of rainfall from the last 30 "
        "(recipes/radar_nowcast_convlstm.yaml and ..._unet3d.yaml; mm per 5 minutes)\n\n"
        + table(["predictor", "RMSE", "MAE", "corr", "loses to"], rows)
    )


def _peer() -> list[list] | str:
    """neuralforecast's LSTM as its defaults run it (each lead read from one of the
    encoder's last `h` states, so lead 1 sees the input only up to 48 h before its
    target), and with `recurrent=True` (the forecast fed back step by step)."""
    try:
        from benchmarks.forecast_peer import run_peer
    except ImportError as error:
        return f"not installed ({error}; pip install -e '.[peers]')"
    rows = []
    for label, options in (("", {}), (", recurrent", {"recurrent": True})):
        start = time.perf_counter()
        result = run_peer("LSTM", past=PAST, future=FUTURE, stride=STRIDE, **options)
        by_lead = np.asarray(result["rmse_by_lead"])
        rows.append(
            [
                f"neuralforecast LSTM{label}",
                *(float(by_lead[h - 1]) for h in LEADS),
                float(result["rmse"]),
                "",
                f"{result['steps']} steps",
                time.perf_counter() - start,
            ]
        )
    return rows


def _train(recipe: dict, folder: Path) -> Path:
    quiet = recipe["trainer"] | {"progress_bar": False}
    return esszoo.train(recipe | {"out_dir": str(folder), "trainer": quiet}).path


def _row(name: str, by_lead: dict[int, dict], seconds: float | None, epochs: int | None) -> list:
    rmse = [by_lead[h]["rmse"] for h in LEADS]
    squares = np.mean([s["rmse"] ** 2 for s in by_lead.values()])
    crps = np.mean([s["crps"] for s in by_lead.values()])
    return [name, *rmse, float(np.sqrt(squares)), float(crps), epochs or "", seconds or ""]


def _by_lead(run_dir: Path) -> dict[str, dict[int, dict]]:
    found: dict[str, dict[int, dict]] = {}
    with open(run_dir / "scores_by_lead.csv") as handle:
        for row in csv.DictReader(handle):
            scores = {k: float(v) for k, v in row.items() if k not in ("predictor", "lead")}
            found.setdefault(row["predictor"], {})[int(row["lead"])] = scores
    return found


def _scores(run_dir: Path) -> dict[str, dict[str, float]]:
    with open(run_dir / "scores.csv") as handle:
        return {
            row["predictor"]: {k: float(row[k]) for k in ("rmse", "crps")}
            for row in csv.DictReader(handle)
        }


def _epochs(run_dir: Path) -> int:
    with open(run_dir / "metrics.csv") as handle:
        return len(list(csv.DictReader(handle)))


if __name__ == "__main__":
    print(run(sys.argv[1:]))
