"""Joint decision of multi-participants: the combination rules and where their gradients go."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.methods.joint_decision import JointDecisionModel, JointDecisionOptions
from analysis.models import combine_logits

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))


def _build(peers=2, arch="test_resnet", **opts):
    torch.manual_seed(0)
    method = create_method(JointDecisionOptions(**opts))
    return method, method.build_model(ModelConfig(arch=arch, peers=peers), SHAPE)


def test_participants_are_the_exits_of_every_network():
    _, model = _build(exits_after=["layer1", "layer2"])
    assert isinstance(model, JointDecisionModel)
    assert model.peer_names == [
        "net0/layer1",
        "net0/layer2",
        "net0/fc",
        "net1/layer1",
        "net1/layer2",
        "net1/fc",
    ]
    _, default = _build()
    assert default.peer_names == ["net0/layer2", "net0/fc", "net1/layer2", "net1/fc"]


def test_mean_prob_is_the_mean_of_participant_probabilities():
    _, model = _build()
    out = model(torch.rand(5, 1, 32, 32))
    mean_p = out.peer_logits.softmax(dim=-1).mean(dim=0)
    torch.testing.assert_close(out.ensemble_logits.exp(), mean_p)
    torch.testing.assert_close(out.ensemble_logits.softmax(dim=-1), mean_p)
    torch.testing.assert_close(out.ensemble_logits, combine_logits(out.peer_logits, "prob_mean"))
    assert "participant_logits" not in dict(model.named_parameters())


def test_learned_weights_start_equal_and_weight_the_probabilities():
    _, model = _build(combine="learned")
    x = torch.rand(5, 1, 32, 32)
    out = model(x)
    torch.testing.assert_close(out.ensemble_logits, combine_logits(out.peer_logits, "prob_mean"))
    with torch.no_grad():
        model.participant_logits.copy_(torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])))
    out = model(x)
    torch.testing.assert_close(model.participant_weights(), torch.tensor([0.1, 0.2, 0.3, 0.4]))
    expected = torch.einsum(
        "k,kbc->bc", torch.tensor([0.1, 0.2, 0.3, 0.4]), out.peer_logits.softmax(-1)
    )
    torch.testing.assert_close(out.ensemble_logits.exp(), expected)


def test_learned_weights_get_gradient_only_from_the_joint_term():
    method, model = _build(combine="learned")
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    out = model(x)
    _total, parts = method.loss(out, y, epoch=0.0)
    participants = (
        F.cross_entropy(out.peer_logits.flatten(0, 1), y.repeat(4), reduction="none")
        .view(4, 8)
        .mean(1)
    )
    participants.sum().backward(retain_graph=True)
    assert model.participant_logits.grad is None or not model.participant_logits.grad.any()
    assert model.nets[0].fc.weight.grad.abs().sum() > 0
    model.zero_grad()
    F.cross_entropy(out.ensemble_logits, y).backward()
    assert model.participant_logits.grad.abs().sum() > 0
    torch.testing.assert_close(parts["ce"], participants.detach())


def test_loss_is_summed_participant_ce_plus_joint_ce():
    method, model = _build(participant_weight=0.5, joint_weight=2.0)
    model.eval()
    x, y = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    total, parts = method.loss(model(x), y, epoch=0.0)
    probs = torch.stack([model.peer(i)(x).softmax(-1) for i in range(model.num_peers)])
    ce = sum(F.cross_entropy(model.peer(i)(x), y) for i in range(model.num_peers))
    joint = F.nll_loss(probs.mean(0).log(), y)
    assert total.item() == pytest.approx(0.5 * ce.item() + 2.0 * joint.item(), rel=1e-5)
    assert parts["joint"].item() == pytest.approx(joint.item(), rel=1e-5)


def test_learned_weights_are_saved_and_reloaded():
    _, trained = _build(combine="learned")
    with torch.no_grad():
        trained.participant_logits.add_(torch.arange(4.0))
    _, fresh = _build(combine="learned")
    fresh.load_state_dict(trained.state_dict(), strict=True)
    torch.testing.assert_close(fresh.participant_weights(), trained.participant_weights())


def test_networks_alone_when_no_early_exits():
    _, model = _build(peers=3, arch="test_cnn", exits_after=[])
    assert model.peer_names == ["net0/fc", "net1/fc", "net2/fc"]


def test_option_errors_are_one_sentence():
    with pytest.raises(CollabError, match="joint_weight"):
        create_method(JointDecisionOptions(combine="learned", joint_weight=0.0))
    with pytest.raises(CollabError, match="participant_weight"):
        create_method(JointDecisionOptions(participant_weight=-1.0))
    with pytest.raises(CollabError, match="combine rule"):
        _build(combine="vote")
