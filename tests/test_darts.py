"""The DARTS evaluation network: the paper's count, genotypes checked, the operations on
Earth grids (odd sides), the auxiliary head and drop-path."""

from __future__ import annotations

import pytest
import torch

import esszoo
from esszoo.errors import ModelError
from esszoo.layers.nas import OPS, PRIMITIVES, FactorizedReduce
from esszoo.models.nas.darts import GENOTYPES, Genotype


def test_the_darts_v2_network_counts_the_paper_s_3_3m_without_its_auxiliary_head():
    assert esszoo.count_parameters("darts", in_channels=3, num_classes=10) == 3_349_342
    with_head = esszoo.count_parameters("darts", in_channels=3, num_classes=10, aux=True)
    assert with_head - 3_349_342 == 476_426  # the auxiliary classifier, not counted


def test_the_auxiliary_head_speaks_in_training_only():
    torch.manual_seed(0)
    net = esszoo.create_model("darts", in_channels=3, num_classes=4, width=4, cells=5, aux=True)
    x = torch.randn(2, 3, 32, 32)
    main, aux = net.train()(x)
    assert main.shape == aux.shape == (2, 4)
    assert net.eval()(x).shape == (2, 4)


def test_the_skip_share_of_the_published_cells():
    assert GENOTYPES["DARTS_V2"].skip_share() == pytest.approx(5 / 16)
    assert GENOTYPES["DARTS_V1"].skip_share() == pytest.approx(6 / 16)


def test_a_genotype_round_trips_as_a_mapping_and_bad_ones_are_refused():
    written = GENOTYPES["DARTS_V2"].to_dict()
    assert Genotype.of(written) == GENOTYPES["DARTS_V2"]
    bad_op = written | {"normal": [["conv_9x9", 0]] + written["normal"][1:]}
    with pytest.raises(ModelError, match="conv_9x9"):
        Genotype.of(bad_op)
    later = written | {"normal": [["sep_conv_3x3", 3]] + written["normal"][1:]}
    with pytest.raises(ModelError, match="comes later"):
        esszoo.create_model("darts", in_channels=1, num_classes=2, genotype=later, cells=3)
    with pytest.raises(ModelError, match="unknown genotype"):
        esszoo.create_model("darts", in_channels=1, num_classes=2, genotype="DARTS_V3")


@pytest.mark.parametrize("side", [7, 8])
def test_every_operation_halves_odd_and_even_grids_alike(side):
    x = torch.randn(2, 4, side, side + 3)
    expected = ((side + 1) // 2, (side + 4) // 2)
    for name in PRIMITIVES:
        assert OPS[name](4, 2, True)(x).shape[-2:] == expected, name
        assert OPS[name](4, 1, True)(x).shape[-2:] == x.shape[-2:], name


def test_factorized_reduce_is_the_authors_on_even_grids():
    torch.manual_seed(0)
    reduce = FactorizedReduce(4, 6, True).eval()
    x = torch.randn(2, 4, 8, 10)
    relu = torch.relu(x)
    authors = reduce.bn(torch.cat([reduce.conv_1(relu), reduce.conv_2(relu[:, :, 1:, 1:])], 1))
    assert torch.allclose(reduce(x), authors)


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    net = esszoo.create_model(
        "darts", in_channels=3, num_classes=4, width=4, cells=3, drop_path=0.9
    )
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))
