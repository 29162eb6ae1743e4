"""Classification: labels from real fields, the task's loss, metrics and baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from esszoo.data.fields import field_data
from esszoo.data.labels import rain_category
from esszoo.data.source import open_source
from esszoo.errors import DataError, RecipeError
from esszoo.options import TrainerOptions
from esszoo.recipe import load_recipe
from esszoo.tasks.classification import ClassificationTask, confusion_matrix
from esszoo.tasks.moments import channel_stats


def test_rain_category_follows_its_documented_thresholds():
    scenes = np.zeros((4, 10, 100), dtype=np.float32)
    scenes[1, :, :3] = 1.0 / 12  # 3% of the area at 1 mm/h: wet, no cores -> stratiform
    scenes[2, :, :3] = 1.0 / 12
    scenes[2, 0, 0] = 11.0 / 12  # one core of 11 mm/h on 0.1% of the area -> convective
    scenes[3, :, :1] = 20.0 / 12  # 1% of the area, all cores, but below 2% wet -> dry
    assert rain_category(scenes).tolist() == [0, 1, 2, 0]
    scenes[:, 5:, :] = np.nan  # half the scene outside radar coverage: same fractions
    assert rain_category(scenes).tolist() == [0, 1, 2, 0]


def test_missing_points_do_not_count_towards_the_area():
    scene = np.full((1, 10, 100), np.nan, dtype=np.float32)
    scene[0, :5, :] = 0.0
    scene[0, :5, :2] = 1.0 / 12  # 2% of the covered half is wet
    assert rain_category(scene).tolist() == [1]


def test_mnist_fields_are_padded_digits_with_named_classes():
    data = field_data(
        open_source("mnist5k"),
        inputs=["image"],
        targets=["label"],
        split_dim="sample",
        shuffle=True,
    )
    assert data.train.x.shape[1:] == (1, 32, 32)
    assert data.classes[:3] == ("zero", "one", "two")
    assert data.train.x[:, :, :2].abs().sum() == 0  # the padding rows are background
    assert sorted(torch.cat([t.y for t in data.tables.values()]).bincount().tolist()) == [500] * 10


def test_shuffled_split_is_refused_for_a_time_series():
    times = np.datetime64("2018-05-10") + np.arange(20) * np.timedelta64(5, "m")
    dataset = xr.Dataset(
        {"f": (("time", "y", "x"), np.zeros((20, 4, 4))), "c": ("time", np.zeros(20, int))},
        coords={"time": times},
    )
    with pytest.raises(DataError, match="shuffle"):
        field_data(dataset, inputs=["f"], targets=["c"], shuffle=True)


def test_labels_must_be_class_indices():
    dataset = xr.Dataset(
        {"f": (("sample", "y", "x"), np.zeros((4, 8, 8))), "c": ("sample", [0.0, 1.5, 1, 0])}
    )
    with pytest.raises(DataError, match="whole numbers"):
        field_data(
            dataset, inputs=["f"], targets=["c"], split_dim="sample", train=0.5, val=0.25, test=0.25
        )


def test_fields_need_two_grid_dimensions(tmy3):
    with pytest.raises(DataError, match=r"\(sample, lat, lon\)"):
        field_data(tmy3, inputs=["tas"], label_rule_name="rain_category")


def test_channel_stats_ignore_missing_points():
    x = torch.tensor([[[[1.0, 3.0], [float("nan"), 5.0]]]])
    mean, std = channel_stats(x)
    assert mean.tolist() == [3.0]
    assert std.item() == pytest.approx(np.std([1.0, 3.0, 5.0]))


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    matrix = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def small_data():
    from esszoo.data.dataset import SplitData, Table
    from esszoo.data.splits import Split

    x = torch.randn(12, 2, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    y = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    table = Table(x, y)
    split = Split("sample", {"train": (0, 12), "val": (0, 12), "test": (0, 12)}, {})
    return SplitData(
        [],
        [],
        {"train": table, "val": table, "test": table},
        split,
        ("sample", "y", "x"),
        {},
        classes=("a", "b", "c"),
    )


def test_balanced_class_weights_and_majority_baseline():
    data = small_data()
    task = ClassificationTask(
        torch.nn.Identity(),
        ClassificationTask.Options(class_weights="balanced"),
        TrainerOptions(),
    )
    tensors = task.prepare(data)
    assert torch.isfinite(tensors["train"]["x"]).all()  # the missing point became 0
    assert task.class_weights.tolist() == pytest.approx([12 / 24, 12 / 6, 12 / 6])
    ((name, baseline),) = task.baselines(data).items()
    assert name == "majority class (a)"
    scores = task.score(baseline(data.test), data.test.y, data)
    assert scores["accuracy"] == pytest.approx(8 / 12)
    assert scores["balanced_acc"] == pytest.approx(1 / 3)
    assert scores["recall_a"] == 1.0 and scores["recall_b"] == 0.0


def test_auxiliary_losses_are_added_with_their_weight():
    data = small_data()
    task = ClassificationTask(
        torch.nn.Identity(), ClassificationTask.Options(aux_weight=0.3), TrainerOptions()
    )
    task.prepare(data)
    logits = torch.randn(12, 3)
    labels = data.train.y
    main = task._loss(logits, labels)
    assert task._loss((logits, logits, logits), labels) == pytest.approx(float(main) * 1.6)


def test_regression_losses_do_not_fit_classification():
    recipe = "recipes/lenet5_mnist.yaml"
    with pytest.raises(RecipeError, match=r"task\.loss.*should be 'cross_entropy'.*'mse'"):
        load_recipe(recipe, ["task.loss=mse"])


def test_lenet5_learns_digits_end_to_end_and_predicts_classes(tmp_path):
    from esszoo.prediction import predict_file
    from esszoo.training import train
    from tests.conftest import write_recipe

    recipe = {
        "name": "digits",
        "model": {"name": "lenet5"},
        "data": {
            "source": "mnist5k",
            "inputs": ["image"],
            "targets": ["label"],
            "split": {"dim": "sample", "shuffle": True},
        },
        "task": {"name": "classification"},
        "trainer": {"max_epochs": 2, "batch_size": 32, "progress_bar": False},
        "out_dir": str(tmp_path / "runs"),
    }
    run_dir = train(write_recipe(tmp_path / "digits.yaml", recipe))
    assert (run_dir / "confusion_matrix.png").is_file()
    import csv

    with open(run_dir / "scores.csv") as handle:
        model, baseline = csv.DictReader(handle)
    assert baseline["predictor"].startswith("baseline: majority class")
    assert float(model["accuracy"]) > 0.8 > float(baseline["accuracy"])
    assert {f"recall_{d}" for d in ("zero", "nine")} <= set(model)

    digits = open_source("mnist5k").isel(sample=slice(0, 40))
    digits.to_netcdf(tmp_path / "digits.nc")
    predicted = xr.load_dataset(predict_file(run_dir, tmp_path / "digits.nc", tmp_path / "p.nc"))
    assert predicted["class_probability"].shape == (40, 10)
    assert predicted["predicted_class"].attrs["flag_meanings"].startswith("zero one")
    assert (predicted["predicted_class"].values == digits["label"].values).mean() > 0.7
