"""CL-ILR (Song & Chai 2018): detached consensus targets, 1/n backprop rescaling, the head tree."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from analysis.config import ModelConfig
from analysis.errors import CollabError
from analysis.methods import create_method
from analysis.methods.cl_ilr import CLILROptions, cl_ilr_splits, consensus_kl

SHAPE = SimpleNamespace(num_classes=4, in_chans=1, mean=(0.5,), std=(0.25,))


def _setup(**options):
    torch.manual_seed(0)
    method = create_method(CLILROptions(**options))
    model = method.build_model(ModelConfig(arch="test_resnet", peers=4), SHAPE)
    return method, model


def test_split_trees():
    stages = ["layer1", "layer2"]
    assert cl_ilr_splits(4, tree="binary", split_stages=stages) == [("layer1", 2), ("layer2", 2)]
    assert cl_ilr_splits(2, tree="binary", split_stages=stages) == [("layer1", 2)]
    assert cl_ilr_splits(3, tree="flat", split_stages=stages) == [("layer1", 3)]
    with pytest.raises(CollabError, match="method.tree=flat"):
        cl_ilr_splits(3, tree="binary", split_stages=stages)
    with pytest.raises(CollabError, match="method.tree=flat"):
        cl_ilr_splits(8, tree="binary", split_stages=stages)


def test_model_is_the_papers_four_head_binary_tree():
    _, model = _setup(inference_head=2)
    assert model.splits == [("layer1", 2), ("layer2", 2)] and model.rescale_grad
    assert model.inference_head == 2 and model.peer_names[3] == "test_resnet:head3"
    with pytest.raises(CollabError, match="inference_head"):
        create_method(CLILROptions(inference_head=4)).build_model(
            ModelConfig(arch="test_resnet", peers=4), SHAPE
        )


def test_consensus_kl_known_answer():
    z = torch.randn(4, 6, 5)
    got = consensus_kl(z, temperature=2.0)
    for h in range(4):
        others = torch.cat([z[:h], z[h + 1 :]]).mean(0)
        ref = (
            F.kl_div((z[h] / 2).log_softmax(-1), (others / 2).softmax(-1), reduction="batchmean")
            * 4
        )
        torch.testing.assert_close(got[h], ref)
    assert torch.allclose(
        consensus_kl(z[:1].expand(3, 6, 5), temperature=2.0), torch.zeros(3), atol=1e-6
    )


def test_total_loss_is_beta_weighted_sum():
    method, model = _setup()
    x, y = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    out = model(x)
    total, parts = method.loss(out, y, epoch=0.0)
    ce = torch.stack([F.cross_entropy(out.peer_logits[h], y) for h in range(4)])
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(total, (0.5 * ce + 0.5 * parts["kl"]).sum())


def test_head_loss_sends_no_gradient_into_other_heads_through_its_target():
    method, model = _setup()
    x, y = torch.rand(6, 1, 32, 32), torch.arange(6) % 4
    out = model(x)
    opts = method.options
    own = opts.beta * F.cross_entropy(out.peer_logits[0], y)
    own = own + (1 - opts.beta) * consensus_kl(out.peer_logits, temperature=opts.temperature)[0]
    own.backward()
    # head 0 = branches.0.branches.0; head 1 shares only branches.0, heads 2-3 only the trunk
    for prefix in ("branches.0.branches.1.", "branches.1."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is None or not g.any() for g in grads), f"{prefix} got gradient"
    for prefix in ("branches.0.branches.0.", "branches.0.layer2", "trunk."):
        assert any(
            p.grad is not None and p.grad.any()
            for n, p in model.named_parameters()
            if n.startswith(prefix)
        )


def test_backprop_rescaling_divides_shared_gradients_by_the_fork_widths():
    """The 1/n known answer: trunk (two 2-way forks below it) gets 1/4, level-1 nodes 1/2."""
    method, model = _setup()
    model.double()
    x, y = torch.rand(6, 1, 32, 32, dtype=torch.float64), torch.arange(6) % 4
    grads = {}
    for rescale in (False, True):
        model.rescale_grad = rescale
        model.zero_grad()
        method.loss(model(x), y, epoch=0.0)[0].backward()
        grads[rescale] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, g in grads[False].items():
        factor = {0: 0.25, 1: 0.5, 2: 1.0}[name.count("branches.")]
        torch.testing.assert_close(grads[True][name], g * factor, rtol=1e-10, atol=1e-14)


def test_peer_i_matches_head_logits():
    _, model = _setup()
    model.eval()
    x = torch.rand(4, 1, 32, 32)
    out = model(x)
    for h in range(4):
        torch.testing.assert_close(model.peer(h)(x), out.peer_logits[h])
