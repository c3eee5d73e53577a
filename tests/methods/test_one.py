"""ONE (Lan, Zhu & Gong 2018): the gated teacher, and a KL that never moves the teacher."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.methods import create_method
from analysis.methods.one import ONEOptions, teacher_kl

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))


def _setup(**options):
    torch.manual_seed(0)
    method = create_method(ONEOptions(**options))
    return method, method.build_model(ModelConfig(arch="test_resnet", peers=3), SHAPE)


def _params(model, prefix):
    return [p for n, p in model.named_parameters() if n.startswith(prefix)]


def test_branches_own_the_last_stage_and_the_gate_reads_the_pooled_trunk():
    _, model = _setup()
    names = dict(model.named_modules())
    assert {"trunk.layer2", "branches.2.layer3", "branches.2.fc", "gate"} <= set(names)
    assert model.gate[0].in_features == 8  # test_resnet layer2 has 2 * width channels
    assert model.gate[0].out_features == 3


def test_gate_is_the_authors_linear_bn_relu_softmax_over_branches():
    """winycg/MCL-OKD one_resnet.py: softmax(relu(gate_norm(gate_fc(pool(trunk)))), dim=1)."""
    _, model = _setup()
    linear, norm, relu = model.gate
    assert isinstance(linear, torch.nn.Linear)
    assert (linear.in_features, linear.out_features) == (8, 3)  # trunk channels -> K
    assert isinstance(norm, torch.nn.BatchNorm1d) and norm.num_features == 3
    assert isinstance(relu, torch.nn.ReLU)
    _, plain = _setup(gate="linear")
    assert [type(m) for m in plain.gate] == [torch.nn.Linear]
    assert ONEOptions().gate == "linear_bn_relu"
    model.train()
    x = torch.rand(5, 1, 32, 32)
    pooled = model.trunk(model.normalize(x)).mean(dim=(2, 3))
    expected = F.relu(F.batch_norm(linear(pooled), None, None, norm.weight, norm.bias, True))
    torch.testing.assert_close(model(x).extras["gate"], expected.softmax(1))


def test_teacher_is_the_gate_weighted_sum_and_the_ensemble():
    _, model = _setup()
    model.eval()
    x = torch.rand(5, 1, 32, 32)
    out = model(x)
    gate = out.extras["gate"]
    assert gate.shape == (5, 3) and torch.allclose(gate.sum(1), torch.ones(5))
    pooled = model.trunk(model.normalize(x)).mean(dim=(2, 3))
    torch.testing.assert_close(gate, model.gate(pooled).softmax(1))
    expected = sum(gate[:, k : k + 1] * out.peer_logits[k] for k in range(3))
    torch.testing.assert_close(out.extras["teacher_logits"], expected)
    assert out.ensemble_logits is out.extras["teacher_logits"]
    for k in range(3):
        torch.testing.assert_close(model.peer(k)(x), out.peer_logits[k])


def test_teacher_kl_known_answer():
    z, t = torch.randn(3, 6, 5), torch.randn(6, 5)
    got = teacher_kl(z, t, temperature=3.0)
    for k in range(3):
        ref = F.kl_div((z[k] / 3).log_softmax(-1), (t / 3).softmax(-1), reduction="batchmean") * 9
        torch.testing.assert_close(got[k], ref)


def test_branch_kl_gives_no_gradient_to_the_gate_or_other_branches():
    _, model = _setup()
    x = torch.rand(6, 1, 32, 32)
    out = model(x)
    teacher_kl(out.peer_logits, out.extras["teacher_logits"], temperature=3.0)[1].backward()
    for prefix in ("gate.", "branches.0.", "branches.2."):
        assert all(p.grad is None or not p.grad.any() for p in _params(model, prefix)), prefix
    assert any(p.grad is not None and p.grad.any() for p in _params(model, "branches.1."))


def test_total_loss_and_the_gate_learns_through_the_teacher_ce():
    method, model = _setup(gate="linear")
    x, y = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    out = model(x)
    total, parts = method.loss(out, y, epoch=0.0)
    torch.testing.assert_close(total, parts["ce"].sum() + parts["teacher_ce"] + parts["kl"].sum())
    torch.testing.assert_close(
        parts["teacher_ce"], F.cross_entropy(out.extras["teacher_logits"], y)
    )
    total.backward()
    assert all(p.grad is not None and p.grad.any() for p in _params(model, "gate.0."))
    method, model = _setup()  # the authors' gate: Linear, then BN1d's affine parameters, learn
    method.loss(model(x), y, epoch=0.0)[0].backward()
    assert all(p.grad is not None and p.grad.any() for p in _params(model, "gate."))
