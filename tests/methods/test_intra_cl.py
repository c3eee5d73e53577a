"""Intra-model collaborative learning: known answers of each term, switches and gradient routes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from analysis.config import ModelConfig
from analysis.data.augment import Augment
from analysis.data.views import MultiView
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.methods.dml import DMLOptions
from analysis.methods.intra_cl import (
    IntraCLOptions,
    distill_to_final,
    kernel_redundancy,
    linear_cka,
    symmetric_kl,
)

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))
ALL_OFF = {"output_weight": 0.0, "distill_weight": 0.0, "repr_weight": 0.0, "kernel_weight": 0.0}


def _build(arch="test_cnn", options=None, **opts):
    torch.manual_seed(0)
    method = create_method(IntraCLOptions(**opts))
    model = method.build_model(ModelConfig(arch=arch, peers=1, options=options or {}), SHAPE)
    return method, model


def _conv_with(weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], bias=False)
    conv.weight.data.copy_(weight)
    return conv


def test_kernel_redundancy_known_answers():
    eye = torch.eye(9).view(9, 1, 3, 3)  # nine orthogonal 3x3 filters
    assert kernel_redundancy(_conv_with(eye)).item() == 0.0
    same = torch.randn(1, 2, 3, 3).repeat(5, 1, 1, 1) * torch.tensor([1.0, 2, -1, 3, 0.5]).view(
        5, 1, 1, 1
    )
    assert kernel_redundancy(_conv_with(same)).item() == pytest.approx(1.0, abs=1e-6)
    # two filters at 60 degrees: cos = 0.5, so the mean squared off-diagonal cosine is 0.25
    pair = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]]).view(2, 2, 1, 1)
    assert kernel_redundancy(_conv_with(pair)).item() == pytest.approx(0.25, abs=1e-6)
    # averaged over layers: (0 + 0.25) / 2
    both = nn.Sequential(_conv_with(eye), _conv_with(pair))
    assert kernel_redundancy(both).item() == pytest.approx(0.125, abs=1e-6)


def test_linear_cka_known_answers():
    torch.manual_seed(0)
    a = torch.randn(64, 6)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert linear_cka(a, a).item() == pytest.approx(1.0, abs=1e-5)
    assert linear_cka(a, 3.0 * a @ q).item() == pytest.approx(1.0, abs=1e-5)  # rotation + scale
    # one-dimensional features: CKA is the squared Pearson correlation
    x, y = torch.randn(64, 1), torch.randn(64, 1)
    r = torch.corrcoef(torch.cat([x, y], dim=1).T)[0, 1]
    assert linear_cka(x, y).item() == pytest.approx(r.item() ** 2, abs=1e-5)


def test_symmetric_kl_known_answers():
    a, b = torch.randn(5, 7), torch.randn(5, 7)
    assert symmetric_kl(a, a, temperature=2.0).item() == pytest.approx(0.0, abs=1e-6)

    def kl(p, q):
        return F.kl_div(
            (q / 2).log_softmax(-1), (p / 2).softmax(-1), reduction="batchmean"
        )  # KL(p‖q)

    expected = 0.5 * (kl(a, b) + kl(b, a)) * 4
    assert symmetric_kl(a, b, temperature=2.0).item() == pytest.approx(expected.item(), rel=1e-5)


def _loss_grads(method, model, x, y):
    model.zero_grad()
    total, parts = method.loss(model(x), y, epoch=0.0)
    total.backward()
    grads = {
        n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for n, p in model.named_parameters()
    }
    return total, parts, grads


@pytest.mark.parametrize("term", ["distill", "repr", "kernel"])
def test_a_switched_off_term_is_zero_and_adds_no_gradient(term):
    """Gradients are linear in the terms: G(all) = G(all but t) + G(only t) - G(none) holds only
    if the switched-off term contributes nothing (output consistency off: same forward)."""
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    three = {"distill_weight": 1.0, "repr_weight": 1.0, "kernel_weight": 1.0}
    runs = {
        "all": {**ALL_OFF, **three},
        "off": {**ALL_OFF, **three, f"{term}_weight": 0.0},
        "only": {**ALL_OFF, f"{term}_weight": 1.0},
        "none": ALL_OFF,
    }
    res = {key: _loss_grads(*_build(**opts), x, y) for key, opts in runs.items()}
    # all off is exactly the summed cross-entropy of the exits
    _, model = _build(**ALL_OFF)
    ce = sum(F.cross_entropy(z, y) for z in model(x).peer_logits)
    ce.backward()
    assert ce.item() == pytest.approx(res["none"][0].item(), abs=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, res["none"][2][name], atol=1e-6, rtol=1e-5)
    assert res["off"][1][term].item() == 0.0 and res["none"][1][term].item() == 0.0
    assert res["only"][1][term].item() > 0
    total = res["off"][0] + res["only"][0] - res["none"][0]
    assert total.item() == pytest.approx(res["all"][0].item(), abs=1e-5)
    for name, g in res["all"][2].items():
        torch.testing.assert_close(
            res["off"][2][name] + res["only"][2][name] - res["none"][2][name],
            g,
            atol=1e-5,
            rtol=1e-4,
        )
    assert any(not torch.equal(g, res["none"][2][n]) for n, g in res["only"][2].items())


def test_output_switch_off_is_the_plain_objective():
    x, y = torch.rand(8, 1, 32, 32), torch.arange(8) % 4
    base_total, _, base_grads = _loss_grads(*_build(**ALL_OFF), x, y)
    off, off_model = _build(**{**ALL_OFF, "output_weight": 0.0})
    assert not off.per_peer_views and off_model.pairing == "none"
    on, on_model = _build(**{**ALL_OFF, "output_weight": 1.0})
    _total_on, parts_on, grads_on = _loss_grads(on, on_model, torch.stack([x, x.flip(-1)]), y)
    assert parts_on["output"].item() > 0
    assert any(not torch.equal(g, base_grads[n]) for n, g in grads_on.items())
    off_total, off_parts, off_grads = _loss_grads(off, off_model, x, y)
    assert off_parts["output"].item() == 0.0 and off_total.item() == base_total.item()
    for name, g in off_grads.items():
        assert torch.equal(g, base_grads[name]), name
    # the 'on' method on an unpaired (evaluation) pass adds exactly nothing either
    assert on.loss(on_model.eval()(x), y, epoch=0.0)[1]["output"].item() == 0.0


def test_views_switch_controls_the_paired_pass():
    off, _ = _build(output_weight=0.0)
    on, model = _build(output_weight=1.0)
    assert not off.per_peer_views and on.per_peer_views
    x = torch.rand(6, 1, 32, 32)
    out = model(torch.stack([x, x, x]))  # three identical views: the two passes agree exactly
    assert out.peer_logits.shape == (3, 6, 4) and out.extras["paired_logits"].shape == (3, 6, 4)
    _, parts = on.loss(out, torch.arange(6) % 4, epoch=0.0)
    assert parts["output"].item() == pytest.approx(0.0, abs=1e-6)
    assert "paired_logits" not in model.eval()(x).extras  # evaluation: one plain pass


def test_views_mode_asks_for_only_the_two_views_it_uses():
    """Three exits, two views: the trainer builds ``method.num_views(model)`` views; view v is
    seeded by (seed, epoch, index, v), so dropping the third changes nothing that is used."""
    on, model = _build(output_weight=1.0)
    assert model.num_peers == 3 and on.num_views(model) == 2
    for opts in ({"output_weight": 0.0}, {"consistency": "dropout"}):
        method = create_method(IntraCLOptions(**opts))
        assert method.num_views(model) == 1
    dml = create_method(DMLOptions())
    assert dml.num_views(model) == 1
    dml.per_peer_views = True  # e.g. divide-and-co-training: one view per peer, as before
    assert dml.num_views(model) == 3
    data = TensorDataset(torch.rand(4, 1, 32, 32), torch.arange(4))
    aug = Augment(crop_pad=4, hflip=True)
    two, three = (MultiView(data, views=v, augment=aug, seed=3) for v in (2, 3))
    x2, x3 = (torch.stack([views[i][0] for i in range(4)], 1) for views in (two, three))
    assert x2.shape == (2, 4, 1, 32, 32) and torch.equal(x2, x3[:2])
    model.train()
    torch.manual_seed(1)
    out2 = model(x2)
    torch.manual_seed(1)
    out3 = model(x3)
    torch.testing.assert_close(out2.peer_logits, out3.peer_logits)
    torch.testing.assert_close(out2.extras["paired_logits"], out3.extras["paired_logits"])


def test_dropout_consistency_needs_dropout_and_pairs_two_passes():
    with pytest.raises(CollabError, match="needs dropout"):
        _build(consistency="dropout")
    method, model = _build(
        "resnet8",
        {"width": 4, "dropout": 0.5},
        consistency="dropout",
        **{k: v for k, v in ALL_OFF.items() if k != "output_weight"},
    )
    assert not method.per_peer_views
    x, y = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    out = model(x)
    assert out.extras["paired_logits"].shape == out.peer_logits.shape
    assert method.loss(out, y, epoch=0.0)[1]["output"].item() > 0


def test_distillation_target_is_detached_from_the_final_head():
    torch.manual_seed(0)
    _, model = _build(exits_after=["layer1"])
    out = model(torch.rand(8, 1, 32, 32))
    distill_to_final(out.peer_logits, temperature=3.0).sum().backward()
    net = model.nets[0]
    for module in (net.layer2, net.fc):  # after the exit: reached only through the detached target
        assert all(p.grad is None or not p.grad.any() for p in module.parameters())
    assert net.layer1[0][0].weight.grad.abs().sum() > 0
    assert model.heads[0]["layer1"].fc.weight.grad.abs().sum() > 0


def test_distill_known_answer():
    z = torch.randn(3, 5, 4)
    got = distill_to_final(z, temperature=2.0)
    target = (z[-1] / 2).softmax(-1)
    ref = [
        F.kl_div((z[k] / 2).log_softmax(-1), target, reduction="batchmean") * 4 for k in range(2)
    ]
    torch.testing.assert_close(got, torch.stack(ref))


def test_peers_are_exits_and_ensemble_is_the_final_exit():
    _method, model = _build()
    assert model.peer_names == ["net0/layer1", "net0/layer2", "net0/fc"]
    out = model.eval()(torch.rand(3, 1, 32, 32))
    torch.testing.assert_close(out.ensemble_logits, out.peer_logits[-1])
    assert set(out.extras) == {
        "pooled/net0/layer1",
        "pooled/net0/layer2",
        "pooled/net0/fc",
        "kernel_redundancy",
    }


def test_option_errors_are_one_sentence():
    with pytest.raises(CollabError, match="model.peers=1"):
        create_method(IntraCLOptions()).build_model(ModelConfig(arch="test_cnn", peers=2), SHAPE)
    with pytest.raises(CollabError, match="temperature"):
        create_method(IntraCLOptions(temperature=0.0))
    with pytest.raises(CollabError, match="repr_weight"):
        create_method(IntraCLOptions(repr_weight=-1.0))
