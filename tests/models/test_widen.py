"""Function-preserving widening: outputs equal before and after (eval and train mode), the
widened network has the shapes of a fresh one with those widths, and the ``widths`` option."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import count_parameters, create_model
from analysis.models.division import divided_options
from analysis.models.widen import stage_planes, widen_stage, widened_widths

NETS = {
    "basic": ("resnet8", {"width": 4}),
    "basic-deeper": ("resnet20", {"width": 3}),
    "bottleneck": ("cifar_resnet", {"depth": 20, "block": "bottleneck", "width": 3}),
    "dc_resnet": ("dc_resnet", {"depth": 8, "width": 4}),
    "wrn": ("wrn", {"depth": 16, "widths": [6, 8, 12]}),
    "dc_wrn": ("dc_wrn", {"depth": 10, "widths": [6, 8, 12]}),
}


def _net(key: str, **extra) -> nn.Module:
    """The network ``key`` with random BN affine terms, running statistics measured on other
    images than the test batch, and a random ``fc``: no unit is trivially zero (dc nets start
    their last BNs at 0 and fc near 0) and eval and train mode give different outputs."""
    name, options = NETS[key]
    torch.manual_seed(0)
    net = create_model(name, num_classes=5, in_chans=3, **{**options, **extra})
    gen = torch.Generator().manual_seed(1)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
        m.bias.data = torch.randn(m.num_features, generator=gen) * 0.3
        m.momentum = None  # a cumulative average over the calibration batches
    with torch.no_grad():
        for _ in range(2):
            net.train()(torch.rand(16, 3, 16, 16, generator=gen) * 2 - 0.5)
        for m in norms:
            m.momentum = 0.1
        # Logits of unit scale, where float32 rounding is about 1e-7 (the tolerance is 1e-5).
        rms = net.eval().forward_features(torch.rand(16, 3, 16, 16, generator=gen)).pow(2).mean()
        fc = torch.randn(net.fc.weight.shape, generator=gen)
        net.fc.weight.copy_(fc / (net.fc.in_features * rms).sqrt())
    return net


def _outputs(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eval-mode logits, train-mode logits); the network is left unchanged (deep copies)."""
    with torch.no_grad():
        evaluated = copy.deepcopy(net).eval()(x)
        trained = copy.deepcopy(net).train()(x)
    return evaluated, trained


@pytest.mark.parametrize("noise", [0.0, 0.05])
@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("key", list(NETS))
def test_widening_preserves_the_function(key: str, stage: int, noise: float) -> None:
    net = _net(key)
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    before_eval, before_train = _outputs(net, x)
    assert before_eval.std() > 0.1 and before_train.std() > 0.1  # a real signal to compare
    assert (before_eval - before_train).abs().max() > 1e-2  # the two modes really differ
    old = stage_planes(net)
    wide = widen_stage(net, stage, old[stage - 1] + 5, noise=noise, seed=3)
    assert stage_planes(wide) == widened_widths(old, stage, old[stage - 1] + 5)
    after_eval, after_train = _outputs(wide, x)
    assert (after_eval - before_eval).abs().max() <= 1e-5
    assert (after_train - before_train).abs().max() <= 1e-5


@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("key", list(NETS))
def test_widened_network_is_a_fresh_network_with_those_widths(key: str, stage: int) -> None:
    net = _net(key)
    old = stage_planes(net)
    new = widened_widths(old, stage, 2 * old[stage - 1] + 1)  # more than doubled: 3 copies
    widen_stage(net, stage, new[stage - 1])
    fresh = _net(key, widths=new)
    assert count_parameters(net) == count_parameters(fresh)
    assert count_parameters(net) > count_parameters(_net(key))
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes == {k: v.shape for k, v in fresh.state_dict().items()}
    fresh.load_state_dict(net.state_dict())  # strict: the search loads widened weights so
    assert net.feature_dim == net.fc.in_features == fresh.feature_dim


def test_widths_default_is_the_width_rule() -> None:
    """widths=[w, 2w, 4w] (ResNet) and [16k, 32k, 64k] (WRN) build the very same networks."""
    pairs = [
        ("resnet20", {"width": 8}, [8, 16, 32]),
        ("resnet164", {"width": 4}, [4, 8, 16]),
        ("wrn16_4", {}, [64, 128, 256]),
        ("dc_wrn", {"depth": 16, "widen": 2}, [32, 64, 128]),
    ]
    for name, options, widths in pairs:
        default = create_model(name, num_classes=10, **options)
        explicit = create_model(name, num_classes=10, **options, widths=widths)
        assert stage_planes(default) == widths
        assert str(default) == str(explicit)
    assert count_parameters(create_model("wrn16_4", num_classes=10, widths=[64, 128, 256])) == (
        count_parameters(create_model("wrn16_4", num_classes=10))
    )


def test_copies_stay_identical_without_noise_and_diverge_with_it() -> None:
    """Net2Net's symmetry: a copied unit and its original get the same gradient unless the
    noise splits their outgoing weights unequally (which still preserves the function)."""
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    y = torch.arange(16) % 5
    gaps = {}
    for noise in (0.0, 0.1):
        net = widen_stage(_net("basic"), 2, 16, noise=noise, seed=0)  # 8 -> 16: every unit once
        filters = net.layer2[0].conv1.weight  # rows 8.. copy rows 0..7 in some order
        copies = filters[8:].detach().clone()
        originals = {i: r for i, r in enumerate(filters[:8].detach())}
        match = [
            next(i for i, r in originals.items() if torch.equal(r, c)) for c in copies
        ]  # which unit each copy copies
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        nn.functional.cross_entropy(net.train()(x), y).backward()
        opt.step()
        gaps[noise] = (filters[8:] - filters[match]).abs().max().item()
    assert gaps[0.0] == 0.0
    assert gaps[0.1] > 1e-4


def test_widening_refusals_are_one_line_errors() -> None:
    with pytest.raises(CollabError, match="stage 1 of this WRN"):
        widen_stage(create_model("wrn", num_classes=3, depth=10, widen=1), 1, 24)
    with pytest.raises(CollabError, match=r">= 8"):
        widen_stage(_net("basic"), 2, 6)
    with pytest.raises(CollabError, match="stage 4 does not exist"):
        widen_stage(_net("basic"), 4, 8)
    with pytest.raises(CollabError, match="cannot be widened"):
        widen_stage(create_model("test_cnn", num_classes=3), 1, 8)
    with pytest.raises(CollabError, match="'widths' must list 3 positive integers"):
        create_model("resnet8", num_classes=3, widths=[8, 0, 8])
    with pytest.raises(CollabError, match="'widths'"):
        create_model("wrn", num_classes=3, widths=[8, 16])


def test_width_division_divides_every_stage_width() -> None:
    """D&C's rule w -> ceil(w / √S) applies to each entry of ``widths`` (which overrides
    ``width``), so a searched network is divided like any other."""
    spec = divided_options("resnet110_bottleneck", split=4, options={"widths": [16, 30, 64]})
    assert spec.arch == "dc_resnet" and spec.options["widths"] == [8, 15, 32]
    assert "widths [16, 30, 64] -> [8, 15, 32]" in spec.rule
    assert divided_options("wrn16_4", split=2, options={"widths": [64, 128, 256]}).options[
        "widths"
    ] == [46, 91, 182]
    undivided = divided_options("resnet20", split=1, options={"widths": [8, 16, 32]})
    assert undivided.options["widths"] == [8, 16, 32]
