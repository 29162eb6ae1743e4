"""A peer for esszoo's forecasting: neuralforecast's models on the same problem and test windows.

neuralforecast (Nixtla) trains global deep forecasters on a long table of series
(unique_id, ds, y): a "windows" model such as its LSTM or VanillaTransformer is fed random
windows of `input_size` steps followed by `h` steps cut from every series, normalizes each
window by its own input steps (`scaler_type`), and maps the input to all `h` steps at
once (the direct, multi-output strategy). `predict` forecasts the `h` steps after the end
of each series it is given.

The problem is esszoo's: hourly air temperature `tas` (K) of the TMY3 data set, one
series per station, 168 hours in and 48 out. esszoo (`esszoo.data.series.series_data`)
cuts the time axis into contiguous train (70%), validation (15%) and test (15%) blocks
first and windows inside each block; here the same blocks come from its own `Split`:

- neuralforecast is fit on the train block, with the validation block given as `val_df`
  for early stopping. neuralforecast appends it to the series and holds its last steps
  out of training, so the training windows are exactly esszoo's train windows; its
  validation windows have their targets in the validation block and may read the last
  `past` steps of the train block as inputs. Nothing of the test block is seen.
- the test windows are esszoo's test windows: one neuralforecast series per window,
  holding the `past` steps up to and including its origin (the test table's "time"), all
  forecast in one `predict` call, and scored against esszoo's own `tables["test"].y`.

RMSE and MAE in K per lead and over all leads and windows, as esszoo's forecasting task
scores them. Run `python -m benchmarks.forecast_peer` (ESSZOO_DATA points at the data).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd
import torch

from esszoo.data.catalog import open_builtin
from esszoo.data.series import series_data

PAST, FUTURE = 168, 48
LEADS = (1, 6, 12, 24, 48)


def _long(times: np.ndarray, values: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """neuralforecast's long table of series: values (steps, series), one id per series."""
    return pd.DataFrame(
        {
            "unique_id": np.repeat(ids, len(times)),
            "ds": np.tile(times, len(ids)),
            "y": values.T.reshape(-1),
        }
    )


def _quiet() -> None:
    """Lightning's and neuralforecast's loggers and warnings silenced (after their import,
    which sets their levels)."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "neuralforecast"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning|lightning|neuralforecast")


def run_peer(
    model: str = "LSTM",
    past: int = PAST,
    future: int = FUTURE,
    stride: int = 1,
    seed: int = 0,
    max_steps: int = 250,
    val_check_steps: int = 50,
    early_stop_patience_steps: int = 3,
    **options,
) -> dict:
    """Train neuralforecast's `model` (LSTM or VanillaTransformer) on TMY3 tas and score it
    on esszoo's test windows: RMSE and MAE per lead (arrays of `future`) and overall.

    neuralforecast's defaults otherwise (`options` go to the model), but for `max_steps`:
    its LSTM's 1000 would take some 11 minutes on one thread (0.65 s a step of 128
    windows), so 250 keep the fit near 3 minutes; the VanillaTransformer's 1024 windows a
    step take nearly a minute each on one thread (`windows_batch_size` makes it cheaper).
    The validation loss is checked every `val_check_steps` and training stops after
    `early_stop_patience_steps` checks without improvement (neuralforecast keeps the last
    weights, not the best)."""
    from neuralforecast import NeuralForecast, models

    _quiet()
    torch.set_num_threads(1)
    ds = open_builtin("tmy3")
    # esszoo's windows and split; no time features, as the peer reads the series alone
    # (they are inputs only: the targets y are the same with them)
    split = {"train": 0.7, "val": 0.15, "test": 0.15}
    data = series_data(
        ds,
        inputs=["tas"],
        targets=["tas"],
        past=past,
        future=future,
        stride=stride,
        time_features=[],
        **split,
    )
    times = ds["time"].values
    values = ds["tas"].transpose("time", "station").values  # (time, station)
    stations = np.arange(values.shape[1])
    blocks = {name: slice(*data.split.ranges[name]) for name in ("train", "val")}
    train, val = (_long(times[b], values[b], stations) for b in blocks.values())

    forecaster = getattr(models, model)(
        h=future,
        input_size=past,
        max_steps=max_steps,
        val_check_steps=val_check_steps,
        early_stop_patience_steps=early_stop_patience_steps,
        scaler_type="standard",
        random_seed=seed,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        **options,
    )
    nf = NeuralForecast(models=[forecaster], freq="h")
    start = time.perf_counter()
    nf.fit(train, val_df=val)
    fit_seconds = time.perf_counter() - start

    # esszoo's test windows, rebuilt from their origins and checked against its targets
    test = data.tables["test"]
    origin = np.searchsorted(times, test.coords["time"])
    series = np.asarray(test.coords["series"])
    steps = origin[:, None] + np.arange(1 - past, future + 1)  # (N, past + future)
    window = values[steps, series[:, None]]
    inputs, truth = window[:, :past], test.y[..., 0].double().numpy()
    assert np.array_equal(window[:, past:].astype(np.float32), test.y[..., 0].numpy())
    windows = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(len(origin)), past),
            "ds": times[steps[:, :past]].reshape(-1),
            "y": inputs.reshape(-1),
        }
    )
    start = time.perf_counter()
    forecast = nf.predict(df=windows).sort_values(["unique_id", "ds"])
    predict_seconds = time.perf_counter() - start
    assert np.array_equal(forecast["ds"].to_numpy().reshape(-1, future), test.coords["target_time"])
    error = forecast[model].to_numpy().reshape(-1, future) - truth
    return {
        "model": model,
        "windows": len(truth),
        "steps": nf.models[0].train_trajectories[-1][0] + 1,
        "val_losses": nf.models[0].valid_trajectories,
        "rmse_by_lead": np.sqrt((error**2).mean(axis=0)),
        "mae_by_lead": np.abs(error).mean(axis=0),
        "rmse": float(np.sqrt((error**2).mean())),
        "mae": float(np.abs(error).mean()),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
    }


if __name__ == "__main__":
    start = time.perf_counter()
    result = run_peer("LSTM")
    wall = time.perf_counter() - start
    print(f"neuralforecast {result['model']}: {result['windows']} test windows, TMY3 tas (K)")
    print("| lead (h) | " + " | ".join(map(str, LEADS)) + " | all |")
    print("|---" * (len(LEADS) + 2) + "|")
    rmse = [f"{result['rmse_by_lead'][lead - 1]:.3f}" for lead in LEADS]
    print("| RMSE | " + " | ".join(rmse) + f" | {result['rmse']:.3f} |")
    print(f"MAE overall {result['mae']:.3f} K; {result['steps']} training steps")
    print(
        f"fit {result['fit_seconds']:.0f} s, predict {result['predict_seconds']:.0f} s, "
        f"wall {wall:.0f} s (1 thread)"
    )
