"""The command line: every user error is one line on stderr and exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from tests.conftest import run_cli, tiny_recipe_dict, write_recipe


def assert_user_error(status: int, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("esszoo: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def recipe_with(tmp_path, **changes):
    return write_recipe(tmp_path / "r.yaml", tiny_recipe_dict(tmp_path / "runs", **changes))


def test_models_lists_the_zoo_as_json(capsys):
    status, out, _ = run_cli(["models", "--task", "regression", "--json"], capsys)
    assert status == 0
    assert [card["name"] for card in json.loads(out)] == ["bnn_mlp", "mlp"]


def test_info_counts_parameters_at_the_reference_configuration(capsys):
    status, out, _ = run_cli(["info", "mlp"], capsys)
    assert status == 0 and "567,361 counted here" in out and "Rumelhart" in out
    assert "arguments   in_channels, out_channels, depth=4, width=128" in out
    status, out, _ = run_cli(["info", "mlp", "--json"], capsys)
    assert json.loads(out)["arguments"]["activation"] == "gelu"


def test_data_commands_describe_the_built_in_data(capsys):
    status, out, _ = run_cli(["data", "show", "tmy3"], capsys)
    assert status == 0 and "air_temperature" in out and "licence" in out
    status, out, _ = run_cli(["data", "list"], capsys)
    assert status == 0 and "tmy3" in out and "pvlib==0.16.1" in out


def test_missing_file(tmp_path, capsys):
    recipe = recipe_with(tmp_path, **{"data.source": str(tmp_path / "absent.nc")})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "no such file", "absent.nc")


def test_corrupt_file(tmp_path, station_file, capsys):
    broken = tmp_path / "broken.nc"
    broken.write_bytes(station_file.read_bytes()[: station_file.stat().st_size // 3])
    recipe = recipe_with(tmp_path, **{"data.source": str(broken)})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "cannot read", "broken.nc")


def test_unknown_variable(tmp_path, capsys):
    recipe = recipe_with(tmp_path, **{"data.inputs": ["tas", "ps", "husss"]})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "'husss'", "did you mean 'huss'")


def test_wrong_dimensions(tmp_path, tmy3, capsys):
    dataset = tmy3[["tas", "ps", "huss"]].isel(time=slice(0, 500))
    dataset["ps"] = dataset["ps"].isel(station=0, drop=True)
    path = tmp_path / "mixed.nc"
    dataset.to_netcdf(path)
    recipe = recipe_with(tmp_path, **{"data.source": str(path)})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "'ps' has dimensions")


def test_all_nan_variable(tmp_path, tmy3, capsys):
    dataset = tmy3[["tas", "ps", "huss"]].isel(time=slice(0, 500)).copy(deep=True)
    dataset["huss"][:] = np.nan
    path = tmp_path / "nan.nc"
    dataset.to_netcdf(path)
    recipe = recipe_with(tmp_path, **{"data.source": str(path)})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "'huss' has no valid value")


def test_unknown_recipe_key(tmp_path, capsys):
    recipe = recipe_with(tmp_path, **{"trainer.learning_rate": 0.1})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "trainer.learning_rate")


def test_wrong_value_type(tmp_path, capsys):
    recipe = recipe_with(tmp_path)
    status, _, err = run_cli(["train", recipe, "trainer.max_epochs=many"], capsys)
    assert_user_error(status, err, "trainer.max_epochs", "'many'")


def test_unknown_model_name(tmp_path, capsys):
    recipe = recipe_with(tmp_path, **{"model.name": "resnet9000"})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "unknown model 'resnet9000'")


def test_unknown_model_argument(tmp_path, capsys):
    recipe = recipe_with(tmp_path, **{"model.widht": 8})
    assert_user_error(*run_cli(["train", recipe], capsys)[::2], "did you mean 'width'")


def test_checkpoint_of_another_model(trained_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    record = json.loads((other / "model.json").read_text())
    record["model"]["arguments"]["width"] = 64
    del record["weights_sha256"]
    (other / "model.json").write_text(json.dumps(record))
    status, _, err = run_cli(["evaluate", other], capsys)
    assert_user_error(status, err, "do not fit model 'mlp'")


def test_predicting_on_data_with_other_variables(trained_run, station_file, tmp_path, capsys):
    renamed = tmp_path / "renamed.nc"
    xr.load_dataset(station_file).rename({"tas": "t2m"}).to_netcdf(renamed)
    out = tmp_path / "out.nc"
    status, _, err = run_cli(["predict", trained_run, "--data", renamed, "--out", out], capsys)
    assert_user_error(status, err, "['tas']", "t2m")
    assert not out.exists()


def test_not_a_run_directory(tmp_path, capsys):
    assert_user_error(*run_cli(["evaluate", tmp_path], capsys)[::2], "not a run directory")


def test_export_torchscript_loads_without_esszoo(trained_run, tmp_path, capsys):
    out = tmp_path / "emulator.pt"
    status, stdout, _ = run_cli(
        ["export", trained_run, "--format", "torchscript", "--out", out], capsys
    )
    assert status == 0 and "reproduces esszoo within" in stdout
    check_in_fresh_process(
        "import torch; m = torch.jit.load(sys.argv[1]); y = m(x)", out, trained_run
    )


def test_export_onnx_runs_in_onnxruntime_without_esszoo(trained_run, tmp_path, capsys):
    out = tmp_path / "emulator.onnx"
    status, _, _ = run_cli(["export", trained_run, "--format", "onnx", "--out", out], capsys)
    assert status == 0
    check_in_fresh_process(
        "import onnxruntime as ort; s = ort.InferenceSession(sys.argv[1]); "
        "y = torch.from_numpy(s.run(None, {'x': x.numpy()})[0])",
        out,
        trained_run,
    )


def check_in_fresh_process(load_and_run: str, path, run_dir) -> None:
    """Run the exported file in a new interpreter that never imports esszoo; compare outputs."""
    import torch

    import esszoo

    # three rows, not the two the export was traced with: the batch size is free
    x = torch.tensor(
        [[290.0, 99_000.0, 0.010], [270.0, 101_000.0, 0.002], [300.0, 98_000.0, 0.018]]
    )
    with torch.no_grad():
        expected = esszoo.load(run_dir)(x)
    script = (
        "import sys, json, torch\n"
        f"x = torch.tensor({x.tolist()})\n"
        f"{load_and_run}\n"
        "assert 'esszoo' not in sys.modules\n"
        "print(json.dumps(y.tolist()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    reproduced = torch.tensor(json.loads(result.stdout.strip().splitlines()[-1]))
    assert torch.allclose(reproduced, expected, rtol=1e-4, atol=1e-5)


def test_a_real_process_exits_with_status_2_and_one_line(tmp_path):
    command = [sys.executable, "-m", "esszoo.cli", "info", "zzz9000"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("esszoo: error: unknown model 'zzz9000'; valid choices: ")
    assert line.endswith("(list them with `esszoo models`)")


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["data", "--help"]])
def test_help_works(args, capsys):
    status, out, _ = run_cli(args, capsys)
    assert status == 0 and "Usage" in out
