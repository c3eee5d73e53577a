"""Fused peers compute what the unfused container computes, and leave the container alone."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from analysis.errors import CollabError
from analysis.models import CollaborativeModel, create_model
from analysis.models.fused import FusedPeers, fuse_peers
from analysis.models.online_teacher import OnlineTeacherModel
from analysis.models.shared_trunk import SharedTrunkModel

NETS = [
    ("resnet8", {"width": 8}),
    ("dc_resnet", {"depth": 11, "block": "bottleneck", "width": 4}),  # AvgPool shortcuts
]


def pair(arch: str, options: dict, *, peers: int = 3, dtype=torch.float32):
    torch.manual_seed(0)
    nets = [create_model(arch, num_classes=7, in_chans=3, **options) for _ in range(peers)]
    for net in nets:  # non-trivial BN affine parameters and running statistics
        for name, t in net.state_dict().items():
            if "running_var" in name or name.endswith(("bn1.weight", "bn2.weight")):
                t.uniform_(0.5, 1.5)
            elif "running_mean" in name or name.endswith("bias"):
                t.uniform_(-0.2, 0.2)
    model = CollaborativeModel(nets, mean=(0.4,) * 3, std=(0.3,) * 3).to(dtype)
    twin = copy.deepcopy(model)
    return model, twin, fuse_peers(twin)


def step(model, x, y):
    out = model(x)
    loss = F.cross_entropy(out.peer_logits.flatten(0, 1), y.repeat(out.peer_logits.shape[0]))
    loss = loss + out.ensemble_logits.square().mean()
    loss.backward()
    return out


@pytest.mark.parametrize("arch,options", NETS)
@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_forward_gradients_and_running_stats_match(arch, options, views, dtype, tol):
    model, twin, fused = pair(arch, options, dtype=dtype)
    shape = (3, 32, 3, 16, 16) if views else (32, 3, 16, 16)
    x, y = torch.rand(shape, dtype=dtype), torch.randint(0, 7, (32,))
    ref, got = step(model, x, y), step(fused, x, y)
    assert got.peer_logits.shape == ref.peer_logits.shape == (3, 32, 7)
    torch.testing.assert_close(got.peer_logits, ref.peer_logits, rtol=0, atol=tol)
    torch.testing.assert_close(got.ensemble_logits, ref.ensemble_logits, rtol=0, atol=tol)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        scale = max(1.0, float(a.grad.abs().max()))
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=tol * scale, msg=name)
    for (name, a), b in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=tol, msg=name)
    model.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x).peer_logits, model(x).peer_logits, rtol=0, atol=tol)


def test_container_is_untouched_and_fused_view_owns_nothing():
    model, twin, fused = pair("resnet8", {"width": 8})
    assert list(twin.state_dict()) == list(model.state_dict())
    assert fused.state_dict() == {} and list(fused.parameters()) == []
    x = torch.rand(4, 3, 16, 16)
    twin.eval()
    torch.testing.assert_close(twin.peer(1)(x), twin.peers[1](twin.normalize(x)))
    fused.train()
    assert twin.training and all(m.training for m in twin.modules())
    fused.eval()
    assert not any(m.training for m in twin.modules())


def test_optimizer_step_through_fused_changes_the_peers():
    _, twin, fused = pair("resnet8", {"width": 8})
    before = copy.deepcopy(twin.state_dict())
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    step(fused, torch.rand(8, 3, 16, 16), torch.randint(0, 7, (8,)))
    opt.step()
    changed = [k for k, v in twin.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("peers.2.") and k.endswith("weight") for k in changed)
    assert int(twin.peers[0].bn1.num_batches_tracked) == 1


def test_refuses_mixed_architectures_and_other_containers():
    nets = [create_model(a, num_classes=5, in_chans=3) for a in ("resnet8", "resnet20")]
    with pytest.raises(CollabError, match="differ"):
        fuse_peers(CollaborativeModel(nets, mean=(0.5,) * 3, std=(0.5,) * 3))
    trunk = SharedTrunkModel.from_registry(
        "resnet8", num_classes=5, in_chans=3, mean=(0.5,) * 3, std=(0.5,) * 3, peers=2
    )
    with pytest.raises(CollabError, match="separate peer networks"):
        FusedPeers(trunk)
    views = torch.rand(2, 4, 3, 16, 16)
    model, _, fused = pair("resnet8", {"width": 8})
    with pytest.raises(ValueError, match="2 views for 3 peers"):
        fused(views)


def test_refuses_peers_whose_settings_differ():
    nets = [create_model("resnet8", num_classes=5, in_chans=3, dropout=p) for p in (0.1, 0.2)]
    with pytest.raises(CollabError, match="differ at peers.\\*.dropout"):
        fuse_peers(CollaborativeModel(nets, mean=(0.5,) * 3, std=(0.5,) * 3))


@pytest.mark.parametrize("ensemble_from", ["teacher", "students"])
def test_online_teacher_students_fuse_and_feed_the_teacher(ensemble_from):
    torch.manual_seed(0)
    nets = [create_model("resnet8", num_classes=6, in_chans=3, width=8) for _ in range(3)]
    model = OnlineTeacherModel(
        nets, num_classes=6, mean=(0.4,) * 3, std=(0.3,) * 3, ensemble_from=ensemble_from
    ).double()
    twin = copy.deepcopy(model)
    fused = fuse_peers(twin)
    x, y = torch.rand(16, 3, 16, 16, dtype=torch.float64), torch.randint(0, 6, (16,))
    outs = []
    for m in (model, fused):
        out = m(x)
        loss = F.cross_entropy(out.extras["teacher_logits"], y) + out.peer_logits.square().mean()
        (loss + out.ensemble_logits.mean()).backward()
        outs.append(out)
    torch.testing.assert_close(outs[1].peer_logits, outs[0].peer_logits, rtol=0, atol=1e-10)
    teacher = [o.extras["teacher_logits"] for o in outs]
    torch.testing.assert_close(teacher[1], teacher[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(outs[1].ensemble_logits, outs[0].ensemble_logits, rtol=0, atol=1e-10)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-10, msg=name)
