"""The Divide-and-Co-training authors' networks (dc_resnet, dc_wrn, dc_resnext29): known answers.

The totals are the parameter counts of the authors' ``model/resnet.py`` (``resnet110``,
``wide_resnet16_8``, ``wide_resnet28_10`` with ``dataset="cifar100", split_factor=S``), summed
over the S networks, counted with their code on torch 2.x on the meta device.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import MODELS, count_parameters, create_model, model_options
from analysis.models.cifar_resnet import AMBIGUOUS_RESNET110
from analysis.models.division import create_divided


def _total(arch: str, split: int) -> int:
    with torch.device("meta"):
        nets = create_divided(arch, split=split, num_classes=100)
    return sum(count_parameters(net) for net in nets)


@pytest.mark.parametrize(
    ("arch", "totals"),
    [
        ("wrn28_10", (36_539_124, 35_855_016, 36_650_576)),
        ("wrn16_8", (11_009_332, 12_416_232, 11_091_664)),
        ("resnet110_bottleneck", (1_170_868, 1_333_472, 1_214_256)),
    ],
)
def test_totals_of_the_authors_code(arch: str, totals: tuple[int, int, int]) -> None:
    assert tuple(_total(arch, s) for s in (1, 2, 4)) == totals


def test_post_activation_wide_block_layout() -> None:
    net = create_model("dc_wrn", num_classes=10, depth=16, widen=2)
    assert [n for n, _ in net.named_children()][:3] == ["conv1", "bn1", "relu"]
    assert "bn" not in dict(net.named_children())  # no final BN
    block = net.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    pool, conv, bn = block.shortcut
    assert isinstance(pool, nn.AvgPool2d) and isinstance(bn, nn.BatchNorm2d)
    assert conv.kernel_size == (1, 1) and conv.stride == (1, 1)
    # Stage 1 changes 16 -> 32 channels at stride 1: 1x1 conv + BN, no pooling.
    assert [type(m) for m in net.layer1[0].shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    assert isinstance(net.layer1[1].shortcut, nn.Identity)
    # Post-activation: ReLU after the sum, so the block output is non-negative.
    assert block.train()(torch.randn(2, 32, 8, 8)).min() >= 0


def test_avgpool_shortcut_averages_2x2_then_projects() -> None:
    net = create_model("dc_resnet", num_classes=10, depth=8, width=4)
    pool, conv, bn = net.layer2[0].shortcut
    assert pool.kernel_size == 2 and pool.stride == 2 and pool.ceil_mode
    assert not pool.count_include_pad
    x = torch.arange(2 * 4 * 5 * 5, dtype=torch.float).view(2, 4, 5, 5)
    # 5 -> 3 with ceil_mode: the last window is the 1-pixel edge, averaged over itself only.
    assert pool(x).shape == (2, 4, 3, 3) and pool(x)[0, 0, 2, 2] == x[0, 0, 4, 4]
    assert pool(x)[0, 0, 0, 0] == x[0, 0, :2, :2].mean()
    expected = bn.eval()(conv(pool(x)))
    assert torch.equal(net.layer2[0].shortcut.eval()(x), expected)
    # Same parameters as the strided-conv shortcut of the registered network.
    plain = create_model("cifar_resnet", num_classes=10, depth=8, width=4)
    assert count_parameters(net) == count_parameters(plain)
    assert net.layer2[0].shortcut[1].weight.shape == plain.layer2[0].shortcut[0].weight.shape


@pytest.mark.parametrize(
    ("name", "options", "last"),
    [
        ("dc_resnet", {"depth": 14, "width": 4}, "bn2"),
        ("dc_resnet", {"depth": 20, "width": 4, "block": "bottleneck"}, "bn3"),
        ("dc_wrn", {"depth": 16, "widen": 1}, "bn2"),
        ("dc_resnext29", {"cardinality": 2, "base_width": 4}, "bn3"),
    ],
)
def test_last_bn_of_every_block_starts_at_zero(name: str, options: dict, last: str) -> None:
    net = create_model(name, num_classes=10, **options)
    blocks = [b for i in (1, 2, 3) for b in getattr(net, f"layer{i}")]
    assert blocks and all((getattr(b, last).weight == 0).all() for b in blocks)
    assert all((b.bn1.weight == 1).all() for b in blocks)
    assert (net.bn1.weight == 1).all()
    assert torch.equal(net.fc.bias, torch.zeros_like(net.fc.bias))
    assert 0.5e-3 < float(net.fc.weight.detach().std()) < 1.5e-3  # their N(0, 0.001^2)
    # Every block starts as its shortcut: an identity block passes its (non-negative) input.
    block = next(b for b in blocks if isinstance(b.shortcut, nn.Identity))
    x = torch.rand(2, block.conv1.in_channels, 8, 8)
    assert torch.allclose(block.eval()(x), x)


def test_registered_networks_keep_their_shortcuts_and_init() -> None:
    net = create_model("resnet20", num_classes=10)
    assert [type(m) for m in net.layer2[0].shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    assert net.layer2[0].shortcut[0].stride == (2, 2)
    assert (net.layer2[0].bn2.weight == 1).all()
    assert model_options("dc_resnet") == model_options("cifar_resnet")
    assert model_options("dc_wrn") == model_options("wrn")
    assert model_options("dc_resnext29") == model_options("resnext29")


def test_resnet110_naming_rule() -> None:
    """ResNet-110 exists only with its block in the name; the bare name is a one-line error."""
    assert "resnet110" not in MODELS and "resnet110" not in MODELS.list()
    with pytest.raises(CollabError, match="ambiguous") as err:
        create_model("resnet110", num_classes=100)
    assert str(err.value) == AMBIGUOUS_RESNET110 and "\n" not in str(err.value)
    assert "resnet110_basic" in str(err.value) and "resnet110_bottleneck" in str(err.value)
    with torch.device("meta"):
        basic = create_model("resnet110_basic", num_classes=100)
        bottleneck = create_model("resnet110_bottleneck", num_classes=100)
    assert count_parameters(basic) == 1_736_564
    assert count_parameters(bottleneck) == 1_170_868
    assert model_options("resnet110_bottleneck") == {"width": 16, "dropout": 0.0, "widths": None}
    with pytest.raises(CollabError, match="no option 'block'"):
        create_divided("resnet110_basic", split=2, num_classes=10, block="bottleneck")
    with pytest.raises(ValueError, match="refused"):
        MODELS.register("resnet110")(lambda **kw: None)
