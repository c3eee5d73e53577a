"""SharedTrunkModel: tree wiring, module paths, peers as plain modules, backprop rescaling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.errors import CollabError
from analysis.models import PeerModule, StagedNet, count_parameters
from analysis.models.shared_trunk import SharedTrunkModel, rescale_grad

GREY = {"num_classes": 4, "in_chans": 1, "mean": (0.5,), "std": (0.25,)}
TREE = [("layer1", 2), ("layer2", 2)]


def _flat(peers=3, **kw):
    torch.manual_seed(0)
    return SharedTrunkModel.from_registry("test_cnn", peers=peers, **GREY, **kw)


def _tree(**kw):
    torch.manual_seed(0)
    return SharedTrunkModel.from_registry("test_resnet", splits=TREE, **GREY, **kw)


def test_flat_split_paths_and_known_parameter_count():
    model = _flat()
    names = dict(model.named_modules())
    assert {"trunk.layer1", "branches.0.layer2", "branches.2.layer2", "branches.2.fc"} <= set(names)
    assert "branches.0.layer1" not in names and "trunk.layer2" not in names
    assert model.num_peers == 3 and model.peer_names == [f"test_cnn:branch{i}" for i in range(3)]
    assert model.peer_path(2) == ["trunk", "branches.2"] and model.peer_prefix(2) == "branches.2."
    assert model.peer_probe_layers(1) == ["trunk.layer1", "branches.1.layer2"]
    # test_cnn width 16, 1 channel, 4 classes: layer1 = 144 + 32, layer2 = 4608 + 64, fc = 132
    assert count_parameters(model) == 176 + 3 * (4672 + 132)


def test_binary_tree_paths_enumerate_heads_depth_first():
    model = _tree()
    assert model.num_peers == 4
    assert model.peer_path(2) == ["trunk", "branches.1", "branches.1.branches.0"]
    assert model.peer_probe_layers(3) == [
        "trunk.conv1",
        "trunk.layer1",
        "branches.1.layer2",
        "branches.1.branches.1.layer3",
    ]
    names = dict(model.named_modules())
    assert "branches.1.branches.1.fc" in names and "branches.2" not in names
    # heads come from independently initialised copies
    w = [model.get_submodule(model.peer_prefix(i) + "fc").weight for i in range(4)]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[3])


@pytest.mark.parametrize("build", [_flat, _tree])
def test_peer_i_is_a_plain_staged_net_matching_the_forward(build):
    model = build().eval()
    x = torch.rand(5, 1, 32, 32)
    out = model(x)
    assert out.peer_logits.shape == (model.num_peers, 5, 4)
    assert out.extras["features"].shape[:2] == (model.num_peers, 5)
    torch.testing.assert_close(out.ensemble_logits, out.peer_logits.mean(0))
    for i in range(model.num_peers):
        peer = model.peer(i)
        assert isinstance(peer, PeerModule) and isinstance(peer.net, StagedNet)
        torch.testing.assert_close(peer(x), out.peer_logits[i])
        shared = {p.data_ptr() for p in model.parameters()}
        assert all(p.data_ptr() in shared for p in peer.parameters())
    fc0 = model.get_submodule(model.peer_prefix(0) + "fc")
    assert model.peer(0).net.fc is fc0


def test_rebuilt_model_loads_state_and_reproduces_outputs():
    model = _tree().eval()
    again = SharedTrunkModel.from_registry("test_resnet", splits=TREE, **GREY).eval()
    again.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(again(x).peer_logits, model(x).peer_logits)


def test_rescale_grad_is_identity_forward_and_scales_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = rescale_grad(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.arange(3.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(3.0).expand(4, 3) * 0.25)


def _grads(model, x, y, *, rescale):
    model.rescale_grad = rescale
    model.zero_grad()
    out = model(x)
    nn.functional.cross_entropy(out.peer_logits.flatten(0, 1), y.repeat(model.num_peers)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("peers", [2, 3])
def test_n_way_fork_gives_the_trunk_exactly_one_nth_of_the_gradient(peers):
    model = _flat(peers).double()  # float64: 1/3 is then exact to ~1e-15, not ~1e-7
    x, y = torch.rand(6, 1, 32, 32, dtype=torch.float64), torch.arange(6) % 4
    plain, scaled = _grads(model, x, y, rescale=False), _grads(model, x, y, rescale=True)
    for name, g in plain.items():
        factor = 1.0 / peers if name.startswith("trunk.") else 1.0
        torch.testing.assert_close(scaled[name], g * factor, rtol=1e-10, atol=1e-14)
    assert any(g.abs().sum() > 0 for n, g in plain.items() if n.startswith("trunk."))


def test_binary_tree_scales_each_level_by_its_forks():
    model = _tree()
    x, y = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    plain, scaled = _grads(model, x, y, rescale=False), _grads(model, x, y, rescale=True)
    for name, g in plain.items():
        depth = name.count("branches.")  # 0 = trunk, 1 = after the first fork, 2 = a head
        factor = {0: 0.25, 1: 0.5, 2: 1.0}[depth]
        torch.testing.assert_close(scaled[name], g * factor, rtol=1e-5, atol=1e-8)


def test_bad_split_specs_and_inputs_are_clear_errors():
    with pytest.raises(CollabError, match="split after one of"):
        SharedTrunkModel.from_registry("test_cnn", peers=2, split_after="layer2", **GREY)
    with pytest.raises(CollabError, match="split after one of"):
        SharedTrunkModel.from_registry("test_cnn", peers=2, split_after="layer9", **GREY)
    with pytest.raises(CollabError, match="forward order"):
        SharedTrunkModel.from_registry("test_resnet", splits=[("layer2", 2), ("layer1", 2)], **GREY)
    with pytest.raises(CollabError, match="4 heads but 3 peers"):
        SharedTrunkModel.from_registry("test_resnet", splits=TREE, peers=3, **GREY)
    with pytest.raises(CollabError, match="single registered name"):
        SharedTrunkModel.from_registry(["test_cnn", "test_cnn"], peers=2, **GREY)
    with pytest.raises(ValueError, match="one batch"):
        _flat(2)(torch.rand(2, 3, 1, 32, 32))
