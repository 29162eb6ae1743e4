"""The registry: cards, listing, building by name, and its errors."""

import pytest

import esszoo
from esszoo.errors import ModelError


def test_list_models_filters_by_task_and_family():
    assert "mlp" in esszoo.list_models()
    assert "mlp" in esszoo.list_models(task="regression")
    assert "mlp" not in esszoo.list_models(task="no_such_task")
    assert esszoo.list_models(family="fully_connected") == ["mlp"]


def test_card_cites_the_paper_and_reference_configuration():
    card = esszoo.model_card("mlp")
    assert card.paper.year == 1986 and card.paper.doi
    assert card.reference["depth"] == 9 and card.reference_params == 567_361


def test_create_model_records_its_name_and_arguments():
    model = esszoo.create_model("mlp", in_channels=3, out_channels=2, width=8)
    assert model.esszoo_spec == {
        "name": "mlp",
        "arguments": {"in_channels": 3, "out_channels": 2, "width": 8},
    }


def test_unknown_model_suggests_the_nearest_name():
    with pytest.raises(ModelError, match="did you mean 'mlp'"):
        esszoo.create_model("mpl", in_channels=3, out_channels=1)


def test_unknown_argument_suggests_the_nearest_argument():
    with pytest.raises(ModelError, match="did you mean 'depth'"):
        esszoo.create_model("mlp", in_channels=3, out_channels=1, deph=3)


def test_missing_argument_is_named():
    with pytest.raises(ModelError, match="out_channels"):
        esszoo.create_model("mlp", in_channels=3)


def test_unknown_activation_is_an_error():
    with pytest.raises(ModelError, match="activation"):
        esszoo.create_model("mlp", in_channels=3, out_channels=1, activation="relux")


def test_leaky_relu_takes_its_slope():
    model = esszoo.create_model("mlp", in_channels=3, out_channels=1, activation="leaky_relu:0.3")
    assert model.hidden[1].negative_slope == pytest.approx(0.3)
