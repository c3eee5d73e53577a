"""Online distillation with cheap convolutions: fusion teacher, loss and its gradient paths."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.methods import METHODS, create_method
from analysis.methods.od_cheap import ODCheapOptions, distill_kl
from analysis.models import CollabOutput, count_parameters, create_model
from analysis.models.online_teacher import OnlineTeacherModel, map_and_logits

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))
CIFAR10 = SimpleNamespace(num_classes=10, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3)
TINY = ModelConfig(arch="cheap_resnet8", peers=3, options={"width": 4, "op": "shift"})


def _setup(**options):
    torch.manual_seed(0)
    method = create_method(ODCheapOptions(**options))
    return method, method.build_model(TINY, SHAPE)


def _grad_norm(params) -> float:
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


def test_paper_setup_counts_four_shift_resnet56_students_and_the_teacher() -> None:
    method = create_method(ODCheapOptions())
    with torch.device("meta"):
        model = method.build_model(
            ModelConfig(arch="cheap_resnet56", peers=4, options={"op": "shift"}), CIFAR10
        )
    assert [count_parameters(s) for s in model.peers] == [102_106] * 4
    # Teacher: BN over the 4 x 64 concatenated channels (512) + fc 256 x 10 + 10 (2,570).
    assert count_parameters(model.teacher) == 2 * 256 + 256 * 10 + 10
    assert count_parameters(model) == 4 * 102_106 + 3_082


def test_forward_contract_and_teacher_as_ensemble() -> None:
    _, model = _setup()
    model.eval()
    x = torch.rand(5, 1, 16, 16)
    out = model(x)
    assert isinstance(out, CollabOutput) and out.peer_logits.shape == (3, 5, 4)
    assert torch.equal(out.ensemble_logits, out.extras["teacher_logits"])
    for i in range(3):
        assert torch.allclose(model.peer(i)(x), out.peer_logits[i], atol=1e-6)
    assert model.teacher.fc.in_features == 3 * model.peers[0].feature_dim
    with pytest.raises(ValueError, match="one batch"):
        model(x.expand(3, *x.shape))


def test_students_mean_as_ensemble_option() -> None:
    _, model = _setup(ensemble_from="students")
    out = model.eval()(torch.rand(2, 1, 16, 16))
    assert torch.allclose(out.ensemble_logits, out.peer_logits.mean(0))


def test_teacher_sees_the_concatenated_last_maps() -> None:
    _, model = _setup()
    model.eval()
    x = torch.rand(2, 1, 16, 16)
    maps = [map_and_logits(net, model.normalize(x))[0] for net in model.peers]
    assert maps[0].shape == (2, 16, 4, 4)  # width 4 -> 16 channels at 1/4 resolution
    expected = model.teacher(torch.cat(maps, dim=1))
    assert torch.allclose(model(x).extras["teacher_logits"], expected, atol=1e-6)


def test_loss_hand_computation() -> None:
    method = create_method(ODCheapOptions(temperature=4.0))
    z, t, y = torch.randn(3, 6, 4), torch.randn(6, 4), torch.arange(6) % 4
    total, parts = method.loss(CollabOutput(z, t, {"teacher_logits": t}), y, epoch=0.0)
    # The reference code's KL: F.kl_div's element-wise mean (PyTorch 0.4's default, "mean"
    # today, which later releases may change; hence "none" then .mean()) times T².
    kl = [
        F.kl_div((z[j] / 4).log_softmax(-1), (t / 4).softmax(-1), reduction="none").mean() * 16
        for j in range(3)
    ]
    ce = [F.cross_entropy(z[j], y) for j in range(3)]
    expected = F.cross_entropy(t, y) + sum(c + k for c, k in zip(ce, kl))
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(parts["kl"], torch.stack(kl), atol=1e-6)
    assert torch.allclose(
        distill_kl(t, t.expand(2, 6, 4), temperature=4.0), torch.zeros(2), atol=1e-6
    )


def test_distillation_term_is_the_elementwise_mean_kl_times_t_squared() -> None:
    """Known answer on a fixed tensor: B = 2, C = 3, T = 2."""
    teacher = torch.tensor([[2.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    student = torch.tensor([[[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]])
    p = (teacher / 2).softmax(-1)
    log_q = (student[0] / 2).log_softmax(-1)
    terms = p * (p.log() - log_q)  # (B, C) element-wise KL terms
    reference = 4.0 * terms.sum() / 6  # mean over the B * C = 6 elements, times T²
    got = distill_kl(teacher, student, temperature=2.0)
    assert got.item() == pytest.approx(reference.item(), rel=1e-6)
    # By hand: row KLs 0.266217 (uniform student) + 0.474266 (uniform teacher), x 4 / 6.
    assert got.item() == pytest.approx(0.4936550, rel=1e-5)
    elementwise = F.kl_div(log_q, p, reduction="none")  # (B, C)
    torch.testing.assert_close(got[0], 4.0 * elementwise.mean(), rtol=1e-6, atol=0)
    # batchmean (the former scaling, kl_reduction="batchmean") is C = 3 times larger.
    batchmean = distill_kl(teacher, student, temperature=2.0, reduction="batchmean")
    assert batchmean.item() == pytest.approx(3 * got.item(), rel=1e-6)
    method = create_method(ODCheapOptions(temperature=2.0, kl_reduction="batchmean"))
    out = CollabOutput(student, teacher, {"teacher_logits": teacher})
    _, parts = method.loss(out, torch.tensor([0, 1]), epoch=0.0)
    assert parts["kl"].item() == pytest.approx(batchmean.item(), rel=1e-6)


def test_kl_gradient_reaches_the_teacher_unless_detached() -> None:
    """Reference code: not detached, so one student's KL term also trains the teacher head and,
    through the concatenated maps, the other students; detach_teacher=True stops both paths."""
    y = torch.arange(6) % 4
    x = torch.rand(6, 1, 16, 16)
    for detach in (False, True):
        method, model = _setup(detach_teacher=detach)
        out = model(x)
        source = out.extras["teacher_logits"].detach() if detach else out.extras["teacher_logits"]
        distill_kl(source, out.peer_logits[:1], temperature=4.0)[0].backward()
        assert _grad_norm(model.peers[0].parameters()) > 0  # the student itself always learns
        teacher_grad = _grad_norm(model.teacher.parameters())
        other_grad = _grad_norm(model.peers[1].parameters())
        if detach:
            assert teacher_grad == 0 and other_grad == 0
        else:
            assert teacher_grad > 0 and other_grad > 0
        model.zero_grad()
        total, _ = method.loss(model(x), y, epoch=0.0)
        total.backward()
        assert all(p.grad is not None for p in model.parameters())


def test_detach_option_changes_only_the_gradient() -> None:
    y, x = torch.arange(6) % 4, torch.rand(6, 1, 16, 16)
    values, teacher_grads = [], []
    for detach in (False, True):
        method, model = _setup(detach_teacher=detach)
        total, _ = method.loss(model(x), y, epoch=0.0)
        total.backward()
        values.append(total.item())
        teacher_grads.append(model.teacher.fc.weight.grad.clone())
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    assert not torch.allclose(teacher_grads[0], teacher_grads[1])


def test_registered_with_paper_defaults() -> None:
    options = METHODS.get("od_cheap").Options()
    assert (
        options.temperature,
        options.detach_teacher,
        options.ensemble_from,
        options.kl_reduction,
    ) == (4.0, False, "teacher", "mean")
    # The paper reports the best student: the trainer selects the checkpoint on it.
    assert METHODS.get("od_cheap").selection == "best_peer"
    assert create_method(ODCheapOptions()).selection == "best_peer"
    assert isinstance(_setup()[1], OnlineTeacherModel)
    students = [create_model("cheap_resnet8", num_classes=4, in_chans=1, width=4) for _ in range(2)]
    with pytest.raises(ValueError, match="ensemble_from"):
        OnlineTeacherModel(students, num_classes=4, mean=(0.5,), std=(0.25,), ensemble_from="best")
