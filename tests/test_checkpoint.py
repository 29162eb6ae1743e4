"""Checkpoints: self-describing, rebuilt without user code, never unpickled."""

import json

import pytest
import torch

import esszoo
from esszoo.errors import CheckpointError, ModelError


def saved(tmp_path, **arguments):
    torch.manual_seed(0)
    model = esszoo.create_model("mlp", in_channels=3, out_channels=1, **arguments)
    esszoo.save(model, tmp_path)
    return model


def test_description_names_model_arguments_card_and_versions(tmp_path):
    saved(tmp_path, width=8)
    record = json.loads((tmp_path / "model.json").read_text())
    assert record["model"] == {
        "name": "mlp",
        "arguments": {"in_channels": 3, "out_channels": 1, "width": 8},
    }
    assert record["card"]["paper"]["year"] == 1986
    assert record["versions"]["torch"] == torch.__version__
    assert record["git_commit"]


def test_weights_file_is_safetensors_not_pickle(tmp_path):
    saved(tmp_path)
    header_length = int.from_bytes((tmp_path / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "model.safetensors").read_bytes()[8 : 8 + header_length])
    assert header["__metadata__"]["format"] == "esszoo-checkpoint"


def drop_sum(directory):
    record = json.loads((directory / "model.json").read_text())
    del record["weights_sha256"]
    (directory / "model.json").write_text(json.dumps(record))


def test_a_pickle_disguised_as_weights_is_refused(tmp_path):
    saved(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        esszoo.load(tmp_path)
    drop_sum(tmp_path)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        esszoo.load(tmp_path)


def test_weights_of_another_model_are_refused(tmp_path):
    saved(tmp_path / "a", width=8)
    saved(tmp_path / "b", width=16)
    (tmp_path / "a" / "model.safetensors").write_bytes(
        (tmp_path / "b" / "model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="sha256 differs"):
        esszoo.load(tmp_path / "a")
    drop_sum(tmp_path / "a")
    with pytest.raises(CheckpointError, match="do not fit model 'mlp'"):
        esszoo.load(tmp_path / "a")


def test_corrupt_description_is_refused(tmp_path):
    saved(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "esszoo-checkpoint", "model": ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        esszoo.load(tmp_path)


def test_description_naming_an_unknown_model_is_refused(tmp_path):
    saved(tmp_path)
    record = json.loads((tmp_path / "model.json").read_text())
    record["model"]["name"] = "mlpx"
    (tmp_path / "model.json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="unknown model 'mlpx'"):
        esszoo.load(tmp_path)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        esszoo.load(tmp_path / "nothing")


def test_save_needs_a_zoo_model(tmp_path):
    with pytest.raises(ModelError, match="create_model"):
        esszoo.save(torch.nn.Linear(2, 1), tmp_path)


def test_interrupted_save_leaves_the_previous_pair_intact(tmp_path, monkeypatch):
    saved(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("esszoo.checkpoint.json.dumps", fail)
    with pytest.raises(OSError):
        saved(tmp_path, width=8)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    esszoo.load(tmp_path)
