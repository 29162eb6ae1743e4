"""`esszoo search --method darts|enas|nas-rl`: a cell search on real radar scenes whose cells
are retrained as a `darts` run; ENAS's controller and NAS-RL's learn what is rewarded; an
interrupted NAS-RL search resumes without training a finished child again."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from esszoo.automl.enas import OPERATIONS, Controller, Reinforce
from esszoo.automl.nas_rl import Controller as NasController
from esszoo.automl.search import search
from esszoo.data.source import open_source
from esszoo.models.nas.darts import Genotype
from esszoo.models.nas.nas_cnn import NASCNN as NasCNN
from esszoo.recipe import load_recipe
from tests.conftest import run_cli, tiny_recipe_dict, write_recipe

CELLS = {"width": 4, "cells": 3, "controller_steps": 2, "aggregate": 2, "batch_size": 16}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two days of DWD radar at 8 km, every 20 minutes: rain scenes to classify."""
    folder = tmp_path_factory.mktemp("scenes")
    radar = open_source("radolan").sel(time=slice("2018-05-10", "2018-05-11T23:55"))
    radar = radar.isel(time=slice(0, None, 4)).coarsen(y=8, x=8, boundary="trim").mean()
    radar["rainfall_amount"].attrs = open_source("radolan")["rainfall_amount"].attrs
    radar.to_netcdf(folder / "radar.nc")
    return folder / "radar.nc"


def scene_recipe(tmp_path, source, **cells):
    recipe = {
        "name": "scenes",
        "model": {"name": "darts", "width": 4, "cells": 3},
        "data": {
            "source": str(source),
            "inputs": ["rainfall_amount"],
            "label_rule": "rain_category",
            "split": {
                "dim": "time",
                "train": ["2018-05-10", "2018-05-10T23:55"],
                "val": ["2018-05-11", "2018-05-11T11:55"],
                "test": ["2018-05-11T12:00", "2018-05-11T23:55"],
            },
        },
        "task": {"name": "classification"},
        "trainer": {"max_epochs": 1, "batch_size": 16, "progress_bar": False, "precision": "32"},
        "search": {"cells": CELLS | {"order": 1} | cells},
        "out_dir": str(tmp_path / "runs"),
    }
    return write_recipe(tmp_path / "scenes.yaml", recipe)


@pytest.mark.parametrize("method", ["darts", "enas"])
def test_a_cell_search_retrains_the_cells_it_found_as_a_darts_run(method, scenes, tmp_path):
    rows = search(scene_recipe(tmp_path, scenes), method=method, budget=2)
    folder = tmp_path / "runs" / "scenes-search"
    assert [row["epoch"] for row in rows] == [0, 1, "retrained"]
    found = Genotype.of(json.loads((folder / "genotype.json").read_text()))
    assert rows[-1]["skip_share"] == found.skip_share()
    if method == "enas":
        assert {op for op, _ in found.normal + found.reduce} <= set(OPERATIONS)
    retrained = folder / "retrained"
    assert (retrained / "scores.csv").is_file() and (folder / "cells.csv").is_file()
    model = load_recipe(retrained / "recipe.yaml").model
    assert model.name == "darts" and Genotype.of(model.arguments()["genotype"]) == found
    assert rows[-1]["val_loss"] > 0


def test_a_dense_search_finds_a_cell_for_a_field_to_field_task(scenes, tmp_path):
    path = scene_recipe(tmp_path, scenes)
    rows = search(
        path,
        [
            "model.name=darts_dense",
            "task.name=segmentation",
            "data.label_rule=rain_intensity",
            "data.window={past: 1, future: 1, stride: 2}",
        ],
        method="darts",
        budget=1,
    )
    retrained = tmp_path / "runs" / "scenes-search" / "retrained"
    assert rows[-1]["epoch"] == "retrained" and (retrained / "scores.csv").is_file()
    assert load_recipe(retrained / "recipe.yaml").model.name == "darts_dense"


def test_the_auxiliary_skip_and_the_second_order_step_run_in_a_search(scenes, tmp_path):
    rows = search(
        scene_recipe(tmp_path, scenes, order=2, remedy="auxiliary_skip"), method="darts", budget=1
    )
    assert rows[0]["train_loss"] > 0 and rows[-1]["epoch"] == "retrained"


def test_a_cell_search_needs_a_network_of_cells_to_retrain(scenes, tmp_path, capsys):
    path = scene_recipe(tmp_path, scenes)
    status, _, err = run_cli(["search", path, "--method", "darts", "model.name=lenet5"], capsys)
    assert status == 2 and "set model.name to darts" in err and len(err.strip().splitlines()) <= 2


def test_the_enas_controller_samples_cells_of_earlier_nodes_and_learns_what_is_rewarded():
    torch.manual_seed(0)
    controller = Controller()
    genotype, log_prob, entropy = controller.sample()
    for pairs in (genotype.normal, genotype.reduce):
        assert len(pairs) == 8
        for index, (op, source) in enumerate(pairs):
            assert op in OPERATIONS and 0 <= source < 2 + index // 2
    assert log_prob < 0 < entropy

    def share(draws=200):  # how often the first operation of the normal cell is a max pool
        with torch.no_grad():
            return sum(controller.sample()[0].normal[0][0] == "max_pool_3x3" for _ in range(draws))

    before = share()
    reinforce = Reinforce(list(controller.parameters()), lr=0.05, decay=0.9)
    for _ in range(30):
        samples = [controller.sample() for _ in range(8)]
        rewards = [float(g.normal[0][0] == "max_pool_3x3") for g, _, _ in samples]
        reinforce.step([lp for _, lp, _ in samples], rewards)
    # the operations' logits are bounded by 1.10 / 2.5 tanh(.), as the authors keep the
    # policy exploring: one operation of five is drawn at most 37.5% of the time (75 of 200)
    assert before < 50 < 60 < share()


def test_the_nas_controller_decides_only_what_applies_and_learns_what_is_rewarded():
    torch.manual_seed(0)
    choices = {"model.name": ["mlp", "lenet5"], "model.width": [8, 16, 32], "trainer.lr": [1, 2]}
    controller = NasController(choices)

    def taken(key, decided):  # a width only for the mlp
        return key != "model.width" or decided.get("model.name") == 0

    for _ in range(20):
        decided, log_prob = controller(taken)
        assert ("model.width" in decided) == (decided["model.name"] == 0)
        again = controller(taken, given=decided)[1]
        assert torch.allclose(log_prob, again)  # a replay scores the same decisions alike
    reinforce = Reinforce(list(controller.parameters()), lr=0.05, decay=0.9)
    for _ in range(40):
        samples = [controller(taken) for _ in range(4)]
        rewards = [float(d.get("model.width") == 2) for d, _ in samples]
        reinforce.step([lp for _, lp in samples], rewards)
    with torch.no_grad():
        wide = sum(controller(taken)[0].get("model.width") == 2 for _ in range(100))
    assert wide > 60


def test_nas_rl_trains_children_as_runs_and_resumes_without_training_one_again(tmp_path):
    recipe = tiny_recipe_dict(tmp_path / "runs", **{"trainer.max_epochs": 1})
    recipe["search"] = {"space": {"model.width": [8, 16], "model.depth": [1, 2]}}
    recipe["search"]["children_per_step"] = 2
    path = write_recipe(tmp_path / "r.yaml", recipe)
    rows = search(path, method="nas-rl", budget=2)
    folder = tmp_path / "runs" / "tiny-search"
    first = {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("trial_*/model.json")}
    assert sorted(first) == ["trial_0000", "trial_0001"] and len(rows) == 2
    assert all(row["reward"] == -row["val_loss"] for row in rows)
    rows = search(path, method="nas-rl", budget=3)  # as if interrupted after two
    after = {p.parent.name: p.stat().st_mtime_ns for p in folder.glob("trial_*/model.json")}
    assert len(rows) == 3 and sorted(after) == ["trial_0000", "trial_0001", "trial_0002"]
    assert all(after[name] == stamp for name, stamp in first.items())  # not trained again
    assert [c["trial"] for c in json.loads((folder / "nas_rl.json").read_text())] == [0, 1, 2]


def test_nas_rl_refuses_a_range_of_real_numbers(tmp_path, capsys):
    recipe = tiny_recipe_dict(tmp_path / "runs")
    recipe["search"] = {"space": {"trainer.lr": {"low": 1e-3, "high": 1e-2}}}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    status, _, err = run_cli(["search", path, "--method", "nas-rl"], capsys)
    assert status == 2 and "give trainer.lr as a list" in err


def test_the_runs_of_a_search_share_the_predictions_of_their_baselines(tmp_path, monkeypatch):
    from esszoo.run import shared_baselines
    from esszoo.tasks.regression import RegressionTask as Regression
    from esszoo.training import train

    calls = []
    fitted = Regression.baselines
    monkeypatch.setattr(
        Regression, "baselines", lambda self, data: calls.append(1) or fitted(self, data)
    )
    path = write_recipe(tmp_path / "r.yaml", tiny_recipe_dict(tmp_path / "runs"))
    with shared_baselines():
        first = train(path, ["name=a", "trainer.max_epochs=1"])
        second = train(path, ["name=b", "trainer.max_epochs=1", "model.width=8"])
        other_seed = train(path, ["name=c", "trainer.max_epochs=1", "trainer.seed=1"])
    assert len(calls) == 2  # the first run and the one of another seed
    rows = [(first / "scores.csv").read_text().splitlines() for first in (first, second)]
    assert rows[0][2:] == rows[1][2:] and rows[0][1] != rows[1][1]  # baselines alike, models not
    train(path, ["name=d", "trainer.max_epochs=1"])  # outside: computed again
    assert len(calls) == 3 and other_seed.is_dir()


def test_nas_rl_in_the_paper_s_space_writes_layers_with_skips_and_trains_them(scenes, tmp_path):
    from esszoo.automl.nas_rl import LayerController
    from esszoo.options import LayerSearchOptions

    torch.manual_seed(0)
    controller = LayerController(LayerSearchOptions(count=4))
    decisions, log_prob = controller()
    assert len(decisions) == 4 * 3 + (0 + 1 + 2 + 3)  # three choices a layer, then its skips
    assert torch.allclose(controller(decisions)[1], log_prob)
    layers = controller.layers(decisions)
    for index, layer in enumerate(layers):
        assert layer["height"] in (1, 3, 5, 7) and layer["filters"] in (24, 36, 48, 64)
        assert all(0 <= j < index for j in layer["inputs"])
    chain = LayerController(LayerSearchOptions(count=3, skips=False))
    assert [layer["inputs"] for layer in chain.layers(chain()[0])] == [[], [0], [1]]

    layers = "search.layers={count: 3, heights: [1, 3], widths: [3], filters: [4, 8]}"
    path = scene_recipe(tmp_path, scenes)
    rows = search(path, [layers, "search.children_per_step=2"], method="nas-rl", budget=2)
    assert len(rows) == 2 and all(row["state"] == "complete" for row in rows)
    for row in rows:
        run_dir = tmp_path / "runs" / "scenes-search" / f"trial_{row['trial']:04d}"
        model = load_recipe(run_dir / "recipe.yaml").model
        assert model.name == "nas_cnn" and len(model.arguments()["layers"]) == 3
        with open(run_dir / "metrics.csv") as handle:
            accuracy = max(float(r["val_acc"]) for r in csv.DictReader(handle))
        assert row["reward"] == pytest.approx(accuracy**3)  # the paper's reward


def test_an_interrupted_cell_search_resumes_after_its_last_finished_epoch(
    scenes, tmp_path, monkeypatch
):
    from esszoo.automl import cells

    saved = cells._save

    def interrupted(*args, **kwargs):
        saved(*args, **kwargs)
        raise KeyboardInterrupt  # killed just after the first epoch was saved

    monkeypatch.setattr(cells, "_save", interrupted)
    path = scene_recipe(tmp_path, scenes)
    with pytest.raises(KeyboardInterrupt):
        search(path, method="enas", budget=2)
    folder = tmp_path / "runs" / "scenes-search"
    with open(folder / "cells.csv") as handle:
        before = list(csv.DictReader(handle))
    monkeypatch.setattr(cells, "_save", saved)
    rows = search(path, method="enas", budget=2)
    assert [row["epoch"] for row in rows] == [0, 1, "retrained"]
    assert str(rows[0]["train_loss"]) == before[0]["train_loss"]  # epoch 0 was not run again
    assert (folder / "retrained" / "scores.csv").is_file()
    other = search(path, ["search.cells.width=2"], method="enas", budget=2)  # a new supernet
    assert [row["epoch"] for row in other] == [0, 1, "retrained"]
    assert other[0]["train_loss"] != rows[0]["train_loss"]  # searched anew, not resumed


def test_a_nas_cnn_description_is_refused_in_one_line_where_it_cannot_be_built():
    from esszoo.errors import ModelError

    later = [
        {"height": 3, "width": 3, "filters": 4, "inputs": [1]},
        {"height": 3, "width": 3, "filters": 4},
    ]
    for layers, said in (
        (later, "reads layers [1]: only earlier ones"),
        ([{"height": 2, "width": 3, "filters": 4}], "odd filter sizes"),
        ([{"height": 3, "filters": 4}], "needs height, width, filters and inputs"),
        ([], "at least one layer"),
    ):
        with pytest.raises(ModelError, match=said.replace("[", r"\[").replace("]", r"\]")):
            NasCNN(in_channels=1, num_classes=2, layers=layers)
