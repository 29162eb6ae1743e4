"""`esszoo search`: trials as ordinary runs, ranked on validation; a model's own arguments
drawn only for it; pruning; two workers on one study; resuming an interrupted search."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FixedTrial, TrialState

from esszoo.automl.search import open_storage, search, trial_values
from esszoo.evaluation import compare_runs
from esszoo.recipe import validate
from tests.conftest import tiny_recipe_dict, write_recipe

LR = {"low": 1e-3, "high": 1e-2, "log": True}


def searchable(tmp_path, **space):
    recipe = tiny_recipe_dict(tmp_path / "runs", **{"trainer.max_epochs": 2})
    recipe["search"] = {"space": space or {"trainer.lr": LR, "model.width": [8, 16]}}
    return write_recipe(tmp_path / "r.yaml", recipe), recipe


def study_of(tmp_path, name="tiny"):
    storage = open_storage(None, tmp_path / "runs" / f"{name}-search")
    return optuna.load_study(study_name=name, storage=storage)


def test_a_search_trains_each_trial_as_a_run_and_ranks_them_on_validation(tmp_path, capsys):
    path, _ = searchable(tmp_path)
    rows = search(path, budget=3)
    assert [row["state"] for row in rows] == ["complete"] * 3
    losses = [row["val_loss"] for row in rows]
    assert losses == sorted(losses)  # best first
    for row in rows:
        assert 1e-3 <= row["trainer.lr"] <= 1e-2 and row["model.width"] in (8, 16)
        assert (tmp_path / "runs" / "tiny-search" / f"trial_{row['trial']:04d}").samefile(
            row["run"]
        )
    assert (tmp_path / "runs" / "tiny-search" / "search.csv").is_file()
    table = compare_runs([row["run"] for row in rows])  # ordinary runs, scored on test
    assert sorted(r["run"] for r in table if r["predictor"] == "mlp") == [
        f"trial_{row['trial']:04d}" for row in sorted(rows, key=lambda r: r["trial"])
    ]


def test_a_model_s_own_argument_is_drawn_only_for_the_models_that_take_it(tmp_path):
    _, raw = searchable(
        tmp_path,
        **{"model.name": ["mlp", "bnn_mlp"], "model.dropout": [0.0, 0.1], "model.width": [8]},
    )
    recipe = validate(raw)
    with_dropout = trial_values(
        FixedTrial({"model.name": "mlp", "model.dropout": 0.1, "model.width": 8}), recipe
    )
    assert with_dropout == {"model.name": "mlp", "model.dropout": 0.1, "model.width": 8}
    bayesian = trial_values(FixedTrial({"model.name": "bnn_mlp", "model.width": 8}), recipe)
    assert bayesian == {"model.name": "bnn_mlp", "model.width": 8}  # bnn_mlp has no dropout


def test_pruning_stops_a_trial_early_and_keeps_its_run(tmp_path):
    path, _ = searchable(tmp_path)
    always = optuna.pruners.ThresholdPruner(upper=0.0)  # any validation loss is too high
    (row,) = search(path, ["trainer.max_epochs=4"], budget=1, pruner=always)
    assert row["state"] == "pruned"
    with open(os.path.join(row["run"], "metrics.csv")) as handle:
        assert len(handle.readlines()) == 2  # a header and the first epoch
    assert os.path.isfile(os.path.join(row["run"], "model.json"))  # a whole run, stopped


def test_two_workers_share_one_study_and_no_trial_is_lost_or_run_twice(tmp_path):
    path, _ = searchable(tmp_path)
    command = [sys.executable, "-m", "esszoo", "search", str(path), "--budget", "4"]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command, env=environment, cwd=os.getcwd()) for _ in range(2)]
    assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
    trials = study_of(tmp_path).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 4 <= len(complete) <= 5  # the budget; two workers may both start the last
    assert len({t.number for t in trials}) == len(trials)
    runs = [t.user_attrs["run_dir"] for t in complete]
    assert len(set(runs)) == len(runs)
    assert all(os.path.isfile(os.path.join(run, "model.json")) for run in runs)
    assert len({t.user_attrs["pid"] for t in complete}) <= 2


def test_an_interrupted_search_resumes_and_reruns_only_what_was_cut_short(tmp_path):
    path, _ = searchable(tmp_path)
    search(path, budget=2)
    finished = {
        t.number: os.path.getmtime(os.path.join(t.user_attrs["run_dir"], "model.safetensors"))
        for t in study_of(tmp_path).get_trials()
    }
    # a trial left running by a process that is gone (killed mid-run)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    study = study_of(tmp_path)
    orphan = study.ask({"trainer.lr": FloatDistribution(1e-3, 1e-2, log=True)})
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", gone.pid)
    lr = orphan.params["trainer.lr"]

    search(path, budget=4)
    trials = study_of(tmp_path).get_trials()
    assert trials[orphan.number].state == TrialState.FAIL
    retried = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retried) == 1 and retried[0].params["trainer.lr"] == pytest.approx(lr)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 4
    for number, stamp in finished.items():  # not run again
        run = trials[number].user_attrs["run_dir"]
        assert os.path.getmtime(os.path.join(run, "model.safetensors")) == stamp
