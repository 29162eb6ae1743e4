"""Recipes: validation with the nearest valid key, overrides, and bad files."""

import pytest

from esszoo.errors import RecipeError
from esszoo.recipe import apply_overrides, load_recipe, parse_value
from tests.conftest import tiny_recipe_dict, write_recipe


def test_the_shipped_recipes_are_valid():
    for path in ("recipes/emulate_precip.yaml", "recipes/emulate_precip_hybrid.yaml"):
        recipe = load_recipe(path)
        assert recipe.data.physics == "mixed_column_precipitation"
    assert load_recipe("recipes/emulate_precip_hybrid.yaml").task.residual_of


def test_unknown_key_names_the_nearest_valid_key(tmp_path):
    recipe = tiny_recipe_dict(tmp_path, **{"trainer.max_epoch": 3})
    with pytest.raises(RecipeError, match=r"trainer\.max_epoch.*did you mean 'max_epochs'"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))


def test_misspelt_section_is_reported_as_unknown(tmp_path):
    recipe = tiny_recipe_dict(tmp_path)
    recipe["trainr"] = recipe.pop("trainer")
    with pytest.raises(RecipeError, match="unknown recipe key 'trainr'.*'trainer'"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))


def test_wrong_value_type_names_key_and_value(tmp_path):
    recipe = tiny_recipe_dict(tmp_path, **{"trainer.lr": "fast"})
    with pytest.raises(RecipeError, match=r"trainer\.lr.*'fast'"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))


def test_overrides_are_applied_before_validation(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["trainer.max_epochs=7", "trainer.lr=1e-4", "name=other"])
    assert recipe.trainer.max_epochs == 7
    assert recipe.trainer.lr == pytest.approx(1e-4)
    assert recipe.run_dir().name == "other"


def test_override_without_equals_sign_is_an_error(tiny_recipe):
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(tiny_recipe, ["trainer.max_epochs"])


def test_override_of_an_unknown_key_is_caught(tiny_recipe):
    with pytest.raises(RecipeError, match="did you mean 'batch_size'"):
        load_recipe(tiny_recipe, ["trainer.batchsize=3"])


def test_values_parse_as_yaml():
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("[a, b]") == ["a", "b"]
    assert parse_value("null") is None and parse_value("true") is True
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_missing_and_invalid_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="no recipe file"):
        load_recipe(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="does not hold a recipe"):
        load_recipe(listing)


def test_run_names_cannot_escape_the_runs_folder(tmp_path):
    recipe = tiny_recipe_dict(tmp_path, name="../../etc")
    with pytest.raises(RecipeError, match="name"):
        load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
