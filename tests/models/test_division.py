"""Width division (Divide and Co-training) and ResNeXt-29: known parameter counts, on meta."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import count_parameters, create_model
from analysis.models.division import (
    PAPER_RESNET_WIDTHS,
    create_divided,
    divided_cardinality,
    divided_options,
    divided_widen,
    divided_width,
)
from analysis.models.resnext import resnext_net


def _total(arch: str, split: int, *, num_classes: int = 100, **options) -> int:
    """Parameters over all ``split`` small networks, built on the meta device (no memory)."""
    with torch.device("meta"):
        nets = create_divided(arch, split=split, num_classes=num_classes, **options)
    assert len(nets) == split
    return sum(count_parameters(net) for net in nets)


def test_width_rule_reproduces_the_paper_resnet_table() -> None:
    assert {s: divided_width(16, s) for s in PAPER_RESNET_WIDTHS} == {
        1: 16,
        2: 12,
        4: 8,
        8: 6,
        16: 4,
    }
    for s, w in PAPER_RESNET_WIDTHS.items():
        spec = divided_options("resnet110_bottleneck", split=s)
        assert spec.arch == "dc_resnet"
        assert spec.options == {"depth": 110, "block": "bottleneck", "width": w}
        plain = divided_options("resnet110_bottleneck", split=s, authors=False)
        assert plain.arch == "resnet110_bottleneck" and plain.options == {"width": w}
    assert divided_width(4, 2) == 3 and divided_width(1, 16) == 1


@pytest.mark.parametrize(("split", "total"), [(1, 1_170_868), (2, 1_333_472), (4, 1_214_256)])
def test_bottleneck_resnet110_totals(split: int, total: int) -> None:
    """METHODS.md check (CIFAR-100, totals over the S networks); the same without ``authors``."""
    assert _total("resnet110_bottleneck", split) == total
    assert _total("resnet110_bottleneck", split, authors=False) == total
    assert _total("cifar_resnet", split, depth=110, block="bottleneck") == total


def test_wrn_widen_rule() -> None:
    assert [divided_widen(10, s) for s in (1, 2, 4)] == [10, 7, 5]
    assert [divided_widen(8, s) for s in (1, 2, 4)] == [8, 6, 4]
    assert divided_widen(1, 16) == 1  # floor of 1
    spec = divided_options("wrn16_8", split=2)
    assert spec.arch == "dc_wrn" and spec.options == {"depth": 16, "widen": 6}
    plain = divided_options("wrn16_8", split=2, authors=False)
    assert plain.arch == "wrn" and plain.options == {"depth": 16, "widen": 6}


@pytest.mark.parametrize(
    ("arch", "exact", "paper"),
    [
        ("wrn16_8", (11_009_332, 12_416_232, 11_091_664), (11.0e6, 12.4e6, 11.1e6)),
        ("wrn28_10", (36_539_124, 35_855_016, 36_650_576), (36.5e6, 35.8e6, 36.7e6)),
    ],
)
def test_wrn_totals_match_the_paper(arch: str, exact: tuple, paper: tuple) -> None:
    """The authors' post-activation WRNs (their code counts the same integers)."""
    got = tuple(_total(arch, s) for s in (1, 2, 4))
    assert got == exact
    for count, reported in zip(got, paper):
        assert math.isclose(count, reported, rel_tol=0.01)


def test_pre_activation_wrn_totals_without_authors() -> None:
    assert [_total("wrn16_8", s, authors=False) for s in (1, 2, 4)] == [
        11_007_540,
        12_413_544,
        11_088_080,
    ]
    assert [_total("wrn28_10", s, authors=False) for s in (1, 2, 4)] == [
        36_536_884,
        35_851_880,
        36_646_096,
    ]


def test_resnext29_8x64d_counts() -> None:
    """Xie et al. report 34.4M (8x64d) and 68.1M (16x64d) for CIFAR-10."""
    with torch.device("meta"):
        net = create_model("resnext29", num_classes=10)
        wide = create_model("resnext29", num_classes=10, cardinality=16)
    assert count_parameters(net) == 34_426_698 and math.isclose(34_426_698, 34.4e6, rel_tol=0.002)
    assert count_parameters(wide) == 68_155_210 and math.isclose(68_155_210, 68.1e6, rel_tol=0.002)
    block = net.layer1[0]
    assert block.conv2.groups == 8 and block.conv2.in_channels == 8 * 64
    assert net.layer3[0].conv2.in_channels == 8 * 256 and net.feature_dim == 1024
    assert [len(getattr(net, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]


def test_resnext_divides_cardinality_and_keeps_group_width() -> None:
    assert [divided_cardinality(8, s) for s in (1, 2, 4, 16)] == [8, 4, 2, 1]
    assert divided_cardinality(8, 3) == 2  # the authors' int(groups / split_factor)
    spec = divided_options("resnext29", split=4, options={"base_width": 64})
    assert spec.arch == "dc_resnext29" and spec.options == {"base_width": 64, "cardinality": 2}
    # CIFAR-100 totals over the S networks: about the large network's budget for every S.
    assert [_total("resnext29", s) for s in (1, 2, 4)] == [34_518_948, 35_309_384, 36_890_256]
    assert _total("resnext29", 2, authors=False) == 35_309_384


def test_resnext29_real_forward_is_a_staged_net() -> None:
    net = create_model("resnext29", num_classes=5, in_chans=1, cardinality=2, base_width=4)
    out = net(torch.rand(2, 1, 16, 16))
    assert out.shape == (2, 5)
    assert [n for n, _ in net.named_children()] == [*net.feature_names, "dropout", "fc"]
    with pytest.raises(CollabError, match="depth"):
        resnext_net(depth=30, num_classes=10)


def test_classifier_dropout_is_divided() -> None:
    nets = create_divided("resnet20", split=2, num_classes=10, dropout=0.3)
    assert all(
        isinstance(n.dropout, nn.Dropout) and n.dropout.p == pytest.approx(0.15) for n in nets
    )
    spec = divided_options("wrn28_10", split=4, options={"dropout": 0.3}, dropout=0.2)
    # A WRN's block dropout is kept; its classifier dropout fc_dropout is divided.
    assert spec.arch == "dc_wrn" and spec.options == {
        "dropout": 0.3,
        "depth": 28,
        "widen": 5,
        "fc_dropout": pytest.approx(0.05),
    }
    # Without an explicit p, the classifier dropout of the options is the large network's p.
    assert divided_options("resnet20", split=4, options={"dropout": 0.4}).options["dropout"] == 0.1
    with pytest.raises(CollabError, match="set it once"):
        divided_options("resnet20", split=2, options={"dropout": 0.4}, dropout=0.2)
    with pytest.raises(CollabError, match="no classifier dropout"):
        divided_options("test_cnn", split=2, dropout=0.5)


def test_undividable_and_bad_splits_raise() -> None:
    with pytest.raises(CollabError, match="no width, widen or cardinality"):
        divided_options("vgg8", split=2)
    assert divided_options("vgg8", split=1).options == {}
    with pytest.raises(CollabError, match="positive integer"):
        divided_options("resnet20", split=0)
    with pytest.raises(CollabError, match="unknown model"):
        divided_options("resnet21", split=2)


def test_divided_networks_have_their_own_weights() -> None:
    torch.manual_seed(0)
    a, b = create_divided("test_resnet", split=2, num_classes=4, in_chans=1)
    assert a.conv1.out_channels == 3  # ceil(4 / sqrt 2)
    assert a.conv1.weight.data_ptr() != b.conv1.weight.data_ptr()
    assert not torch.equal(a.conv1.weight, b.conv1.weight)
