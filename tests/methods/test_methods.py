"""Every registered method: trains, returns CollabOutput, and routes gradients as its paper says."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.methods import METHODS, create_method, peer_cross_entropy
from analysis.methods.dml import mutual_kl
from analysis.models import CollabOutput

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))

# The tiny model each method is swept with (default: 3 peers of test_cnn). A method whose
# wiring needs a particular family (residual stages, cheap convs, ...) names it here.
TINY_SETUP: dict[str, dict] = {
    "cl_ilr": {"arch": "test_resnet", "peers": 4},  # binary tree: forks after layer1, layer2
    "one": {"arch": "test_resnet", "peers": 3},  # branches own layer3
    "mcl_okd": {"arch": "test_resnet", "peers": 4},
    "divide_cotrain": {"arch": "test_resnet", "peers": 2},  # width 4 divided -> 3
    "od_cheap": {"arch": "cheap_resnet8", "peers": 2, "options": {"width": 8, "op": "depthwise"}},
    "intra_cl": {"arch": "test_cnn", "peers": 1},  # one network, its exits are the peers
}


def _method_and_model(name, peers=None, arch=None):
    torch.manual_seed(0)
    setup = {"arch": "test_cnn", "peers": 3, **TINY_SETUP.get(name, {})}
    setup["arch"] = arch or setup["arch"]
    setup["peers"] = peers or setup["peers"]
    method = create_method(METHODS.get(name).Options())
    return method, method.build_model(ModelConfig(**setup), SHAPE)


@pytest.mark.parametrize("name", METHODS.list())
def test_every_method_learns_a_tiny_batch(name):
    method, model = _method_and_model(name)
    x, y = torch.rand(16, 1, 32, 32), torch.arange(16) % 4
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        views = x.expand(model.num_peers, *x.shape) if method.per_peer_views else x
        out = model(views)
        assert isinstance(out, CollabOutput)
        loss, parts = method.loss(out, y, epoch=step / 40, index=torch.arange(16))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"{name}: loss went {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_mutual_kl_known_answers():
    z = torch.randn(1, 5, 7).expand(3, 5, 7)
    assert torch.equal(mutual_kl(z, temperature=2.0), torch.zeros(3))  # exactly: no cancellation
    a, b = torch.randn(2, 6, 5).unbind(0)
    got = mutual_kl(torch.stack([a, b]), temperature=3.0)
    ref_a = F.kl_div((a / 3).log_softmax(-1), (b / 3).softmax(-1), reduction="batchmean") * 9
    ref_b = F.kl_div((b / 3).log_softmax(-1), (a / 3).softmax(-1), reduction="batchmean") * 9
    assert torch.allclose(got, torch.stack([ref_a, ref_b]), atol=1e-5)


def test_dml_peers_get_no_gradient_from_each_others_losses():
    method, model = _method_and_model("dml")
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    out = model(x)
    own = peer_cross_entropy(out.peer_logits, y)[0] + mutual_kl(out.peer_logits, temperature=1.0)[0]
    own.backward()
    for j in (1, 2):
        assert all(p.grad is None or not p.grad.any() for p in model.peers[j].parameters()), (
            f"peer {j} leaked"
        )
    assert any(p.grad is not None and p.grad.any() for p in model.peers[0].parameters())


def test_dml_total_gradient_equals_each_peers_own_objective():
    method, model = _method_and_model("dml")
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    total, _ = method.loss(model(x), y, epoch=0.0)
    total.backward()
    summed = [p.grad.clone() for p in model.peers[1].parameters()]
    model.zero_grad()
    out = model(x)
    (
        peer_cross_entropy(out.peer_logits, y)[1] + mutual_kl(out.peer_logits, temperature=1.0)[1]
    ).backward()
    for g_sum, p in zip(summed, model.peers[1].parameters()):
        assert torch.allclose(g_sum, p.grad, atol=1e-6)


def test_independent_equals_separate_cross_entropies():
    method, model = _method_and_model("independent", peers=2)
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    out = model(x)
    total, parts = method.loss(out, y, epoch=0.0)
    expected = sum(F.cross_entropy(model.peer(i)(x), y) for i in range(2))
    assert torch.allclose(total, expected, atol=1e-6)
    assert parts["ce"].shape == (2,)
