"""Training end to end on real data: the run directory, resumption, evaluation, prediction."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file

import esszoo
from esszoo.errors import DataError, RunError
from esszoo.evaluation import compare_runs, evaluate_run
from esszoo.prediction import predict_file
from esszoo.training import resolve_compile, resolve_precision, train
from tests.conftest import tiny_recipe_dict, write_recipe

RUN_FILES = {
    "recipe.yaml",
    "model.safetensors",
    "model.json",
    "metrics.csv",
    "scores.csv",
    "loss_curve.png",
    "prediction_vs_truth.png",
    "checkpoints",
}


def safe_open_keys(path):
    from safetensors import safe_open

    with safe_open(path, "pt") as handle:
        return set(handle.keys())


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_a_run_leaves_everything_a_scientist_needs(trained_run):
    assert {p.name for p in trained_run.iterdir()} >= RUN_FILES
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    history = read_csv(trained_run / "metrics.csv")
    assert [int(row["epoch"]) for row in history] == [0, 1, 2]
    assert float(history[2]["train_loss"]) < float(history[0]["train_loss"])
    record = json.loads((trained_run / "model.json").read_text())
    assert [v["name"] for v in record["inputs"]] == ["tas", "ps", "huss"]
    assert record["inputs"][0]["units"] == "K"
    assert record["outputs"][0] == {
        "name": "pr",
        "units": "kg m-2",
        "standard_name": "precipitation_amount",
        "long_name": "computed by esszoo.physics.mixed_column_precipitation",
    }
    assert record["data"]["split"]["labels"]["test"][1] == "2002-01-01 00:00:00"
    assert record["normalization"]["statistics"]["input_mean"] == [3]
    assert "esszoo.normalization.input_mean" in safe_open_keys(trained_run / "model.safetensors")


def test_the_model_beats_its_baseline_and_reports_it(trained_run):
    rows = {row["predictor"]: row for row in read_csv(trained_run / "scores.csv")}
    assert set(rows) == {"mlp", "baseline: linear regression"}
    assert float(rows["mlp"]["rmse"]) < float(rows["baseline: linear regression"]["rmse"])


def test_loaded_model_speaks_physical_units(trained_run, tmy3):
    predictor = esszoo.load(trained_run)
    hour = tmy3.isel(time=4000, station=0)
    x = torch.tensor([[float(hour.tas), float(hour.ps), float(hour.huss)]])
    from esszoo.physics import mixed_column_precipitation

    truth = mixed_column_precipitation(*[v.double() for v in x.T])
    with torch.no_grad():
        assert abs(float(predictor(x)) - float(truth)) < 1.0  # mm, after three epochs


def test_evaluate_reproduces_the_scores_of_training(trained_run):
    rows = evaluate_run(trained_run)
    written = read_csv(trained_run / "scores.csv")
    assert rows[0]["rmse"] == pytest.approx(float(written[0]["rmse"]), rel=1e-6)


def test_compare_times_the_model_and_the_physics(trained_run, tmp_path):
    rows = compare_runs([trained_run], out=tmp_path / "table.csv")
    labels = [row["predictor"] for row in rows]
    assert labels[0] == "mlp" and "physics: reference" in labels
    assert all(row["us_per_sample"] > 0 for row in rows)
    reference = next(row for row in rows if row["predictor"] == "physics: reference")
    assert reference["rmse"] < 1e-4
    assert (tmp_path / "table.csv").is_file()


def test_predict_writes_netcdf_with_coordinates_intact(trained_run, station_file, tmp_path):
    out = predict_file(trained_run, station_file, tmp_path / "pred.nc")
    predicted = xr.load_dataset(out)
    source = xr.load_dataset(station_file)
    assert predicted["pr"].dims == source["tas"].dims
    assert (predicted["time"].values == source["time"].values).all()
    assert list(predicted["station"].values) == list(source["station"].values)
    assert predicted["pr"].attrs["units"] == "kg m-2"
    assert float(predicted["lat"][0]) == pytest.approx(36.1)
    assert np.isfinite(predicted["pr"].values).all()


def test_predict_keeps_missing_inputs_missing(trained_run, station_file, tmp_path):
    dataset = xr.load_dataset(station_file)
    dataset["tas"][5, 1] = np.nan
    path = tmp_path / "gappy.nc"
    dataset.to_netcdf(path)
    predicted = xr.load_dataset(predict_file(trained_run, path, tmp_path / "p.nc"))
    assert np.isnan(predicted["pr"].values[5, 1])
    assert np.isfinite(predicted["pr"].values).sum() == predicted["pr"].size - 1


def test_predict_refuses_data_with_other_variables(trained_run, station_file, tmp_path):
    renamed = xr.load_dataset(station_file).rename({"huss": "q"})
    path = tmp_path / "renamed.nc"
    renamed.to_netcdf(path)
    with pytest.raises(DataError, match=r"lack the model's input variable\(s\) \['huss'\]"):
        predict_file(trained_run, path, tmp_path / "p.nc")
    assert not (tmp_path / "p.nc").exists()


def test_predict_converts_units_that_convert_and_refuses_others(
    trained_run, station_file, tmp_path, capsys
):
    dataset = xr.load_dataset(station_file)
    expected = xr.load_dataset(predict_file(trained_run, station_file, tmp_path / "p.nc"))
    dataset["ps"] = (dataset["ps"] / 100).assign_attrs(units="hPa")
    dataset["tas"] = (dataset["tas"] - 273.15).assign_attrs(units="Deg C")
    path = tmp_path / "hpa.nc"
    dataset.to_netcdf(path)
    converted = xr.load_dataset(predict_file(trained_run, path, tmp_path / "c.nc"))
    np.testing.assert_allclose(converted["pr"].values, expected["pr"].values, atol=1e-5)
    assert "converted from hPa to Pa" in capsys.readouterr().out
    assert "'tas' converted from Deg C to K" in converted.attrs["history"]
    dataset["ps"] = dataset["ps"].assign_attrs(units="m s-1")
    dataset.to_netcdf(path)
    with pytest.raises(DataError, match="'ps' is in 'm s-1', which cannot be converted to"):
        predict_file(trained_run, path, tmp_path / "r.nc")


def test_an_existing_run_is_not_overwritten_silently(tiny_recipe):
    run_dir = train(tiny_recipe, ["trainer.max_epochs=1"])
    before = (run_dir / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match="already holds a run"):
        train(tiny_recipe, ["trainer.max_epochs=1"])
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_resume_continues_from_the_last_epoch(tiny_recipe):
    run_dir = train(tiny_recipe, ["trainer.max_epochs=1", "trainer.schedule=none"])
    train(tiny_recipe, ["trainer.max_epochs=3", "trainer.schedule=none"], resume=True)
    epochs = [int(row["epoch"]) for row in read_csv(run_dir / "metrics.csv")]
    assert epochs == [0, 1, 2]
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 2


def test_resume_without_a_checkpoint_is_refused(tiny_recipe):
    with pytest.raises(RunError, match="nothing to resume"):
        train(tiny_recipe, resume=True)


def test_hybrid_learns_the_residual_of_cheap_physics(tmp_path):
    recipe = tiny_recipe_dict(
        tmp_path / "runs", **{"task.residual_of": "cheap_mixed_column_precipitation"}
    )
    run_dir = train(write_recipe(tmp_path / "hybrid.yaml", recipe))
    predictor = esszoo.load(run_dir)
    assert predictor.base == "cheap_mixed_column_precipitation"
    assert predictor.base_columns == [0, 1, 2]
    x = torch.tensor([[295.0, 100_000.0, 0.015]])
    with torch.no_grad():
        network_part = predictor.denormalize(predictor.net(predictor.normalize(x)))
        assert torch.allclose(predictor(x), network_part + predictor.base_prediction(x))


def test_training_on_a_user_csv_with_its_own_targets(tmp_path, tmy3):
    table = tmy3.sel(station="723170").to_dataframe()[["tas", "tdps", "hurs"]].reset_index()
    table[["time", "tas", "tdps", "hurs"]].to_csv(tmp_path / "weather.csv", index=False)
    recipe = tiny_recipe_dict(tmp_path / "runs")
    recipe["data"] = {
        "source": str(tmp_path / "weather.csv"),
        "inputs": ["tas", "tdps"],
        "targets": ["hurs"],
    }
    run_dir = train(write_recipe(tmp_path / "csv.yaml", recipe))
    rows = {row["predictor"]: row for row in read_csv(run_dir / "scores.csv")}
    assert "neg_frac" not in rows["mlp"]  # no units, no standard name: no positivity claim


def test_precision_auto_follows_the_device():
    assert resolve_precision("32", "cpu") == "32"
    assert resolve_precision("auto", "mps") == "32-true"
    assert resolve_precision("auto", "cpu") in {"32-true", "bf16-mixed"}


def test_a_compiled_run_trains_the_same_weights_under_the_same_keys(tmp_path):
    """`trainer.compile: true` compiles the network in place: the checkpoint keeps the eager
    network's names (no `_orig_mod.`), and the weights match an eager run's."""
    recipe = write_recipe(tmp_path / "recipe.yaml", tiny_recipe_dict(tmp_path / "runs"))
    eager = train(recipe, ["trainer.max_epochs=2", "name=eager", "trainer.compile=false"])
    compiled = train(recipe, ["trainer.max_epochs=2", "name=compiled", "trainer.compile=true"])
    a = load_file(eager / "model.safetensors")
    b = load_file(compiled / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert resolve_compile("auto") is False


def test_a_run_killed_at_a_random_step_resumes_to_the_same_weights(tmp_path):
    # deterministic settings: the data order comes from (seed, epoch), the model has no
    # dropout, the checkpoint holds the optimizer, schedule and early-stopping state
    from safetensors.torch import load_file

    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        tiny_recipe_dict(tmp_path / "runs", **{"trainer.max_epochs": 6, "trainer.batch_size": 64}),
    )
    whole = train(recipe, ["name=whole"])
    killed = tmp_path / "runs" / "killed"
    command = [str(Path(sys.executable).parent / "esszoo"), "train", str(recipe), "name=killed"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "last.ckpt").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.3))  # somewhere in a later epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists(), "the run ended before it was killed"
    train(recipe, ["name=killed"], resume=True)
    first, second = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_loss_that_turns_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_recipe, monkeypatch
):
    from esszoo.tasks.regression import RegressionTask

    batch_loss = RegressionTask.batch_loss

    def poisoned(self, batch):  # good for the first epoch, NaN from then on
        loss = batch_loss(self, batch)
        return loss * float("nan") if self.current_epoch >= 1 and self.training else loss

    monkeypatch.setattr(RegressionTask, "batch_loss", poisoned)
    with pytest.raises(RunError, match="loss became nan in epoch 1"):
        train(tiny_recipe, ["trainer.max_epochs=3"])
    run_dir = tiny_recipe.parent / "runs" / "tiny"
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
    assert not (run_dir / "model.safetensors").exists()


def test_a_second_run_into_a_directory_in_use_is_refused(tiny_recipe):
    # a live process holds the run directory: a second training into it must not start
    from esszoo.run import RunLock

    run_dir = tiny_recipe.parent / "runs" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir.mkdir(parents=True)
        (run_dir / ".lock").write_text(str(holder.pid))
        with pytest.raises(RunError, match=f"in use by process {holder.pid}"):
            train(tiny_recipe, ["trainer.max_epochs=1"])
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run_dir):  # a lock left by a dead process is taken over
        assert (run_dir / ".lock").read_text() == str(os.getpid())


def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    # torchrun launches 2 CPU processes (gloo) at batch 128 each; one process at batch 256
    # sees the same batches: losses and weights agree within 1e-4 relative
    from safetensors.torch import load_file

    recipe = write_recipe(
        tmp_path / "tiny.yaml",
        tiny_recipe_dict(tmp_path / "runs", **{"trainer.max_epochs": 2, "trainer.lr": 1e-3}),
    )
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "torchrun"),
        "--standalone",
        "--nproc_per_node=2",
        str(bin_dir / "esszoo"),
        "train",
        str(recipe),
        "name=two",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.batch_size=128",
    ]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    two = tmp_path / "runs" / "two"
    one = train(recipe, ["name=one", "trainer.accelerator=cpu", "trainer.batch_size=256"])
    history = [read_csv(run / "metrics.csv") for run in (two, one)]
    for ours, single in zip(*history, strict=True):
        assert ours["step"] == single["step"]
        for key in ("train_loss", "val_loss"):
            assert float(ours[key]) == pytest.approx(float(single[key]), rel=1e-4)
    first, second = load_file(two / "model.safetensors"), load_file(one / "model.safetensors")
    for name in first:
        assert torch.allclose(first[name], second[name], rtol=1e-4, atol=1e-6), name


def test_a_log_that_is_not_a_terminal_gets_a_line_per_epoch_and_scores_with_units(
    tiny_recipe, capsys
):
    # pytest's captured output is no terminal: no progress bar, a line per epoch instead
    train(tiny_recipe, ["trainer.progress_bar=true", "name=logged"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert "train_loss" in lines[0] and "val_loss" in lines[0]
    assert "rmse (kg m-2)" in out  # the table's scores carry the target's units
    rows = read_csv(Path(tiny_recipe).parent / "runs" / "logged" / "scores.csv")
    assert {row["units"] for row in rows} == {"kg m-2"}


def test_bounds_clip_the_outputs_and_predict_counts_what_they_clipped(
    tmp_path, station_file, capsys
):
    recipe = tiny_recipe_dict(tmp_path / "runs", name="bounded")
    recipe["data"]["bounds"] = {"pr": {"min": 0.0}}  # precipitation cannot be negative
    run_dir = train(write_recipe(tmp_path / "bounded.yaml", recipe))
    rows = {row["predictor"]: row for row in read_csv(run_dir / "scores.csv")}
    assert float(rows["mlp"]["neg_frac"]) == 0.0  # the linear baseline has no such bound
    assert json.loads((run_dir / "model.json").read_text())["outputs"][0]["valid_min"] == 0.0
    predicted = xr.load_dataset(predict_file(run_dir, station_file, tmp_path / "p.nc"))
    assert float(predicted["pr"].min()) >= 0.0 and predicted["pr"].attrs["valid_min"] == 0.0
    clipped = predicted["pr"].attrs["esszoo_below_bounds"]
    assert clipped > 0 and f"{clipped} below bounds" in capsys.readouterr().out
    assert "esszoo_above_training_range" in predicted["pr"].attrs


def test_values_outside_a_cf_valid_range_are_missing(trained_run, station_file, tmp_path):
    dataset = xr.load_dataset(station_file)
    threshold = float(dataset["tas"].median())
    dataset["tas"].attrs["valid_max"] = threshold  # say that warmer hours are not valid
    path = tmp_path / "valid.nc"
    dataset.to_netcdf(path)
    predicted = xr.load_dataset(predict_file(trained_run, path, tmp_path / "p.nc"))
    warm = dataset["tas"].values > threshold
    assert warm.any() and np.isnan(predicted["pr"].values[warm]).all()
    assert np.isfinite(predicted["pr"].values[~warm]).all()


@pytest.mark.parametrize(("precision", "groups"), [("32", (5, 10_000)), ("bf16-mixed", (5,))])
def test_batches_grouped_in_one_lightning_step_train_as_batches_one_at_a_time(
    tmp_path, monkeypatch, precision, groups
):
    # groups of 1, 5 (an epoch of 22 batches ends in a partial group) and all batches of an
    # epoch per Lightning step: the same optimizer steps, schedule and trained weights. In
    # mixed precision too (an autocast over a group that cached its casts would keep the
    # group's first weights: Lightning's caches none).
    from esszoo.data import batches

    runs = {}
    for group in (1, *groups):
        monkeypatch.setattr(batches, "GROUP_VALUES", group * 256 * 3)
        recipe = tiny_recipe_dict(tmp_path / "runs", name=f"group{group}")
        recipe["trainer"] |= {"max_epochs": 2, "precision": precision}
        run_dir = train(write_recipe(tmp_path / f"group{group}.yaml", recipe))
        with open(run_dir / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
        runs[group] = (load_file(run_dir / "model.safetensors"), rows)
    weights, rows = runs[1]
    samples = json.loads((tmp_path / "runs" / "group1" / "model.json").read_text())["data"]
    steps = -(-samples["samples"]["train"] // 256)
    assert steps > 5 and steps % 5
    assert [int(row["step"]) for row in rows] == [steps, 2 * steps]
    assert float(rows[-1]["lr"]) < 1e-3 * 3e-3  # the cosine schedule ran over the steps
    for group in groups:
        other_weights, other_rows = runs[group]
        assert [r["step"] for r in other_rows] == [r["step"] for r in rows]
        assert [r["lr"] for r in other_rows] == [r["lr"] for r in rows]
        assert [float(r["train_loss"]) for r in other_rows] == pytest.approx(
            [float(r["train_loss"]) for r in rows], rel=1e-5
        )
        for name, tensor in weights.items():
            torch.testing.assert_close(other_weights[name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_data_kept_on_the_gpu_train_the_weights_of_data_copied_per_step(tmp_path):
    weights = []
    for fraction in (0, 0.25):
        recipe = tiny_recipe_dict(tmp_path / "runs", name=f"device{fraction}")
        recipe["trainer"] |= {"data_on_device": fraction, "deterministic": True}
        recipe["trainer"] |= {"accelerator": "cuda", "max_epochs": 2}
        weights.append(
            load_file(train(write_recipe(tmp_path / "r.yaml", recipe)) / "model.safetensors")
        )
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clip", [None, 1e-9])
def test_gradient_clipping_bounds_every_step(tmp_path, clip):
    """With plain SGD a step is lr times the gradient: clipped to a norm of 1e-9, the
    weights stay put and every epoch's mean loss is the first's; unclipped, it falls."""
    trainer = {"optimizer": "sgd", "lr": 0.05, "schedule": "none", "gradient_clip": clip}
    recipe = tiny_recipe_dict(tmp_path / "runs", **{f"trainer.{k}": v for k, v in trainer.items()})
    run_dir = train(write_recipe(tmp_path / "r.yaml", recipe))
    losses = [float(row["train_loss"]) for row in read_csv(run_dir / "metrics.csv")]
    if clip is None:
        assert losses[-1] < 0.9 * losses[0]
    else:
        assert losses[-1] == pytest.approx(losses[0], rel=1e-4)
