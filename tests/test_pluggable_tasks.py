"""Tasks and data kinds are pluggable: a task is one file, recipes are validated against
the task they name, and the JSON schema for editors comes from the same definitions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from esszoo.data.kinds import data_kinds, kind_of
from esszoo.errors import RecipeError
from esszoo.recipe import load_recipe, recipe_schema
from esszoo.tasks import tasks
from tests.conftest import run_cli, tiny_recipe_dict, write_recipe

SHIPPED = sorted(Path("recipes").glob("*.yaml"))

# A task of a user's own, in one file that touches no module of esszoo: the conditional
# q-quantile of the targets (pinball loss, Koenker & Bassett 1978), beside the baseline
# of the training split's unconditional quantile.
QUANTILE_TASK = '''
"""Quantile regression: the q-quantile of the targets given the inputs."""

import torch
from pydantic import Field

from esszoo.options import TaskOptions
from esszoo.predictor import Predictor
from esszoo.tasks import register_task
from esszoo.tasks.base import Task


class QuantileOptions(TaskOptions):
    name: str = "quantile"
    quantile: float = Field(default=0.9, gt=0, lt=1, description="the quantile to learn")


def pinball(truth, prediction, q):
    error = truth - prediction
    return torch.maximum(q * error, (q - 1) * error).mean()


@register_task
class QuantileTask(Task):
    """Learn the q-quantile of the targets (pinball loss)."""

    name = "quantile"
    Options = QuantileOptions
    data_kinds = ("table",)

    @staticmethod
    def model_shape(data, takes_mask=False, options=None):
        return {"in_channels": len(data.inputs), "out_channels": len(data.targets)}

    def prepare(self, data):
        x, y = data.train.x, data.train.y
        self.stats = {"input_mean": x.mean(0), "input_std": x.std(0),
                      "output_mean": y.mean(0), "output_std": y.std(0)}
        predictor = self.predictor()
        return {split: {"x": predictor.normalize(t.x),
                        "y": (t.y - self.stats["output_mean"]) / self.stats["output_std"]}
                for split, t in data.tables.items()}

    def predictor(self):
        return Predictor(self.net, **self.stats)

    def batch_loss(self, batch):
        return pinball(batch["y"], self.net(batch["x"]), self.spec.quantile)

    def baselines(self, data):
        level = torch.quantile(data.train.y, self.spec.quantile, dim=0)
        return {"training quantile": lambda table: level.expand(len(table), -1)}

    def score(self, prediction, truth, data, table=None):
        return {"pinball": float(pinball(truth, prediction, self.spec.quantile)),
                "coverage": float((truth <= prediction).double().mean())}
'''


def test_every_shipped_recipe_names_a_task_and_the_data_kind_it_learns_from():
    for path in SHIPPED:
        recipe = load_recipe(path)
        task = tasks()[recipe.task.name]
        assert isinstance(recipe.task, task.Options), path
        assert kind_of(recipe.data).name in task.data_kinds, path


def test_every_data_kind_of_every_task_is_registered_with_its_own_options():
    kinds = data_kinds()
    for task in tasks().values():
        assert set(task.data_kinds) <= set(kinds), task.name
    classes = [kind.options for kind in kinds.values()]
    assert len(set(classes)) == len(classes)


def test_translation_reads_its_data_as_pairs_windows_or_streams():
    base = "recipes/radar_nowcast_unet3d.yaml"
    assert kind_of(load_recipe(base).data).name == "windows"
    assert kind_of(load_recipe(base, ["data.window=null"]).data).name == "paired_fields"
    assert kind_of(load_recipe(base, ["data.stream=true"]).data).name == "streamed_fields"
    # the stream's settings wait beside its switch when it is off
    assert load_recipe(base, ["data.stream=false", "data.stream_block=8"]).data.stream_block == 8


@pytest.mark.parametrize(
    ("recipe", "override", "message"),
    [
        (
            "radar_nowcast_unet3d",
            "task.dice_weight=0.5",
            "'task.dice_weight' .* is an option of segmentation, not of translation",
        ),
        (
            "emulate_precip",
            "task.class_weights=balanced",
            "'task.class_weights' .* option of classification, segmentation, not of regression",
        ),
        (
            "radar_nowcast_unet3d",
            "data.gaps.train=3",
            "'data.gaps' .* option of the data of inpainting, not of translation's windows",
        ),
        (
            "radar_nowcast_unet3d",
            "data.targets=[a]",
            "'data.targets' .* not read by translation's windows of frames .* only by its fields",
        ),
        (
            "emulate_precip",
            "data.stream=true",
            "'data.stream' .* option of the data of translation, generation, not of regression",
        ),
        ("radar_nowcast_unet3d", "task.dice_wieght=1", "did you mean 'dice_weight'"),
        ("inpaint_ostia", "task.anomalys=true", "did you mean 'anomalies'"),
        ("lenet5_mnist", "task.loss=mse", r"'task\.loss' .* should be 'cross_entropy'"),
        ("inpaint_ostia", "data.inputs=[a,b]", r"'data\.inputs' .* at most 1 item"),
        ("inpaint_ostia", "task.loss_weights.edge=1", "unknown loss term.*'edge'"),
    ],
)
def test_a_key_is_checked_against_the_task_it_names(recipe, override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(f"recipes/{recipe}.yaml", [override])


def test_a_missing_or_wrong_key_of_a_data_kind_says_what_to_give(tmp_path):
    recipe = yaml.safe_load(Path("recipes/radar_intensity_unet.yaml").read_text())
    del recipe["data"]["window"]
    with pytest.raises(RecipeError, match=r"'data\.window' is missing.*past: 6, future: 6"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    with pytest.raises(RecipeError, match=r"'data\.window' .*got None.*past: 6, future: 6"):
        load_recipe("recipes/radar_intensity_unet.yaml", ["data.window=null"])


def test_the_json_schema_accepts_the_shipped_recipes_and_refuses_another_tasks_key(capsys):
    status, out, _ = run_cli(["recipe-schema"], capsys)
    assert status == 0
    schema = json.loads(out)
    assert schema == json.loads(json.dumps(recipe_schema()))
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    for path in SHIPPED:
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    recipe = yaml.safe_load(Path("recipes/radar_nowcast_unet3d.yaml").read_text())
    recipe["task"]["dice_weight"] = 0.5
    assert any("dice_weight" in e.message for e in validator.iter_errors(recipe))
    recipe = yaml.safe_load(Path("recipes/emulate_precip.yaml").read_text())
    recipe["data"]["gaps"] = {"train": 3}
    assert list(validator.iter_errors(recipe))


def test_a_new_task_is_one_file_trained_from_a_recipe_through_the_cli(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quantile_task.py").write_text(QUANTILE_TASK)
    recipe = tiny_recipe_dict(tmp_path / "runs", imports=["quantile_task"], name="q90")
    recipe["data"] = {"source": "tmy3", "inputs": ["ps", "huss"], "targets": ["tas"]}
    recipe["task"] = {"name": "quantile", "quantile": 0.9}
    recipe["trainer"]["max_epochs"] = 4
    path = write_recipe(tmp_path / "q90.yaml", recipe)

    status, out, err = run_cli(["train", path], capsys)
    assert status == 0, err
    run_dir = tmp_path / "runs" / "q90"
    with open(run_dir / "scores.csv") as handle:
        rows = {row["predictor"]: row for row in csv.DictReader(handle)}
    model, baseline = rows["mlp"], rows["baseline: training quantile"]
    # humidity tells the temperature: the conditional quantile beats the unconditional one
    assert float(model["pinball"]) < 0.8 * float(baseline["pinball"])
    assert json.loads((run_dir / "model.json").read_text())["task"]["quantile"] == 0.9

    status, out, err = run_cli(["evaluate", run_dir], capsys)
    assert status == 0 and "training quantile" in out, err
    status, out, _ = run_cli(["tasks"], capsys)
    assert "quantile: Learn the q-quantile" in out and "task options  quantile\n" in out
    status, _, err = run_cli(
        ["predict", run_dir, "--data", "tmy3", "--out", tmp_path / "q.nc"], capsys
    )
    assert status == 2 and "does not serve task 'quantile'" in err

    recipe["task"]["quantile"] = 1.5
    status, _, err = run_cli(["train", write_recipe(tmp_path / "bad.yaml", recipe)], capsys)
    assert status == 2 and "task.quantile" in err and "less than 1" in err
    recipe["task"] = {"name": "quantile", "dice_weight": 1.0}
    status, _, err = run_cli(["train", write_recipe(tmp_path / "bad.yaml", recipe)], capsys)
    assert status == 2 and "option of segmentation, not of quantile" in err


def test_an_import_that_fails_is_one_line_naming_the_module_and_the_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_task.py").write_text("import torch\n\nraise ValueError('oops')\n")
    recipe = tiny_recipe_dict(tmp_path / "runs", imports=["broken_task"])
    status, _, err = run_cli(["train", write_recipe(tmp_path / "r.yaml", recipe)], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "broken_task" in err and "ValueError: oops" in err and "broken_task.py:3" in err
    recipe["imports"] = ["no_such_task"]
    status, _, err = run_cli(["train", write_recipe(tmp_path / "r.yaml", recipe)], capsys)
    assert status == 2 and "no module 'no_such_task'" in err
