"""Starting from a checkpoint trained on other variables: adapt the first layer by name."""

import torch

import esszoo
from esszoo.data.variables import Variable
from esszoo.transfer import NEW_VARIABLE_SCALE, init_from_checkpoint
from tests.conftest import tiny_recipe_dict, write_recipe


def saved_with_inputs(tmp_path, names):
    torch.manual_seed(0)
    net = esszoo.create_model("mlp", in_channels=len(names), out_channels=1, depth=2, width=8)
    esszoo.save(net, tmp_path, inputs=[Variable(n).to_dict() for n in names])
    return net


def test_known_variables_keep_their_kernels_new_ones_start_small(tmp_path):
    old = saved_with_inputs(tmp_path, ["tas", "huss", "ps"])
    torch.manual_seed(1)
    new = esszoo.create_model("mlp", in_channels=2, out_channels=1, depth=2, width=8)
    fresh = new.hidden[0].weight.detach().clone()
    report = init_from_checkpoint(new, tmp_path, [Variable("huss"), Variable("sfcWind")])
    first = new.hidden[0].weight.detach()
    assert torch.equal(first[:, 0], old.hidden[0].weight[:, 1])  # huss moved from column 1
    assert torch.allclose(first[:, 1], fresh[:, 1] * NEW_VARIABLE_SCALE)  # unknown: small
    assert report["adapted"] == ["hidden.0.weight"]
    assert torch.equal(new.head.weight, old.head.weight)  # same shape: copied


def test_a_new_output_size_keeps_the_fresh_head(tmp_path):
    saved_with_inputs(tmp_path, ["tas"])
    new = esszoo.create_model("mlp", in_channels=1, out_channels=3, depth=2, width=8)
    report = init_from_checkpoint(new, tmp_path, [Variable("tas")])
    assert set(report["kept_fresh"]) == {"head.weight", "head.bias"}


def test_a_recipe_can_start_from_a_run_with_other_variables(tmp_path, trained_run, capsys):
    from esszoo.training import train

    recipe = tiny_recipe_dict(tmp_path / "runs", init_from=str(trained_run))
    recipe["data"] = {"source": "tmy3", "inputs": ["huss", "tas"], "targets": ["hurs"]}
    recipe["trainer"]["max_epochs"] = 1
    train(write_recipe(tmp_path / "r.yaml", recipe))
    assert "first layer adapted by variable name: ['hidden.0.weight']" in capsys.readouterr().out


def test_the_first_convolution_of_a_resnet_is_adapted_by_variable_name(tmp_path):
    torch.manual_seed(0)
    old = esszoo.create_model("resnet18", in_channels=2, num_classes=3, width=8)
    esszoo.save(old, tmp_path, inputs=[Variable("tas").to_dict(), Variable("pr").to_dict()])
    new = esszoo.create_model("resnet18", in_channels=3, num_classes=5, width=8)
    report = init_from_checkpoint(new, tmp_path, [Variable(n) for n in ("pr", "psl", "tas")])
    assert report["adapted"] == ["conv1.weight"]
    assert torch.equal(new.conv1.weight[:, 0], old.conv1.weight[:, 1])
    assert torch.equal(new.conv1.weight[:, 2], old.conv1.weight[:, 0])
    assert new.conv1.weight[:, 1].abs().max() < 0.05 * old.conv1.weight.abs().max()
    assert torch.equal(new.layer4[1].conv2.weight, old.layer4[1].conv2.weight)
    assert set(report["kept_fresh"]) == {"fc.weight", "fc.bias"}


def test_a_classifier_s_resnet_becomes_a_detector_s_backbone_its_kernel_shared_by_frames(
    tmp_path,
):
    torch.manual_seed(0)
    old = esszoo.create_model("resnet18", in_channels=1, num_classes=3, width=8)
    old.train()(torch.randn(4, 1, 32, 32))  # batch statistics, not the initial ones
    esszoo.save(old, tmp_path, inputs=[Variable("rainfall_amount").to_dict()])
    new = esszoo.create_model(
        "detr",
        in_channels=3,
        num_classes=1,
        backbone="resnet18",
        width=8,
        hidden=16,
        heads=2,
        encoder_layers=1,
        decoder_layers=1,
        feedforward=16,
        queries=4,
    )
    report = init_from_checkpoint(new, tmp_path, [Variable("rainfall_amount")] * 3)
    assert report["adapted"] == ["backbone.conv1.weight"]
    for frame in range(3):  # three past frames of one variable: a third of its kernel each
        assert torch.allclose(new.backbone.conv1.weight[:, frame], old.conv1.weight[:, 0] / 3)
    assert torch.equal(new.backbone.layer4[1].conv2.weight, old.layer4[1].conv2.weight)
    frozen = new.backbone.layer2[0].bn1  # a frozen batch norm takes the trained statistics
    assert torch.equal(frozen.running_mean, old.layer2[0].bn1.running_mean)
    assert torch.equal(frozen.weight, old.layer2[0].bn1.weight)
    assert "class_embed.weight" in report["kept_fresh"]
