"""DCL module and networks: fusion known answers, branch outputs, parameter arithmetic."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import count_parameters, create_model
from analysis.models.dcl import (
    SORT_EPS,
    DCLConv,
    auto_branch_width,
    dcl_param_count,
    fuse,
)
from analysis.models.dcl_nets import parse_stages

# Two branches, M = 2 filters, one batch item, a 1 x 2 map: F[k, 0, m, 0, w].
F1 = [[2.0, -1.0], [0.5, 3.0]]
F2 = [[4.0, 5.0], [-2.0, 0.25]]
RESPONSES = torch.tensor([F1, F2]).unsqueeze(1).unsqueeze(3)  # (2, 1, 2, 1, 2)


def test_product_and_sum_fusion_known_answers() -> None:
    product = fuse(RESPONSES, "product")[0, :, 0]
    # ReLU first: -1 and -2 become 0.
    assert product.tolist() == [[8.0, 0.0], [0.0, 0.75]]
    assert fuse(RESPONSES, "sum")[0, :, 0].tolist() == [[6.0, 4.0], [-1.5, 3.25]]


def test_sort_fusion_matches_the_paper_formula_at_two_branches() -> None:
    out = fuse(RESPONSES, "sort")[0, :, 0]
    expected = [
        [2 + 4 + math.sqrt(8 + SORT_EPS), -1 + 5 + math.sqrt(SORT_EPS)],
        [0.5 - 2 + math.sqrt(SORT_EPS), 3 + 0.25 + math.sqrt(0.75 + SORT_EPS)],
    ]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_sort_fusion_with_three_branches_sums_every_pair() -> None:
    f = torch.tensor([1.0, 4.0, 9.0]).view(3, 1, 1, 1, 1)
    out = fuse(f, "sort").item()
    pairs = math.sqrt(4 + SORT_EPS) + math.sqrt(9 + SORT_EPS) + math.sqrt(36 + SORT_EPS)
    assert out == pytest.approx(14 + pairs)


def test_outer_fusion_orders_channels_first_branch_major() -> None:
    out = fuse(RESPONSES, "outer")[0, :, 0]  # (M^2 = 4, W = 2)
    r1, r2 = torch.tensor(F1).relu(), torch.tensor(F2).relu()
    for w1 in range(2):
        for w2 in range(2):
            torch.testing.assert_close(out[w1 * 2 + w2], r1[w1] * r2[w2])
    three = fuse(torch.rand(3, 2, 3, 4, 4), "outer")
    assert three.shape == (2, 27, 4, 4)


def test_unknown_fusion_is_a_collab_error() -> None:
    with pytest.raises(CollabError, match="unknown DCL fusion 'max'.*product, sort, outer, sum"):
        fuse(RESPONSES, "max")
    with pytest.raises(CollabError, match="fusion"):
        create_model("dcl_resnet8", num_classes=10, fusion="max")


@pytest.mark.parametrize("fusion", ["product", "sort", "outer", "sum"])
def test_branch_outputs_hooks_and_forward_agree(fusion: str) -> None:
    torch.manual_seed(0)
    dcl = DCLConv(3, 4, branches=2, fusion=fusion, stride=2).eval()
    x = torch.rand(2, 3, 8, 8)
    seen = {}
    for k in range(2):
        dict(dcl.named_modules())[f"branches.{k}"].register_forward_hook(
            lambda m, i, o, k=k: seen.__setitem__(k, o)
        )
    with torch.no_grad():
        out = dcl(x)
        branches = dcl.branch_outputs(x)
    assert branches.shape == (2, 2, 4, 4, 4)
    torch.testing.assert_close(seen[0], branches[0])
    torch.testing.assert_close(seen[1], branches[1])
    fused = fuse(branches, fusion)
    expected = fused.relu() if fusion in ("sum", "sort") else fused
    torch.testing.assert_close(out, expected)
    assert out.shape == (2, dcl.out_chans, 4, 4) and out.min() >= 0
    assert dcl.out_chans == (16 if fusion == "outer" else 4) and dcl.vocabulary_size == 16


def test_sum_fusion_is_one_conv_with_summed_weights() -> None:
    """The control: without collaboration K branches collapse to a single conv."""
    torch.manual_seed(1)
    dcl = DCLConv(3, 5, branches=3, fusion="sum").eval()  # fresh BN: x / sqrt(1 + eps)
    weight = sum(branch[0].weight for branch in dcl.branches)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        single = nn.functional.conv2d(x, weight, padding=1) / math.sqrt(1 + 1e-5)
        torch.testing.assert_close(dcl(x), single.relu())


def test_parameters_grow_linearly_in_k_while_vocabulary_grows_exponentially() -> None:
    counts = [count_parameters(DCLConv(16, 8, branches=k)) for k in (1, 2, 3, 4)]
    assert counts == [dcl_param_count(16, 8, branches=k) for k in (1, 2, 3, 4)]
    assert counts[0] == 16 * 8 * 9 + 16 and counts == [k * counts[0] for k in (1, 2, 3, 4)]
    assert [DCLConv(16, 8, branches=k).vocabulary_size for k in (1, 2, 3, 4)] == [8, 64, 512, 4096]


def test_product_fusion_sends_gradient_to_every_branch() -> None:
    torch.manual_seed(2)
    dcl = DCLConv(3, 4, branches=3, fusion="product")
    dcl(torch.rand(4, 3, 8, 8)).sum().backward()
    for k, branch in enumerate(dcl.branches):
        assert branch[0].weight.grad.abs().sum() > 0, f"branch {k} got no gradient"


@pytest.mark.parametrize(
    ("filters", "branches", "fusion", "width"),
    [
        (64, 2, "product", 32),
        (64, 2, "outer", 8),
        (512, 2, "outer", 22),
        (27, 3, "outer", 3),
        (26, 3, "outer", 2),
        (5, 8, "sum", 1),
        (1, 2, "outer", 1),
    ],
)
def test_auto_branch_width(filters: int, branches: int, fusion: str, width: int) -> None:
    assert auto_branch_width(filters, branches=branches, fusion=fusion) == width


def test_dcl_network_parameter_counts_by_hand() -> None:
    with torch.device("meta"):
        vgg = count_parameters(create_model("vgg8", num_classes=10))
        dcl_vgg = count_parameters(create_model("dcl_vgg8", num_classes=10))
        resnet = count_parameters(create_model("resnet8", num_classes=10))
        dcl_resnet = count_parameters(create_model("dcl_resnet8", num_classes=10))
    # vgg8's last stage (256->512, 512->512 convs + BN) and fc(512->10) become two DCL modules
    # of 2 x 256 filters (each 2 * (in * 256 * 9 + 512), in = 256 both times) and fc(256->10).
    old = (256 * 512 * 9 + 1024) + (512 * 512 * 9 + 1024) + 5130
    new = 2 * (2 * (256 * 256 * 9 + 512)) + 2570
    assert dcl_vgg == vgg - old + new == 2_735_178
    # resnet8 stage 3: conv1 32->64 + BN (18,560) and conv2 64->64 (36,864) become a DCL module
    # 2 * (32 * 32 * 9 + 64) = 18,560 and conv2 32->64 (18,432): 18,432 fewer.
    assert dcl_resnet == resnet - 18_432 == 59_610


def test_dcl_layers_resolve_and_are_probe_layers() -> None:
    vgg = create_model("dcl_vgg8", num_classes=10, in_chans=1, width=8, dcl_stages="3,4")
    assert vgg.dcl_layers == ["layer3.0", "layer4.0", "layer4.1"]
    resnet = create_model("dcl_resnet8", num_classes=10, width=4, fusion="outer", dcl_stages="all")
    assert resnet.dcl_layers == ["layer1.0.dcl", "layer2.0.dcl", "layer3.0.dcl"]
    for net in (vgg, resnet):
        modules = dict(net.named_modules())
        assert all(isinstance(modules[p], DCLConv) for p in net.dcl_layers)
        assert set(net.dcl_layers) <= set(net.probe_layers)
    # outer with width 4: stage 3 replaces 16 filters by 4^2 channels from M = 4.
    assert dict(resnet.named_modules())["layer3.0.dcl"].out_chans == 16
    assert resnet(torch.rand(2, 3, 16, 16)).shape == (2, 10)


def test_parse_stages() -> None:
    assert parse_stages("last", 4) == {4} and parse_stages("all", 3) == {1, 2, 3}
    assert parse_stages(2, 3) == {2} and parse_stages(" 1, 3 ", 3) == {1, 3}
    for bad in ("0", "4", "two", ""):
        with pytest.raises(CollabError, match="dcl_stages"):
            parse_stages(bad, 3)
