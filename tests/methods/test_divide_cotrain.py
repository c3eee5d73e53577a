"""Divide and Co-training: the generalized JS term, the λ warm-up, gradients and the division."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.config import ModelConfig, OptimConfig
from analysis.errors import CollabError
from analysis.methods import METHODS, create_method, peer_cross_entropy
from analysis.methods.divide_cotrain import DivideCotrainOptions, cot_weight_at, generalized_js
from analysis.models import CollabOutput, count_parameters
from analysis.training.optim import build_optimizer

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))
CIFAR100 = SimpleNamespace(num_classes=100, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)


def _method(**options):
    return create_method(DivideCotrainOptions(**options))


def _entropy(p: list[float]) -> float:
    return -sum(q * math.log(q) for q in p if q > 0)


def test_gjs_is_zero_for_identical_peers_and_positive_otherwise() -> None:
    z = torch.randn(1, 6, 5).expand(3, 6, 5)
    assert abs(generalized_js(z).item()) < 1e-6
    assert generalized_js(torch.randn(3, 6, 5)).item() > 1e-4
    assert generalized_js(torch.randn(1, 6, 5)).abs().item() < 1e-6  # S = 1: no co-training


def test_gjs_hand_computation() -> None:
    # Peer 0 predicts (1/2, 1/2), peer 1 (3/4, 1/4): logits (0, 0) and (log 3, 0); one sample.
    z = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])
    expected = _entropy([0.625, 0.375]) - 0.5 * (_entropy([0.5, 0.5]) + _entropy([0.75, 0.25]))
    assert generalized_js(z).item() == pytest.approx(expected, abs=1e-6)
    # For S = 2 it is the Jensen-Shannon divergence: mean KL of each peer to the mixture.
    a, b = torch.randn(2, 7, 5).unbind(0)
    m = (a.softmax(-1) + b.softmax(-1)) / 2
    js = 0.5 * sum(F.kl_div(m.log(), p.softmax(-1), reduction="batchmean") for p in (a, b))
    assert generalized_js(torch.stack([a, b])).item() == pytest.approx(js.item(), abs=1e-5)


def test_warmup_schedule_values() -> None:
    def weight(epoch, **kw):
        return cot_weight_at(epoch, **{"weight": 0.5, "warmup_epochs": 40, "floor": 0.005, **kw})

    assert weight(0.0) == 0.005  # the floor
    assert weight(0.2) == 0.005  # 0.0025 would be below the floor
    assert weight(1.0) == pytest.approx(0.0125)
    assert weight(20.0) == pytest.approx(0.25)
    assert weight(40.0) == 0.5 and weight(300.0) == 0.5
    assert weight(3.0, warmup_epochs=0) == 0.5
    assert weight(10.0, weight=0.0) == 0.0  # weight 0 switches co-training off, floor or not


def test_loss_is_cross_entropies_plus_weighted_gjs() -> None:
    method = _method(warmup_epochs=4.0)
    z, y = torch.randn(3, 8, 4), torch.arange(8) % 4
    total, parts = method.loss(CollabOutput(z, z.mean(0)), y, epoch=1.0)
    expected = peer_cross_entropy(z, y).sum() + 0.125 * generalized_js(z)
    assert total.item() == pytest.approx(expected.item(), abs=1e-5)
    assert parts["ce"].shape == (3,) and parts["cot_weight"].item() == pytest.approx(0.125)


def test_cotraining_term_sends_gradient_into_every_peer() -> None:
    torch.manual_seed(0)
    method = _method()
    model = method.build_model(ModelConfig(arch="test_resnet", peers=3), SHAPE)
    x = torch.rand(3, 6, 1, 16, 16)  # one view per peer
    generalized_js(model(x).peer_logits).backward()
    for k in range(3):
        grads = [p.grad for p in model.peers[k].parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), (
            f"peer {k}"
        )


def test_build_model_divides_the_large_network() -> None:
    method = _method()
    with torch.device("meta"):
        model = method.build_model(ModelConfig(arch="resnet110_bottleneck", peers=2), CIFAR100)
    assert model.num_peers == 2 and method.per_peer_views
    assert [model.peers[k].conv1.out_channels for k in range(2)] == [12, 12]
    assert sum(count_parameters(p) for p in model.peers) == 1_333_472
    assert model.peer_names == ["resnet110_bottleneck/2#0", "resnet110_bottleneck/2#1"]
    # The authors' network: AvgPool(2) + 1x1 conv + BN downsampling shortcuts.
    assert isinstance(model.peers[0].layer2[0].shortcut[0], nn.AvgPool2d)
    with torch.device("meta"):
        plain = _method(authors_networks=False).build_model(
            ModelConfig(arch="resnet110_bottleneck", peers=2), CIFAR100
        )
    assert isinstance(plain.peers[0].layer2[0].shortcut[0], nn.Conv2d)
    with pytest.raises(CollabError, match="ambiguous"):
        method.build_model(ModelConfig(arch="resnet110", peers=2), CIFAR100)
    with pytest.raises(CollabError, match="single name"):
        method.build_model(ModelConfig(arch=["resnet20", "resnet20"], peers=2), CIFAR100)


def test_divided_dropout_and_weight_decay() -> None:
    method = _method(dropout=0.2)  # divide_weight_decay is on by default, as the authors'
    assert method.options.divide_weight_decay and method.options.authors_networks
    model = method.build_model(ModelConfig(arch="resnet8", peers=4, options={"width": 8}), SHAPE)
    assert all(p.dropout.p == pytest.approx(0.05) for p in model.peers)
    assert method.weight_decay_scale == pytest.approx(math.exp(0.25 - 1.0))
    optimizer = build_optimizer(
        OptimConfig(weight_decay=5e-4, no_decay_norm_bias=True),
        model,
        weight_decay_scale=method.weight_decay_scale,
    )
    decays = sorted(g["weight_decay"] for g in optimizer.param_groups)
    assert decays == [0.0, pytest.approx(5e-4 * math.exp(-0.75))]
    # The authors exempt the parameters named *norm* or *bias*: here every bias, not BN weights.
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, exempt = ([names[id(p)] for p in g["params"]] for g in optimizer.param_groups)
    assert exempt and all(n.endswith(".bias") for n in exempt)
    assert "peers.0.bn1.weight" in decayed and "peers.0.fc.bias" in exempt
    plain = _method(divide_weight_decay=False)
    plain.build_model(ModelConfig(arch="resnet8", peers=4, options={"width": 8}), SHAPE)
    assert plain.weight_decay_scale == 1.0


def test_registered_and_ensemble_is_the_logit_mean() -> None:
    assert METHODS.get("divide_cotrain") is type(_method())
    torch.manual_seed(0)
    model = (
        _method()
        .build_model(ModelConfig(arch="test_cnn", peers=2, options={"width": 4}), SHAPE)
        .eval()
    )
    x = torch.rand(5, 1, 16, 16)
    out = model(x)
    assert torch.allclose(out.ensemble_logits, out.peer_logits.mean(0))
    assert torch.allclose(model.peer(1)(x), out.peer_logits[1], atol=1e-6)
